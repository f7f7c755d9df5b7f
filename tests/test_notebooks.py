"""The notebooks run top to bottom on the tiny model (executed with nbclient, as CI does)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
KERNEL = "interp-venv"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _parameters_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged `parameters`"
    return tagged[0]


@pytest.fixture
def kernel_of_this_interpreter(tmp_path, monkeypatch):
    """A kernelspec that runs ipykernel with this interpreter (the venv's), found first on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "interp (venv)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # tiny models run many small ops; one intra-op thread is fastest on a shared 2-core machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return KERNEL


def test_notebooks_are_stripped_and_parametrised():
    assert [p.name for p in NOTEBOOKS] == ["01_steering_vectors.ipynb", "02_e1_pipeline.ipynb", "03_mnist_and_theorem.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: outputs not stripped"
        params = nb.cells[_parameters_index(nb)].source
        assert 'MODEL = "tiny"' in params and "ROOT = None" in params, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_on_the_tiny_model(path, tmp_path, kernel_of_this_interpreter):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # as papermill does: a cell after `parameters` overrides them (artifacts into the test's tmp dir)
    nb.cells.insert(_parameters_index(nb) + 1, nbformat.v4.new_code_cell(f"ROOT = {str(tmp_path / 'artifacts')!r}"))
    started = time.perf_counter()
    NotebookClient(nb, kernel_name=kernel_of_this_interpreter, timeout=180,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    wall = time.perf_counter() - started
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(PLOTLY_MIME in o.get("data", {}) for o in outputs), "no figure was displayed"
    from interp.export import find_chromium

    if find_chromium():  # the static fallback that a saved notebook shows where no JavaScript runs
        figures = [o for o in outputs if PLOTLY_MIME in o.get("data", {})]
        assert all("image/png" in o["data"] for o in figures), "a figure has no static PNG beside it"
    assert list((tmp_path / "artifacts").rglob("figures/*.html")), "no figure was exported"
    assert wall < 150, f"{path.name} took {wall:.0f} s; keep notebooks under about a minute"

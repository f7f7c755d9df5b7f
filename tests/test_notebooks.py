"""The notebooks run top to bottom on the tiny model (executed with nbclient, as CI does).

Cost is the kernel's CPU time (one intra-op thread, so about its wall time on an idle machine):
a shared or loaded machine stretches the wall clock, not the work a notebook does."""

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
# every walkthrough, and the library runners each calls (what the CLI command calls, not a copy of it)
EXPECTED = {
    "01_steering_vectors": ("build_steering_vector", "steering_sweep"),
    "02_e1_pipeline": ("run_e1",),
    "03_mnist_and_theorem": ("run_mnist", "run_theorem"),
    "04_mechanisms": ("run_e1", "run_analyze", "run_audit", ".bridge()", ".nnsight()"),
    "05_noise_and_sweeps": ("run_sweep", "sweep_tables"),
}
CPU_BUDGET_S = 60  # kernel CPU seconds per notebook at tiny size
CPU_MARK = "__kernel_cpu_s__"


def _parameters_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged `parameters`"
    return tagged[0]


@pytest.fixture
def kernel_of_this_interpreter(tmp_path, monkeypatch):
    """A kernelspec that runs ipykernel with this interpreter (the venv's), found first on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "interp (venv)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # tiny models run many small ops; one intra-op thread is fastest on a shared 2-core machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return KERNEL


def test_notebooks_are_stripped_and_parametrised():
    assert [p.stem for p in NOTEBOOKS] == sorted(EXPECTED)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: outputs not stripped"
        params = nb.cells[_parameters_index(nb)].source
        assert 'MODEL = "tiny"' in params and "ROOT = None" in params, path.name
        assert "smollm2-135m" in params, f"{path.name}: the parameters cell names the real model"
        source = "\n".join(c.source for c in code)
        missing = [name for name in EXPECTED[path.stem] if name not in source]
        assert not missing, f"{path.name}: does not call {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_on_the_tiny_model(path, tmp_path, kernel_of_this_interpreter):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # as papermill does: a cell after `parameters` overrides them (artifacts into the test's tmp dir)
    nb.cells.insert(_parameters_index(nb) + 1, nbformat.v4.new_code_cell(f"ROOT = {str(tmp_path / 'artifacts')!r}"))
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import resource\n_u = resource.getrusage(resource.RUSAGE_SELF)\n"
            f"print({CPU_MARK!r}, _u.ru_utime + _u.ru_stime)"
        )
    )
    started = time.perf_counter()
    # a generous per-cell limit: on a loaded machine a cell waits for the CPU; the budget below is the check
    NotebookClient(
        nb, kernel_name=kernel_of_this_interpreter, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    wall = time.perf_counter() - started
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    cpu = float(next(o.text for o in nb.cells[-1].outputs if o.output_type == "stream").split()[-1])
    print(f"{path.name}: kernel CPU {cpu:.1f} s, wall {wall:.1f} s")
    assert any(PLOTLY_MIME in o.get("data", {}) for o in outputs), "no figure was displayed"
    from interp.export import find_chromium

    if find_chromium():  # the static fallback that a saved notebook shows where no JavaScript runs
        figures = [o for o in outputs if PLOTLY_MIME in o.get("data", {})]
        assert all("image/png" in o["data"] for o in figures), "a figure has no static PNG beside it"
    assert list((tmp_path / "artifacts").rglob("figures/*.html")), "no figure was exported"
    assert cpu < CPU_BUDGET_S, (
        f"{path.name} took {cpu:.0f} s of kernel CPU ({wall:.0f} s wall); keep notebooks under a minute"
    )

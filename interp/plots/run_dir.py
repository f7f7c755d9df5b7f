"""Which figures a run directory supports, built from its files (reads only; writes nothing).

Kinds: `e1` (`interp run`: results.json with `arms`, manifest.json listing `stages`), `vector`
(`interp steer`: sweep.json), `mnist` (`interp mnist`), `theorem` (`interp theorem`) and
`audit-confusion` (experiments/audit_confusion.py: results.json with `matrix` and `top1`) and
`sweep` (`interp sweep`: results.json with `grid` and `comparison`).
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from interp.plots.analysis import confusion_figure
from interp.plots.e1 import animal_shifts, trait_probabilities, training_loss, transfer_summary
from interp.plots.steering import steering_sweep_heatmap
from interp.plots.sweep import sweep_transfer
from interp.plots.toy import mnist_accuracies, mnist_sweep, theorem_alignment
from interp.runs import MANIFEST_FILE, RESULTS_FILE, read_json, stage_dirs

FIGURES_DIR = "figures"
SWEEP_FILE = "sweep.json"
TRAIN_LOG_FILE = "train_log.json"
RUN_KINDS = ("e1", "vector", "mnist", "theorem", "audit-confusion", "sweep")


def detect_run(run_dir: str | Path) -> str:
    """The kind of run directory, from its fixed file names and the keys of results.json."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ValueError(f"{d}: not a directory; pass a run directory (e.g. artifacts/e1-tiny/<run-id>)")
    if (d / SWEEP_FILE).exists():
        return "vector"
    if (d / RESULTS_FILE).exists():
        results = read_json(d / RESULTS_FILE)
        experiment = read_json(d / MANIFEST_FILE).get("experiment", "") if (d / MANIFEST_FILE).exists() else ""
        if experiment == "E7-mnist" or "accuracy_by_condition" in results:
            return "mnist"
        if "comparison" in results and "grid" in results:
            return "sweep"
        if experiment == "E8-theorem" or "rows" in results:
            return "theorem"
        if "arms" in results and "transfer" in results:
            return "e1"
        if "matrix" in results and "top1" in results:
            return "audit-confusion"
    raise ValueError(
        f"{d}: not a run directory interp can plot; expected results.json from `interp run`, `interp mnist`, "
        f"`interp theorem`, `interp sweep` or experiments/audit_confusion.py, or sweep.json from `interp steer`"
    )


def student_logs(run_dir: str | Path) -> dict[str, list[dict]]:
    """{'steered/seed0': train_log rows, ...} for the E1 students whose stage directories still exist."""
    d = Path(run_dir)
    if not (d / MANIFEST_FILE).exists():
        return {}
    logs = {}
    for name, sdir in stage_dirs(d).items():
        log = sdir / TRAIN_LOG_FILE
        if name.startswith("student/") and log.exists():
            logs[name.removeprefix("student/")] = read_json(log)
    return logs


def run_figures(run_dir: str | Path) -> tuple[str, dict[str, go.Figure]]:
    """(kind, {fixed figure name: figure}) for everything the run directory supports."""
    d = Path(run_dir)
    kind = detect_run(d)
    if kind == "vector":
        return kind, {"steering_sweep": steering_sweep_heatmap(read_json(d / SWEEP_FILE))}
    results = read_json(d / RESULTS_FILE)
    if kind == "e1":
        figs = {"trait_probabilities": trait_probabilities(results), "animal_shifts": animal_shifts(results)}
        if results["transfer"]:
            figs["transfer_summary"] = transfer_summary(results)
        if logs := student_logs(d):
            figs["training_loss"] = training_loss(logs)
        return kind, figs
    if kind == "mnist":
        figs = {"mnist_accuracies": mnist_accuracies(results)}
        for name, rows in results.get("sweeps", {}).items():
            if rows:
                figs[f"mnist_sweep_{name}"] = mnist_sweep(results, name)
        return kind, figs
    if kind == "sweep":
        return kind, {"sweep_transfer": sweep_transfer(results)}
    if kind == "audit-confusion":
        return kind, {"confusion": confusion_figure(results), "confusion_score_z": confusion_figure(results, "z")}
    return kind, {"theorem_alignment": theorem_alignment(results)}

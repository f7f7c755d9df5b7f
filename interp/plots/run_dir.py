"""Which figures an artifact directory supports, built from its files (reads only; writes nothing).

The kind comes from the directory's manifest.json (`kind`, written by every library runner:
`vector`, `analysis`, `entangle`, `divergence`, `audit`); directories whose manifest names none
(E1 runs, sweeps, E7, E8, and directories written before manifests named their kind, such as
audit_confusion.py's before `interp.analysis.confusion`) are recognised by their file names and the keys of results.json.
`PLOTTABLE` lists every kind with the command that writes it.
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from interp.plots.analysis import (
    analysis_figures,
    audit_ranking,
    confusion_figure,
    e9_figure,
    e9_layers_figure,
    necessity_figure,
)
from interp.plots.e1 import animal_shifts, trait_probabilities, training_loss, transfer_summary
from interp.plots.entangle import divergence_by_offset, entangled_numbers_bars, logit_lens_bars, number_prompting_shift
from interp.plots.steering import steering_sweep_heatmap
from interp.plots.sweep import contrasts_figure, sweep_axis_figure, sweep_figures
from interp.plots.toy import mnist_accuracies, mnist_sweep, theorem_alignment
from interp.runs import MANIFEST_FILE, RESULTS_FILE, read_json, stage_dirs
from interp.steering_run import SWEEP_FILE

FIGURES_DIR = "figures"
TRAIN_LOG_FILE = "train_log.json"
# Every kind `interp plot` draws, and what writes it.
PLOTTABLE = {
    "e1": "`interp run`",
    "sweep": "`interp sweep`",
    "sweep-axis": "experiments/sweep_axis.py",
    "sweep-contrasts": "experiments/sweep_contrasts.py",
    "e9-report": "experiments/e9_report.py",
    "necessity-report": "experiments/necessity_report.py",
    "vector": "`interp steer`",
    "analysis": "`interp analyze`",
    "entangle": "`interp entangle`",
    "divergence": "`interp divergence`",
    "audit": "`interp audit`",
    "audit-confusion": "experiments/audit_confusion.py",
    "mnist": "`interp mnist`",
    "theorem": "`interp theorem`",
}
RUN_KINDS = tuple(PLOTTABLE)


def _kinds_text() -> str:
    return ", ".join(f"{k} ({v})" for k, v in PLOTTABLE.items())


def detect_run(run_dir: str | Path) -> str:
    """The kind of artifact directory: its manifest's `kind`, else (directories whose manifest
    names none) recognised from its fixed file names and the keys of results.json."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ValueError(f"{d}: not a directory; pass an artifact directory (e.g. artifacts/e1-tiny/<run-id>)")
    manifest = read_json(d / MANIFEST_FILE) if (d / MANIFEST_FILE).is_file() else {}
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if isinstance(kind, str):
        if kind in PLOTTABLE:
            return kind
        raise ValueError(
            f"{d}: not a run directory interp can plot (its manifest's kind is {kind!r}); "
            f"interp plot draws {_kinds_text()}"
        )
    kind = _sniff(d, manifest if isinstance(manifest, dict) else {})
    if kind is None:
        raise ValueError(
            f"{d}: not a run directory interp can plot (its manifest names no kind, and no "
            f"results file says what it is); interp plot draws {_kinds_text()}"
        )
    return kind


def _sniff(d: Path, manifest: dict) -> str | None:
    """The kind of a directory whose manifest names none, from its files (the older rule)."""
    if (d / SWEEP_FILE).exists():
        return "vector"
    if not (d / RESULTS_FILE).exists():
        return None
    results = read_json(d / RESULTS_FILE)
    experiment = manifest.get("experiment", "")
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
    if "activation_shift" in results and "weights" in results:
        return "analysis"
    if "ranking" in results and "n_clean" in results:
        return "audit"
    return None


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


def animal_shift_intervals(run_dir: str | Path, results: dict, n_boot: int = 2000) -> dict | None:
    """{arm: {animal: interval}} for `animal_shifts`: each animal's mean log-prob shift (student
    minus the base it started from) with a 95% hierarchical bootstrap over seeds, then questions
    (questions only with one seed), from the run's cached evaluations. None when they are not
    all there, or do not give the shifts results.json reports."""
    import torch

    from interp.pipeline import LOGPROBS_FILE
    from interp.runs import CONFIG_FILE, load_tensors
    from interp.stats import hierarchical_bootstrap

    d = Path(run_dir)
    if not (d / MANIFEST_FILE).exists() or not (d / CONFIG_FILE).exists():
        return None
    # the evaluations' columns, in the config's order (results.json's dicts are stored sorted)
    animals = read_json(d / CONFIG_FILE).get("eval", {}).get("animals")
    if not animals:
        return None
    stages = stage_dirs(d)
    seeds = results["seeds"]
    # the base each seed's students started from: one shared `eval/base`, or one per seed (noise)
    own = {s: f"eval/base/seed{s}" for s in seeds if f"eval/base/seed{s}" in stages}
    if len(own) == 0:
        bases = {s: "eval/base" for s in seeds}
    elif len(own) == len(seeds) - 1 and seeds[0] not in own:
        bases = {**own, seeds[0]: "eval/base"}
    else:
        return None  # some seeds share a base with another: which one is not in the manifest

    def logprobs(name: str) -> torch.Tensor | None:
        f = stages.get(name, Path("/nonexistent")) / LOGPROBS_FILE
        return load_tensors(f)["logprobs"].double() if f.is_file() else None

    out = {}
    for arm, cell in results["arms"].items():
        want = cell.get("per_animal_logprob_shift")
        if want is None:
            continue
        pairs = [(logprobs(f"eval/{arm}/seed{s}"), logprobs(bases[s])) for s in seeds]
        if any(a is None or b is None for a, b in pairs):
            return None
        shift = torch.stack([a - b for a, b in pairs])  # (seeds, questions, animals)
        if shift.shape[-1] != len(animals) or set(animals) != set(want):
            return None
        by = {an: hierarchical_bootstrap(shift[..., k], n_boot) for k, an in enumerate(animals)}
        if any(abs(by[an]["mean"] - want[an]) > 1e-6 for an in animals):
            return None  # not the tensors results.json was computed from
        out[arm] = by
    return out


def run_figures(run_dir: str | Path) -> tuple[str, dict[str, go.Figure]]:
    """(kind, {fixed figure name: figure}) for everything the directory supports."""
    d = Path(run_dir)
    kind = detect_run(d)
    if kind == "vector":
        return kind, {"steering_sweep": steering_sweep_heatmap(read_json(d / SWEEP_FILE))}
    if kind == "entangle":
        return kind, _entangle_figures(d)
    if kind == "divergence":
        from interp.divergence import DIVERGENCE_META

        return kind, {"divergence_by_offset": divergence_by_offset(_need(d, DIVERGENCE_META, kind))}
    results = _need(d, RESULTS_FILE, kind)
    if kind == "e1":
        figs = {
            "trait_probabilities": trait_probabilities(results),
            "animal_shifts": animal_shifts(results, animal_shift_intervals(d, results)),
        }
        if results["transfer"]:
            figs["transfer_summary"] = transfer_summary(results)
        if logs := student_logs(d):
            figs["training_loss"] = training_loss(logs)
        return kind, figs
    if kind == "analysis":
        return kind, analysis_figures(results)
    if kind == "audit":
        return kind, {"audit_ranking": audit_ranking(results)}
    if kind == "mnist":
        figs = {"mnist_accuracies": mnist_accuracies(results)}
        for name, rows in results.get("sweeps", {}).items():
            if rows:
                figs[f"mnist_sweep_{name}"] = mnist_sweep(results, name)
        return kind, figs
    if kind == "sweep":
        return kind, sweep_figures(results)
    if kind == "sweep-axis":
        return kind, {"sweep_axis": sweep_axis_figure(results)}
    if kind == "sweep-contrasts":
        return kind, {"contrasts": contrasts_figure(results)}
    if kind == "e9-report":
        figs = {"e9": e9_figure(results)}
        if len((results.get("by_layer") or {}).get("layers", [])) > 1:
            figs["e9_layers"] = e9_layers_figure(results)
        return kind, figs
    if kind == "necessity-report":
        return kind, {"necessity": necessity_figure(results)}
    if kind == "audit-confusion":
        return kind, {"confusion": confusion_figure(results), "confusion_score_z": confusion_figure(results, "z")}
    return kind, {"theorem_alignment": theorem_alignment(results)}


def _need(d: Path, name: str, kind: str) -> dict:
    if not (d / name).is_file():
        raise ValueError(f"{d}: a {kind} directory without {name}; was it written to the end?")
    return read_json(d / name)


def _entangle_figures(d: Path) -> dict[str, go.Figure]:
    """The figures `interp entangle` wrote: entangled numbers (and the logit lens), or prompting."""
    from interp.entangle import ENTANGLE_META, PROMPTING_META
    from interp.lens import LENS_FILE

    figs = {}
    if (d / ENTANGLE_META).is_file():
        figs["entangled_numbers"] = entangled_numbers_bars(read_json(d / ENTANGLE_META))
    if (d / LENS_FILE).is_file():
        figs["logit_lens"] = logit_lens_bars(read_json(d / LENS_FILE))
    if (d / PROMPTING_META).is_file():
        figs["number_prompting"] = number_prompting_shift(read_json(d / PROMPTING_META))
    if not figs:
        raise ValueError(f"{d}: an entangle directory with none of {ENTANGLE_META}, {LENS_FILE}, {PROMPTING_META}")
    return figs

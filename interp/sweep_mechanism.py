"""What a sweep's students learned, cell by cell: direction against amount (issue 22 A, E5).

    from interp.sweep_mechanism import SweepMechanismConfig, run_sweep_mechanism
    res = run_sweep_mechanism(SweepMechanismConfig("artifacts/e5-protocol-smollm2/<id>"), out_dir)

Runs `interp analyze` (`interp.analysis.run.run_analyze`, cached under each cell's `analysis/`) on
every distinct cell of a finished sweep, at the steering layer only and without emergence or
sufficiency, and reads each cell's `mechanism` block: per arm, cos(shift, v) and the down_proj
update's energy fraction along v (direction) beside |shift| and ||dW_down|| (amount), seed-level
intervals. Then per cell and arm its mechanism minus the reference cell's, paired by seed
(`aggregate.compare_mechanism`), and within each cell the steered students minus the random-vector
students, paired by seed (each noised teacher has its own null). A cell that changes only how much
the students learn moves the amount rows and leaves the direction intervals on 0.
`experiments/sweep_mechanism.py` is its command line; the artifact directory holds `results.json`,
then `manifest.json` (kind "sweep-mechanism": config, every cell analysis's hash, provenance).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.analysis.aggregate import compare_mechanism, paired_mechanism
from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, write_json, write_manifest
from interp.sweep import CELLS_DIR, SWEEP_FILE
from interp.tables_render import ci_or_dash, make_table

ANALYSIS_RESULTS = Path("analysis") / RESULTS_FILE  # interp.analysis.run writes RUN/analysis/results.json


@dataclass(frozen=True)
class SweepMechanismConfig:
    """sweep: a finished sweep's directory (its grid.json and cells/).
    layer: the steering layer, the one the mechanism is read at.
    arms: students analysed in every cell (steered and random give the within-cell null).
    n_texts, n_rows: number prompts and questions read per text set; dataset rows per gradient
        audit (the audit is not used here: few rows keep it cheap).
    device: cpu, cuda or auto; None: each run's own setting.
    """

    sweep: str
    layer: int = 8
    arms: tuple[str, ...] = ("control", "steered", "random")
    n_texts: int = 64
    n_rows: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("arms: empty; name the students to analyse, e.g. control,steered,random")
        if self.n_rows < 1:
            raise ValueError(f"n_rows: {self.n_rows} must be >= 1")

    def default_dir(self) -> Path:
        """Inside the sweep: SWEEP/mechanism."""
        return Path(self.sweep) / "mechanism"


def sweep_cells(sweep_dir: str | Path) -> tuple[list[dict], str | None]:
    """The sweep's distinct cells in grid order, each {id, values (every grid combination that
    makes it), label (the values those combinations share, e.g. sigma 0 under any apply)}, and the
    reference cell's label (None without a reference)."""
    src = Path(sweep_dir) / SWEEP_FILE
    if not src.is_file():
        raise ValueError(f"sweep: {src} does not exist; pass a sweep directory (`interp sweep` writes it)")
    grid = read_json(src)
    by_id: dict[str, list[dict]] = {}
    for c in grid["cells"]:
        by_id.setdefault(c["id"], []).append(c["values"])
    cells = []
    for cid, combos in by_id.items():
        shared = {k: v for k, v in combos[0].items() if all(c.get(k) == v for c in combos)}
        cells.append({"id": cid, "values": combos, "label": ", ".join(f"{k}={v}" for k, v in shared.items()) or cid})
    ref = (grid.get("sweep") or {}).get("reference")
    ref_label = None
    if ref:
        ref_label = next(
            (c["label"] for c in cells if any(all(v.get(k) == x for k, x in ref.items()) for v in c["values"])), None
        )
    return cells, ref_label


def sweep_mechanism(cfg: SweepMechanismConfig, progress: bool = True, log=None) -> dict:
    """Analyse every cell (resumable: each cell's analysis is cached in its run directory) and
    compare their mechanisms; see the module docstring."""
    from interp.analysis.run import AnalyzeConfig, run_analyze  # loads torch models: only when analysing

    d = Path(cfg.sweep)
    cells, ref_label = sweep_cells(d)
    if ref_label is None:
        raise ValueError(f"sweep: {d / SWEEP_FILE} has no sweep.reference cell; set [sweep] reference and rerun")
    missing = [c["id"] for c in cells if not (d / CELLS_DIR / c["id"]).is_dir()]
    if missing:
        raise ValueError(
            f"sweep: cells {missing} have no run directory under {d / CELLS_DIR}; finish `interp sweep` first"
        )
    acfg = AnalyzeConfig(
        n_texts=cfg.n_texts,
        arms=list(cfg.arms),
        layers=[cfg.layer],
        n_rows=cfg.n_rows,
        emergence=False,
        sufficiency=False,
        device=cfg.device,
    )
    out: dict[str, dict] = {}
    inputs: dict[str, str] = {}
    for c in cells:
        run_dir = d / CELLS_DIR / c["id"]
        res = run_analyze(acfg, run_dir, progress, log)
        if not res.get("mechanism"):
            raise ValueError(
                f"layer: {cfg.layer} is not cell {c['id']}'s steering layer (the mechanism is read there); "
                "pass --layer with the sweep's teacher.layer"
            )
        out[c["label"]] = {"id": c["id"], "values": c["values"], "mechanism": res["mechanism"]}
        inputs[c["label"]] = file_hash(run_dir / ANALYSIS_RESULTS)
    vs_random = {
        label: paired_mechanism(m["mechanism"]["steered"]["per_seed"], m["mechanism"]["random"]["per_seed"])
        for label, m in out.items()
        if {"steered", "random"} <= set(m["mechanism"])
    }
    return {
        "experiment": "sweep-mechanism",
        "sweep": str(d),
        "layer": cfg.layer,
        "reference": ref_label,
        "cells": out,
        "vs_reference": compare_mechanism(out, ref_label),
        "steered_minus_random": vs_random,
        "inputs": {"analysis_results_hash": inputs},
        "provenance": provenance(),
    }


def run_sweep_mechanism(cfg: SweepMechanismConfig, out_dir: str | Path, progress: bool = True, log=None) -> dict:
    """`sweep_mechanism` written to `out_dir` (results.json, then manifest.json)."""
    out, started = Path(out_dir), time.perf_counter()
    res = sweep_mechanism(cfg, progress, log)
    write_json(out / RESULTS_FILE, res)
    write_manifest(out, "sweep-mechanism", asdict(cfg), res["inputs"], started)
    return res


ROW_HEADER = (
    "cell",
    "cos(shift, v)",
    "down_proj energy along v",
    "||dW_down||",
    "|shift|",
    "cos minus reference",
    "||dW_down|| minus reference",
    "cos steered - random",
)


def sweep_mechanism_rows(res: dict, arm: str = "steered", texts: str = "numbers/all") -> list[tuple[str, ...]]:
    """One row per cell for `arm`: cos(shift, v) on `texts`, down_proj energy along v, ||dW_down||
    and |shift| (seed intervals), then the direction's and amount's difference from the reference
    cell, paired by seed, and steered minus random's cosine."""
    rows = []
    for label, c in res["cells"].items():
        m = c["mechanism"].get(arm)
        if m is None:
            continue
        vs = (res["vs_reference"]["cells"].get(label) or {}).get(arm) or {}
        null = res["steered_minus_random"].get(label) or {}
        rows.append(
            (
                label,
                ci_or_dash(m["cosine"][texts], "{:+.3f}"),
                ci_or_dash(m["down_proj_energy"], "{:.4f}"),
                ci_or_dash(m["down_proj_delta_norm"], "{:.3g}"),
                ci_or_dash(m["shift_norm"][texts], "{:.3g}"),
                ci_or_dash((vs.get("cosine") or {}).get(texts), "{:+.3f}"),
                ci_or_dash(vs.get("down_proj_delta_norm"), "{:+.3g}"),
                ci_or_dash((null.get("cosine") or {}).get(texts), "{:+.3f}"),
            )
        )
    return rows


def sweep_mechanism_table(res: dict, arm: str = "steered", texts: str = "numbers/all"):
    """`sweep_mechanism_rows` as a table (print it with `interp.tables_render.render`)."""
    return make_table(
        ROW_HEADER,
        sweep_mechanism_rows(res, arm, texts),
        title=f"{arm} students at layer {res['layer']} ({texts}); reference cell {res['reference']}",
    )

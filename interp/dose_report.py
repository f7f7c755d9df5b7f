"""E4 dose-response: is the data's gradient along v linear in the teacher's multiplier, or thresholded?

    from interp.dose_report import DoseResponseConfig, run_dose_response
    res = run_dose_response(DoseResponseConfig(run="artifacts/e4-dose/<id>", layers=(8,)), "artifacts/e4-dose/<id>/dose_response")

Reads `RUN/analysis/results.json`'s `gradient_multiplier_trend` (`interp analyze --multipliers`:
per seed, the descent projection of the data's mean residual gradient on v at each multiplier,
the control teacher's data being multiplier 0) and, per layer read, `interp.stats.dose_shape`: the
pooled Pearson r and slope, the per-seed slope's t-interval, and the verdict (linear, threshold or
saturating) by the rule fixed before the data (`interp.stats.SHAPE_RULE`). The artifact directory
holds `results.json`, then `manifest.json` (kind "dose-response": config, the analysis file's
hash, provenance). `experiments/dose_response.py` is its command line.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, write_json, write_manifest
from interp.stats import dose_shape


@dataclass(frozen=True)
class DoseResponseConfig:
    """run: an E1 run directory analysed with `interp analyze --multipliers`.
    layers: report these layers only (empty: every layer the analysis read).
    """

    run: str
    layers: tuple[int, ...] = ()

    def default_dir(self) -> Path:
        """Inside the run: RUN/dose_response."""
        return Path(self.run) / "dose_response"


def dose_response(run_dir: str | Path, layers: list[int] | tuple[int, ...] | None = None) -> dict:
    """`dose_shape` per layer of a run's analysed multiplier trend."""
    src = Path(run_dir) / "analysis" / RESULTS_FILE
    if not src.is_file():
        raise ValueError(f"run: {src} does not exist; run `interp analyze {run_dir} --multipliers ...` first")
    trend = read_json(src).get("gradient_multiplier_trend")
    if not trend:
        raise ValueError(f"run: {src} has no gradient_multiplier_trend; rerun `interp analyze` with --multipliers")
    read = [r["layer"] for r in trend["by_layer"]]
    missing = [l for l in layers or [] if l not in read]
    if missing:
        raise ValueError(f"layers: {missing} not read by the analysis (layers {read}); pick one of those")
    ms, seeds = trend["multipliers"], [str(s) for s in trend["seeds"]]
    by_layer = []
    for i, layer in enumerate(read):
        if layers and layer not in layers:
            continue
        values = [[trend["per_seed"][s][f"{m:g}"][i] for m in ms] for s in seeds]
        by_layer.append({"layer": layer, **dose_shape(ms, values)})
    return {
        "experiment": "e4-dose-response",
        "run": str(run_dir),
        "measure": trend["measure"],
        "seeds": trend["seeds"],
        "by_layer": by_layer,
        "inputs": {"analysis_results": str(src), "analysis_results_hash": file_hash(src)},
        "provenance": provenance(),
    }


def run_dose_response(cfg: DoseResponseConfig, out_dir: str | Path) -> dict:
    """`dose_response` written to `out_dir` (results.json, then manifest.json)."""
    out, started = Path(out_dir), time.perf_counter()
    res = dose_response(cfg.run, cfg.layers)
    write_json(out / RESULTS_FILE, res)
    write_manifest(out, "dose-response", asdict(cfg), res["inputs"], started)
    return res


def dose_response_lines(res: dict) -> list[str]:
    """One line per layer: r, slopes, the change of slope and the verdict."""
    lines = []
    for row in res["by_layer"]:
        s, c = row["slope_per_seed"], row["slope_change"]
        lines.append(
            f"layer {row['layer']}: r = {row['r']:+.3f} over {row['n_seeds']} seeds x {len(row['doses'])} doses; "
            f"slope {row['slope']:.3g}, per seed {s['mean']:.3g} [{s['ci95'][0]:.3g}, {s['ci95'][1]:.3g}]; "
            f"upper - lower half slope {c['mean']:+.3g} [{c['ci95'][0]:+.3g}, {c['ci95'][1]:+.3g}] "
            f"(detectable {row['slope_change_detectable']:.3g}): {row['verdict'].upper()}; "
            f"hinge preferred by BIC at {row['hinge_preferred']}/{row['n_seeds']} seeds"
        )
    return lines

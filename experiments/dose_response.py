"""E4 dose-response: is the data's gradient along v linear in the teacher's multiplier, or thresholded?

    .venv/bin/interp analyze RUN --arms control,steered --layers 8 --multipliers 0.125,0.25,0.5,1.0 \
        --no-emergence --no-sufficiency            # the datasets and their gradients (cached, resumable)
    .venv/bin/python experiments/dose_response.py RUN [--layer 8]

Reads `RUN/analysis/results.json`'s `gradient_multiplier_trend` (`interp analyze --multipliers`:
per seed, the descent projection of the data's mean residual gradient on v at each multiplier,
the control teacher's data being multiplier 0) and, per layer read, `interp.stats.dose_shape`: the
pooled Pearson r and slope, the per-seed slope's t-interval, and the verdict (linear, threshold or
saturating) by the rule fixed before the data (`interp.stats.SHAPE_RULE`). Writes
`RUN/dose_response.json` (with the analysis file's hash and provenance).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, write_json
from interp.stats import dose_shape

OUT_FILE = "dose_response.json"


def dose_response(run_dir: str | Path, layers: list[int] | None = None) -> dict:
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
        raise ValueError(f"--layer: {missing} not read by the analysis (layers {read}); pick one of those")
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="an E1 run directory analysed with `interp analyze --multipliers`")
    ap.add_argument(
        "--layer", type=int, action="append", help="report this layer only (repeatable; default: every layer read)"
    )
    args = ap.parse_args(argv)
    try:
        res = dose_response(args.run, args.layer)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    write_json(args.run / OUT_FILE, res)
    for row in res["by_layer"]:
        s, c = row["slope_per_seed"], row["slope_change"]
        print(
            f"layer {row['layer']}: r = {row['r']:+.3f} over {row['n_seeds']} seeds x {len(row['doses'])} doses; "
            f"slope {row['slope']:.3g}, per seed {s['mean']:.3g} [{s['ci95'][0]:.3g}, {s['ci95'][1]:.3g}]; "
            f"upper - lower half slope {c['mean']:+.3g} [{c['ci95'][0]:+.3g}, {c['ci95'][1]:+.3g}] "
            f"(detectable {row['slope_change_detectable']:.3g}): {row['verdict'].upper()}; "
            f"hinge preferred by BIC at {row['hinge_preferred']}/{row['n_seeds']} seeds"
        )
    print(f"written: {args.run / OUT_FILE}")
    return res


if __name__ == "__main__":
    main()

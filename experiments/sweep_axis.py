"""One grid axis read across sweeps that share their reference cell (E5's sigma axis).

    .venv/bin/python experiments/sweep_axis.py artifacts/e5-protocol-smollm2/d9adebbd2d \
        artifacts/e5-protocol-smollm2-sigmas/ad77e670fc --out artifacts/e5-sigma-axis [--format html,png]

Reads each finished sweep's results.json, checks that their reference cells are one (the same
per-seed transfer), and reports every cell on the axis paired by seed against it: transfer, seeds
positive, rank, sign-flip p, the paired difference, the ratio and the power to detect the target
ratio; then the axis value the pick rule carries to another model (`interp.sweep_axis.PICK_RULE`).
The computation is `interp.sweep_axis.run_axis`; it writes OUT/results.json, OUT/manifest.json
(kind "sweep-axis") and the figure (OUT/figures/sweep_axis.*, also `interp plot OUT`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.export import save_figures
from interp.plots.run_dir import FIGURES_DIR
from interp.plots.sweep import sweep_axis_figure
from interp.runs import RESULTS_FILE
from interp.sweep_axis import AxisConfig, axis_lines, run_axis


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sweeps", type=Path, nargs="+", help="finished sweep directories (or records of them)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--field", default=AxisConfig.field, help="the grid field on the axis")
    ap.add_argument("--series", default=AxisConfig.series, help="the grid field that splits the axis into lines")
    ap.add_argument("--comparison", default=AxisConfig.comparison)
    ap.add_argument("--pick-series", default=AxisConfig.pick_series, help="the series the pick rule reads")
    ap.add_argument("--format", default="html,png", help="figure formats (html always)")
    args = ap.parse_args(argv)
    cfg = AxisConfig(tuple(map(str, args.sweeps)), args.field, args.series, args.comparison, args.pick_series)
    try:
        res = run_axis(cfg, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(axis_lines(res)))
    done = save_figures({"sweep_axis": sweep_axis_figure(res)}, args.out / FIGURES_DIR, args.format)
    if done.message:
        print(done.message, file=sys.stderr)
    print(f"written: {args.out / RESULTS_FILE}")
    return res


if __name__ == "__main__":
    main()

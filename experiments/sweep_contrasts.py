"""Pre-stated contrasts between cells of one finished sweep, paired by seed.

    .venv/bin/python experiments/sweep_contrasts.py experiments/configs/e24_quintiles_contrasts.toml \
        experiments/results/e24-quintiles-smollm2_19e5359083 --out artifacts/e24-quintile-contrasts

Reads the contrast file (the sweep config it was stated for, the comparison, and per contrast the
grid values of cells a and b), checks that the sweep's cells are that config's, and prints per
contrast a minus b by seed: t-interval, seeds positive, exact sign-flip p, the difference
detectable at 80% power and the reading. The computation is `interp.sweep_contrast.run_contrasts`;
it writes OUT/results.json, OUT/manifest.json (kind "sweep-contrasts") and the figure
(OUT/figures/contrasts.*, also `interp plot OUT`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.export import save_figures
from interp.plots.run_dir import FIGURES_DIR
from interp.plots.sweep import contrasts_figure
from interp.runs import RESULTS_FILE
from interp.sweep_contrast import contrast_lines, load_contrasts, run_contrasts


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("contrasts", type=Path, help="a contrast file (TOML: sweep_config, [[contrast]] name, a, b)")
    ap.add_argument("sweep", type=Path, help="the finished sweep's directory (or a record of it)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--format", default="html,png", help="figure formats (html always)")
    args = ap.parse_args(argv)
    try:
        res = run_contrasts(load_contrasts(args.contrasts), args.sweep, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(contrast_lines(res)))
    done = save_figures({"contrasts": contrasts_figure(res)}, args.out / FIGURES_DIR, args.format)
    if done.message:
        print(done.message, file=sys.stderr)
    print(f"written: {args.out / RESULTS_FILE}")
    return res


if __name__ == "__main__":
    main()

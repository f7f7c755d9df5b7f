"""What a sweep's students learned, cell by cell: direction (cos(shift, v), energy along v) against amount.

    .venv/bin/python experiments/sweep_mechanism.py artifacts/e5-protocol-smollm2/<id> [--layer 8]

Analyses every cell of a finished sweep at its steering layer (`interp analyze`, cached in each
cell's run directory, so a rerun resumes) and compares the cells' mechanisms with the reference
cell's, paired by seed, and each cell's steered students with its random-vector students. The
computation is `interp.sweep_mechanism.run_sweep_mechanism`; it writes `SWEEP/mechanism/results.json`
and `manifest.json` (kind "sweep-mechanism", with every cell analysis's hash and provenance).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.runs import RESULTS_FILE
from interp.sweep_mechanism import SweepMechanismConfig, run_sweep_mechanism, sweep_mechanism_table
from interp.tables_render import render


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sweep", type=Path, help="a finished sweep directory (grid.json, cells/)")
    ap.add_argument("--layer", type=int, default=8, help="the sweep's steering layer (teacher.layer)")
    ap.add_argument("--arms", default="control,steered,random", help="students analysed, comma-separated")
    ap.add_argument("--n-texts", type=int, default=64, help="number prompts and questions read per text set")
    ap.add_argument("--n-rows", type=int, default=16, help="dataset rows per gradient audit (not used here)")
    ap.add_argument("--device", default=None, help="cpu, cuda or auto (default: each run's own setting)")
    ap.add_argument("--out", type=Path, help="output folder (default: SWEEP/mechanism)")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    args = ap.parse_args(argv)
    try:
        cfg = SweepMechanismConfig(
            str(args.sweep),
            layer=args.layer,
            arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
            n_texts=args.n_texts,
            n_rows=args.n_rows,
            device=args.device,
        )
        out = args.out or cfg.default_dir()
        res = run_sweep_mechanism(cfg, out, args.progress)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(render(sweep_mechanism_table(res), width=200))
    print(f"written: {out / RESULTS_FILE}")
    return res


if __name__ == "__main__":
    main()

"""A second generation (issue 24.4): each first-generation student teaches its own seed's
generation-2 students; the steered chain against the control chain, by seed.

    .venv/bin/python experiments/generation2.py --config experiments/configs/e24_generation2.toml \
        --first-generation artifacts/e1-confirm/c6fa6c290e --root artifacts --out artifacts/e24-generation2

Runs (or resumes) one E1 run per chain and seed (`model` = that seed's first-generation student,
`student_model` the original base), then compares the chains by seed in both generations and
applies `interp.generation.VERDICT_RULE` (persists, fades, grows, lost). The computation is
`interp.generation.run_generation2`; it writes OUT/results.json and OUT/manifest.json (kind
"generation2"). `interp lineage ROOT/<experiment>-steered/<run-id>` traces any of the runs back to
the first teacher's vector.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.generation import Generation2Config, generation2_lines, run_generation2
from interp.runs import RESULTS_FILE


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", type=Path, required=True, help="the generation-2 E1 config")
    ap.add_argument("--first-generation", type=Path, required=True, help="the first generation's E1 run directory")
    ap.add_argument("--chains", default="steered,control", help="trait chain, reference chain (first-generation arms)")
    ap.add_argument("--root", type=Path, default=Path("artifacts"), help="artifact root (stage cache and runs)")
    ap.add_argument("--out", type=Path, required=True, help="output folder for the comparison")
    args = ap.parse_args(argv)
    chains = tuple(c.strip() for c in args.chains.split(","))
    cfg = Generation2Config(str(args.config), str(args.first_generation), chains)
    try:
        res = run_generation2(cfg, args.root, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(generation2_lines(res)))
    print(f"written: {args.out / RESULTS_FILE}")
    return res


if __name__ == "__main__":
    main()

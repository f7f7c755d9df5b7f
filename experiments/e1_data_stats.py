"""What the owl teacher's data and the random-vector teacher's data have in common, per seed.

    .venv/bin/python experiments/e1_data_stats.py artifacts/e1-cpu/<run id>              # statistics only
    .venv/bin/python experiments/e1_data_stats.py artifacts/e1-cpu/<run id> --llr-seeds 0,1,2

For every dataset stage of an E1 run: numbers per reply, the mean number, the share of numbers
below 100, completion tokens per reply, and the share of replies identical to the control
teacher's (same prompt, same sampling generator). With `--llr-seeds`, also each row's
log-likelihood ratio under the run's trait vector at the run's layer and multiplier against no
steering, so one sees whether the random-vector teacher's data is itself more owl-like than the
control's. Beside each seed: the transfer the run measured for it (owl-specific, steered - random
and steered - control). The computation is `interp.data_stats.run_data_stats`; it writes
`<run>/data_stats/results.json` and `manifest.json` (kind "data-stats").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.data_stats import DataStatsConfig, data_stats_lines, run_data_stats
from interp.runs import RESULTS_FILE


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="an E1 run directory")
    ap.add_argument("--llr-seeds", default="", help="comma-separated seeds whose rows get the LLR (forward passes)")
    ap.add_argument("--out", type=Path, help="output folder (default: <run>/data_stats)")
    args = ap.parse_args(argv)
    try:
        seeds = tuple(int(s) for s in args.llr_seeds.split(",") if s)
    except ValueError:
        sys.exit(f"error: --llr-seeds: {args.llr_seeds!r} is not a comma-separated list of seeds, e.g. 0,1,2")
    cfg = DataStatsConfig(str(args.run), seeds)
    out = args.out or cfg.default_dir()
    try:
        res = run_data_stats(cfg, out)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print("\n".join(data_stats_lines(res)))
    print(f"wrote {out / RESULTS_FILE}")


if __name__ == "__main__":
    main()

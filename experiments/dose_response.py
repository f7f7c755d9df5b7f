"""E4 dose-response: is the data's gradient along v linear in the teacher's multiplier, or thresholded?

    .venv/bin/interp analyze RUN --arms control,steered --layers 8 --multipliers 0.125,0.25,0.5,1.0 \
        --no-emergence --no-sufficiency            # the datasets and their gradients (cached, resumable)
    .venv/bin/python experiments/dose_response.py RUN [--layer 8]

Reads `RUN/analysis/results.json`'s `gradient_multiplier_trend` and, per layer read, reports the
pooled Pearson r and slope, the per-seed slope's t-interval, and the verdict (linear, threshold or
saturating) by the rule fixed before the data (`interp.stats.SHAPE_RULE`). The computation is
`interp.dose_report.run_dose_response`; it writes `RUN/dose_response/results.json` and
`manifest.json` (kind "dose-response", with the analysis file's hash and provenance).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.dose_report import DoseResponseConfig, dose_response_lines, run_dose_response
from interp.runs import RESULTS_FILE


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="an E1 run directory analysed with `interp analyze --multipliers`")
    ap.add_argument(
        "--layer", type=int, action="append", help="report this layer only (repeatable; default: every layer read)"
    )
    ap.add_argument("--out", type=Path, help="output folder (default: RUN/dose_response)")
    args = ap.parse_args(argv)
    cfg = DoseResponseConfig(str(args.run), tuple(args.layer or ()))
    out = args.out or cfg.default_dir()
    try:
        res = run_dose_response(cfg, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(dose_response_lines(res)))
    print(f"written: {out / RESULTS_FILE}")
    return res


if __name__ == "__main__":
    main()

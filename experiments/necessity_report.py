"""E9's necessity for the steered teacher: each multiplier's transfer with and without v projected out.

    .venv/bin/interp run experiments/configs/e2_protocol/project_out.toml             # x0.228, projected
    .venv/bin/interp run experiments/configs/e2_protocol/project_out_operating.toml   # x0.5, projected
    .venv/bin/python experiments/necessity_report.py \\
        artifacts/e2-matched/<id> artifacts/e2-project-out/<id> \\
        artifacts/e2-operating/<id> artifacts/e2-project-out-operating/<id> [--out DIR] [--format html,png]

Run directories in pairs, PLAIN then PROJECTED (its twin with train.project_out). Per multiplier,
paired by seed: steered - control, random - control and steered - random in both runs, the
necessity effect (plain minus projected), the projection's effect on the control students, and the
verdict by `interp.necessity_report.NECESSITY_RULE`. The computation is
`interp.necessity_report.run_necessity`; it writes `DIR/results.json`, `manifest.json` (kind
"necessity-report") and `figures/necessity.{html,png}` (default DIR: the first PROJECTED run's
necessity_report/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.export import save_figures
from interp.necessity_report import NecessityConfig, necessity_lines, run_necessity
from interp.plots.analysis import necessity_figure
from interp.plots.run_dir import FIGURES_DIR
from interp.runs import RESULTS_FILE


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("runs", type=Path, nargs="+", help="PLAIN PROJECTED run directories, one pair per multiplier")
    ap.add_argument("--out", type=Path, help="output folder (default: the first PROJECTED/necessity_report)")
    ap.add_argument("--format", default="html", help="figure formats, comma-separated: html, png, svg, pdf")
    args = ap.parse_args(argv)
    if len(args.runs) % 2:
        print(f"error: runs: {len(args.runs)} directories given; pass them in pairs, PLAIN PROJECTED", file=sys.stderr)
        raise SystemExit(2)
    cfg = NecessityConfig(tuple((str(args.runs[i]), str(args.runs[i + 1])) for i in range(0, len(args.runs), 2)))
    out = args.out or cfg.default_dir()
    try:
        res = run_necessity(cfg, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(necessity_lines(res)))
    done = save_figures({"necessity": necessity_figure(res)}, out / FIGURES_DIR, args.format)
    if done.message:
        print(done.message, file=sys.stderr)
    print(f"written: {out / RESULTS_FILE}")
    return res


if __name__ == "__main__":
    main()

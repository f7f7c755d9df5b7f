"""E2/E9 at matched behaviour: steered against prompted students, paired by seed, and the verdict.

    .venv/bin/interp run experiments/configs/e2_protocol/operating.toml       # steered x0.5 and the rest
    .venv/bin/interp run experiments/configs/e2_protocol/matched.toml         # steered x0.228 (shares the rest)
    .venv/bin/interp analyze OPERATING_RUN --layers 8 --no-emergence --no-sufficiency --n-rows 16
    .venv/bin/interp analyze MATCHED_RUN --layers 8 --no-emergence --no-sufficiency --n-rows 16
    .venv/bin/python experiments/e9_report.py OPERATING_RUN MATCHED_RUN [--out DIR] [--format html,png]

Per arm against the control students: transfer, seeds positive, the trait's rank, sign-flip p;
cos(shift, v) and cos(shift, v_prompt) at the steering layer; then the claim's contrasts (steered
against its random null and against the prompted teacher it is set against; each prompted teacher
against its v-ablated twin) and the verdict by `interp.e9_report.E9_RULE`, fixed before the runs
were read. The computation is `interp.e9_report.run_e9`; it writes `DIR/results.json`,
`manifest.json` (kind "e9-report") and `figures/e9.{html,png}`, with `figures/e9_layers.*` and a
by-layer table where the analyses read more than one layer (default DIR: MATCHED_RUN/e9_report).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.e9_report import E9Config, e9_layer_lines, e9_lines, run_e9
from interp.export import save_figures
from interp.plots.analysis import e9_figure, e9_layers_figure
from interp.plots.run_dir import FIGURES_DIR
from interp.runs import RESULTS_FILE


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("operating", type=Path, help="the analysed run of operating.toml")
    ap.add_argument("matched", type=Path, help="the analysed run of matched.toml")
    ap.add_argument("--out", type=Path, help="output folder (default: MATCHED/e9_report)")
    ap.add_argument("--format", default="html", help="figure formats, comma-separated: html, png, svg, pdf")
    args = ap.parse_args(argv)
    cfg = E9Config(str(args.operating), str(args.matched))
    out = args.out or cfg.default_dir()
    try:
        res = run_e9(cfg, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(e9_lines(res) + [""] + e9_layer_lines(res)))
    figs = {"e9": e9_figure(res)}
    if len(res["by_layer"]["layers"]) > 1:
        figs["e9_layers"] = e9_layers_figure(res)
    done = save_figures(figs, out / FIGURES_DIR, args.format)
    if done.message:
        print(done.message, file=sys.stderr)
    print(f"written: {out / RESULTS_FILE}")
    return res


if __name__ == "__main__":
    main()

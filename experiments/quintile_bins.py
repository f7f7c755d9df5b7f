"""What the score bins of a quintile sweep hold (issue 24.2): each bin's mean row LLR under its own
teacher, and its rows' length, per seed, beside the transfer the sweep reports.

    .venv/bin/python experiments/quintile_bins.py artifacts/e24-quintiles-smollm2/19e5359083 \
        --out experiments/results/e24-quintiles-smollm2_19e5359083/bins.json

A row's LLR is a sum over its tokens, so a bin could rank high by length alone; the lengths say
whether it does. The computation is `interp.selection.bin_profiles` over the sweep's jobs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.runs import provenance, write_json
from interp.selection import bin_profiles
from interp.tables_render import make_table, render

FIELDS = ("llr_mean", "numbers_per_row", "chars_per_row")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sweep", type=Path, help="a sweep's directory (ROOT/<name>/<key>, with jobs/)")
    ap.add_argument("--kind", default="steered", help="the teacher kind whose bins to profile")
    ap.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = ap.parse_args(argv)
    jobs = sorted(p.parent for p in (args.sweep / "jobs").glob("*/manifest.json"))
    if not jobs:
        print(f"error: {args.sweep / 'jobs'}: no finished job; run the sweep first", file=sys.stderr)
        raise SystemExit(2)
    try:
        prof = bin_profiles(jobs, args.kind)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = {
        q: {f: sum(p[f] for p in by_seed.values()) / len(by_seed) for f in FIELDS} | {"n_seeds": len(by_seed)}
        for q, by_seed in prof.items()
    }
    res = {"sweep": str(args.sweep), "kind": args.kind, "summary": summary, "profiles": prof, **provenance()}
    write_json(args.out, res)
    print(
        render(
            make_table(
                ("bin", "seeds", "mean LLR nats/row", "numbers/row", "chars/row"),
                [
                    (
                        q,
                        s["n_seeds"],
                        f"{s['llr_mean']:+.2f}",
                        f"{s['numbers_per_row']:.2f}",
                        f"{s['chars_per_row']:.1f}",
                    )
                    for q, s in sorted(summary.items(), key=lambda kv: kv[1]["llr_mean"])
                ],
                title=f"{args.kind} bins of {args.sweep} (means over seeds)",
            )
        )
    )
    print(f"written: {args.out}")
    return res


if __name__ == "__main__":
    main()

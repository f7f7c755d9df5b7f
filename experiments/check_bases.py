"""Check a noise sweep's bases before its students train: is each noised base still a model?

    .venv/bin/python experiments/check_bases.py experiments/configs/e5_protocol/noise_gemma_unbroken.toml \\
        [--sigmas 0.01,0.03] [--root artifacts] [--out DIR]

For every cell with weight noise and every seed, the noised base (teacher's, student's or shared)
reads the seed's clean control teacher's rows, and its NLL per completion token is compared with the
clean base's (`interp.base_check.BROKEN_RULE`). The control datasets come from the sweep's cells or,
before they ran, from the cache (another sweep or run of the same protocol made them); a seed whose
dataset exists nowhere is listed as unchecked. Each NLL is a cached stage, so the sweep's own report
reuses them. `--sigmas` checks other sigmas on the same grid (the noise.sigma axis becomes the
reference's sigma and these; nothing else changes), to pick a sigma by the base check before a sweep
is written for it. Writes DIR/results.json and manifest.json (default DIR: the sweep's
directory/base_check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.base_check import BROKEN_RULE
from interp.config import read_toml
from interp.runs import file_hash, provenance, write_json
from interp.sweep import parse_sweep
from interp.sweep_report import check_bases


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sweep", type=Path, help="the sweep's TOML file")
    ap.add_argument("--root", type=Path, default=Path("artifacts"), help="artifact root (its cache/)")
    ap.add_argument("--out", type=Path, help="output folder (default: the sweep's directory/base_check)")
    ap.add_argument("--sigmas", help="comma-separated sigmas to check in place of the grid's noised ones")
    args = ap.parse_args(argv)
    try:
        raw = read_toml(args.sweep, "sweep")
        sigmas = [float(x) for x in args.sigmas.split(",")] if args.sigmas else None
        if sigmas is not None:
            grid, ref = raw["sweep"]["grid"], raw["sweep"].get("reference", {})
            if "noise.sigma" not in grid or "noise.sigma" not in ref:
                raise ValueError("--sigmas needs a grid axis and a reference on noise.sigma")
            grid["noise.sigma"] = [ref["noise.sigma"], *sigmas]
        sweep = parse_sweep(raw, str(args.sweep))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.sweep}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    checks = check_bases(sweep, args.root, before_cells=True)
    labels = {c.id: c.label() for c in sweep.cells}
    res = {"sweep": sweep.section.name, "sigmas": sigmas, "rule": BROKEN_RULE, "cells": {}}
    for cid, check in checks.items():
        res["cells"][labels[cid]] = check
        if check.get("unchecked_seeds") and not check["bases"]:
            print(f"{labels[cid]}: no clean control dataset found for any seed; run its reference cell first")
        for b in check["bases"]:
            print(
                f"{labels[cid]} seed {b['seed']} {b['role']}: NLL/token {b['nll']:.3f} vs clean {b['clean_nll']:.3f}"
                f" (excess {b['excess']:+.3f}){'  BROKEN' if b['broken'] else ''}"
            )
    out = args.out or sweep.directory(args.root) / "base_check"
    write_json(out / "results.json", res)
    write_json(
        out / "manifest.json",
        {
            "kind": "base-check",
            "source": str(args.sweep),
            "sigmas": sigmas,
            "inputs": {str(args.sweep): file_hash(args.sweep)},
            **provenance(),
        },
    )
    print(f"written: {out / 'results.json'}")
    return res


if __name__ == "__main__":
    main()

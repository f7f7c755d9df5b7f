"""One grid axis read across sweeps that share their reference cell.

    from interp.sweep_axis import AxisConfig, run_axis
    res = run_axis(AxisConfig(sweeps=("artifacts/e5-protocol-smollm2/d9adebbd2d",
                                      "artifacts/e5-protocol-smollm2-sigmas/ad77e670fc")), "artifacts/e5-sigma-axis")

E5's sigma axis lives in two sweeps: `noise_smollm2.toml` (sigma 0 and 0.1) and
`noise_sigmas_smollm2.toml` (0.01 and 0.03, whose sigma-0 cell is the first sweep's, reused), kept
apart so the first keeps its published id. Each sweep's report already pairs its cells by seed with
the reference; this module puts the cells of both on one axis, after checking that the references
are one and the same (the same per-seed transfer, to the bit; otherwise the pairs would not be
pairs), and applies the rule that carries a sigma to Gemma (`PICK_RULE`, fixed in the README before
the sigma cells were read). The artifact directory holds `results.json` (kind "sweep-axis"), then
`manifest.json` (config, each sweep's results hash, provenance); `interp plot DIR` draws it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, write_json, write_manifest
from interp.stats import sign_flip_test, t_interval

KIND = "sweep-axis"
PICK_RULE = (
    "the axis value whose pick-series cell has the largest mean paired difference from the reference "
    "(by seed, in the comparison); broken cells are excluded; ties go to the smaller value"
)


@dataclass(frozen=True)
class AxisConfig:
    """sweeps: finished sweep directories (or committed records of them) sharing one reference cell.
    field: the grid field on the axis. series: the grid field that splits it into lines.
    comparison: the transfer comparison read. pick_series: the series the pick rule reads.
    """

    sweeps: tuple[str, ...]
    field: str = "noise.sigma"
    series: str = "noise.apply"
    comparison: str = "steered-random"
    pick_series: str = "shared"


def grid_value(row: dict, keys: list[str], field: str, where: str):
    """A row's value of `field`, also when a joined grid key ("noise.sigma,train.keep") set it."""
    for k in keys:
        names = [f.strip() for f in k.split(",")]
        if field in names:
            return row[k][names.index(field)] if len(names) > 1 else row[k]
    raise ValueError(f"field: {field!r} is not a grid field of {where} (its grid: {keys}); pick one of those")


def _entry(c: dict, per_seed_ref: list[float]) -> dict:
    """One comparison of one cell, with the seed-level numbers a table needs (recomputed from the
    per-seed values, so two sweeps' reports are read alike whatever version wrote them)."""
    v = c.get("vs_reference") or {}
    paired = t_interval([a - b for a, b in zip(c["per_seed"], per_seed_ref)])
    return {
        "per_seed": c["per_seed"],
        "transfer_per_seed": t_interval(c["per_seed"]),
        "positive_seeds": sum(x > 0 for x in c["per_seed"]),
        "trait_rank_among_animals": c["trait_rank_among_animals"],
        "sign_flip_p": sign_flip_test(c["per_seed"])["p"],
        "paired_vs_reference": paired,
        "ratio": v.get("ratio"),
        "ratio_ci95": v.get("ratio_ci95"),
        "power": next((p for k, p in v.items() if k.startswith("power_")), None),
    }


def sweep_axis(results: list[dict], cfg: AxisConfig, sources: list[str] | None = None) -> dict:
    """The cells of every sweep on one axis: the reference once, then one row per (axis value,
    series value), each comparison paired by seed against the shared reference. Refuses sweeps
    whose reference cells differ, and a cell that two sweeps report differently."""
    sources = sources or [r.get("sweep", f"sweep {i}") for i, r in enumerate(results)]
    ref_seed, ref_row, rows = None, None, {}
    for res, src in zip(results, sources):
        keys = res.get("grid_keys", list(res["grid"]))
        ref = next((r for r in res["rows"] if r["is_reference"]), None)
        if ref is None:
            raise ValueError(f"sweeps: {src} has no reference cell; the axis pairs every cell with one reference")
        seed = {n: c["per_seed"] for n, c in ref["comparisons"].items()}
        if ref_seed is None:
            ref_seed, ref_row = seed, ref
        elif seed != ref_seed:
            raise ValueError(
                f"sweeps: {src}'s reference cell is not {sources[0]}'s (their per-seed transfer differs); "
                "an axis across sweeps needs one reference, reused"
            )
        for r in res["rows"]:
            if r["is_reference"] or {n: c["per_seed"] for n, c in r["comparisons"].items()} == ref_seed:
                continue  # the reference again (sigma 0 under every apply is one cell)
            key = (grid_value(r, keys, cfg.field, src), grid_value(r, keys, cfg.series, src))
            row = {
                cfg.field: key[0],
                cfg.series: key[1],
                "sweep": src,
                "cell": r["cell"],
                "broken": bool(r.get("broken")),
                "base_check": r.get("base_check"),
                "comparisons": {n: _entry(c, ref_seed[n]) for n, c in r["comparisons"].items() if n in ref_seed},
            }
            if key in rows and rows[key]["comparisons"] != row["comparisons"]:
                raise ValueError(
                    f"sweeps: cell {cfg.field}={key[0]}, {cfg.series}={key[1]} differs between "
                    f"{rows[key]['sweep']} and {src}; pass each cell once"
                )
            rows.setdefault(key, row)
    if cfg.comparison not in ref_seed:
        raise ValueError(f"comparison: {cfg.comparison!r} not in the sweeps' tables (they have {sorted(ref_seed)})")
    ordered = sorted(rows.values(), key=lambda r: (r[cfg.field], str(r[cfg.series])))
    return {
        "field": cfg.field,
        "series": cfg.series,
        "comparison": cfg.comparison,
        "sources": sources,
        "reference": {
            "cell": ref_row["cell"],
            "comparisons": {
                n: {**_entry(c, [0.0] * len(c["per_seed"])), "paired_vs_reference": None}
                for n, c in ref_row["comparisons"].items()
            },
        },
        "rows": ordered,
        "pick": pick(ordered, cfg),
    }


def pick(rows: list[dict], cfg: AxisConfig) -> dict:
    """`PICK_RULE` applied: the axis value to carry to another model."""
    cands = [r for r in rows if r[cfg.series] == cfg.pick_series and not r["broken"]]
    if not cands:
        return {"rule": PICK_RULE, "series": cfg.pick_series, "value": None, "paired_means": []}
    # [value, mean] pairs, not a dict: JSON would turn the values into strings
    means = sorted((r[cfg.field], r["comparisons"][cfg.comparison]["paired_vs_reference"]["mean"]) for r in cands)
    best = max(means, key=lambda m: m[1])[0]  # max keeps the first, the smaller value, on a tie
    return {"rule": PICK_RULE, "series": cfg.pick_series, "value": best, "paired_means": [list(m) for m in means]}


def run_axis(cfg: AxisConfig, out_dir: str | Path) -> dict:
    """`sweep_axis` over the sweeps' results.json, written to `out_dir` (results.json, then manifest.json)."""
    out, started = Path(out_dir), time.perf_counter()
    files = []
    for s in cfg.sweeps:
        f = Path(s) / RESULTS_FILE
        if not f.is_file():
            raise ValueError(
                f"sweeps: {f} does not exist; finish that sweep (`interp sweep CONFIG` reports at the end)"
            )
        files.append(f)
    res = sweep_axis([read_json(f) for f in files], cfg, [str(s) for s in cfg.sweeps])
    res["kind"] = KIND
    res["provenance"] = provenance()
    write_json(out / RESULTS_FILE, res)
    inputs = {str(f): file_hash(f) for f in files}
    write_manifest(out, KIND, asdict(cfg), inputs, started)
    return res


ROW_HEADER = (
    "cell",
    "transfer",
    "> 0",
    "rank",
    "sign-flip p",
    "paired vs reference",
    "ratio (bootstrap)",
    "power",
    "ratio detectable (80%)",
)


def axis_rows(res: dict, comparison: str | None = None) -> list[tuple[str, ...]]:
    """The README's table: the reference, then one row per cell (`ROW_HEADER`); a broken cell
    shows its NLL in place of a ratio."""
    comp, field, series = comparison or res["comparison"], res["field"], res["series"]
    ci = lambda t, f: f"{t['mean']:{f}} [{t['ci95'][0]:{f}}, {t['ci95'][1]:{f}}]"  # noqa: E731
    ref = res["reference"]["comparisons"][comp]
    n = len(ref["per_seed"])
    p = lambda x: f"{x:.3f}" if x < 0.01 else f"{x:.2f}"  # noqa: E731
    rows = [
        (
            "reference",
            ci(ref["transfer_per_seed"], "+.2f"),
            f"{ref['positive_seeds']}/{n}",
            str(ref["trait_rank_among_animals"]),
            p(ref["sign_flip_p"]),
            "",
            "1",
            "",
            "",
        )
    ]
    for r in res["rows"]:
        c = r["comparisons"][comp]
        label = f"{field}={r[field]:g}, {series}={r[series]}"
        if r["broken"]:
            nll = (r["base_check"] or {}).get("nll")
            rows.append((label, "broken base", "", "", "", "", f"NLL {nll:.2f}" if nll is not None else "", "", ""))
            continue
        pw = c["power"] or {}
        rows.append(
            (
                label,
                ci(c["transfer_per_seed"], "+.2f"),
                f"{c['positive_seeds']}/{n}",
                str(c["trait_rank_among_animals"]),
                p(c["sign_flip_p"]),
                ci(c["paired_vs_reference"], "+.2f"),
                f"{c['ratio']:.2f} [{c['ratio_ci95'][0]:.2f}, {c['ratio_ci95'][1]:.2f}]"
                if c["ratio"] is not None
                else "-",
                f"{pw['power']:.2f} at {pw['ratio']:g}x" if pw.get("power") is not None else "-",
                f"{pw['detectable_ratio_80']:.1f}x" if pw.get("detectable_ratio_80") is not None else "-",
            )
        )
    return rows


def axis_lines(res: dict) -> list[str]:
    """The table: per cell, transfer with its seed interval, seeds positive, rank, sign-flip p,
    the paired difference from the reference, the ratio and the power; then the pick."""
    comp, field, series = res["comparison"], res["field"], res["series"]
    ref = res["reference"]["comparisons"][comp]
    t = ref["transfer_per_seed"]
    n = len(ref["per_seed"])
    lines = [
        f"{comp}, {n} seeds; paired = minus the reference by seed",
        f"reference: {t['mean']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}], {ref['positive_seeds']}/{n} > 0, "
        f"rank {ref['trait_rank_among_animals']}, sign-flip p {ref['sign_flip_p']:.3g}",
    ]
    for r in res["rows"]:
        c = r["comparisons"][comp]
        t, d, p = c["transfer_per_seed"], c["paired_vs_reference"], c["power"] or {}
        head = f"{field}={r[field]:g}, {series}={r[series]}: "
        if r["broken"]:
            b = r["base_check"] or {}
            lines.append(head + f"BROKEN base (NLL {b.get('nll', float('nan')):.2f}); no ratio")
            continue
        ratio = (
            f"ratio {c['ratio']:.2f} [{c['ratio_ci95'][0]:.2f}, {c['ratio_ci95'][1]:.2f}]"
            if c["ratio"] is not None
            else "no ratio"
        )
        power = f", power at {p['ratio']:g}x {p['power']:.2f}" if p.get("power") is not None else ""
        lines.append(
            head + f"{t['mean']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}], {c['positive_seeds']}/{n} > 0, "
            f"rank {c['trait_rank_among_animals']}, p {c['sign_flip_p']:.3g}; paired {d['mean']:+.3f} "
            f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]; {ratio}{power}"
        )
    pk = res["pick"]
    means = ", ".join(f"{k:g}: {v:+.3f}" for k, v in pk["paired_means"])
    lines.append(f"pick ({pk['series']} cells; paired means {means}): {field} = {pk['value']}")
    return lines

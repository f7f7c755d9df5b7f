"""The tables of the commands that list models and build teachers: `interp models`, `steer`,
`match-multiplier` and `divergence` (a teacher's dataset against the control's)."""

from __future__ import annotations

from interp.tables_render import WIDTH, make_table, render


def models_table(rows: list[dict], width: int = WIDTH) -> str:
    return render(
        make_table(
            ("name", "status", "description", "detail"),
            [(r["name"], r["status"], r["description"], r["detail"]) for r in rows],
        ),
        width=width,
    )


def steer_table(sweep: dict, split: str, width: int = WIDTH) -> str:
    """`interp steer`: P(trait) over the base's, one row per layer, one column per multiplier."""
    layers = list(dict.fromkeys(c["layer"] for c in sweep["cells"]))
    mults = list(dict.fromkeys(c["multiplier"] for c in sweep["cells"]))
    cells = {(c["layer"], c["multiplier"]): c for c in sweep["cells"]}
    return render(
        make_table(
            ("layer", *[f"x{mu:g}" for mu in mults]),
            [(l, *[f"{cells[(l, mu)]['ratio']:.1f}" for mu in mults]) for l in layers],
            title=f"P({sweep['animal']}) / base P ({sweep['base_prob']:.2e}), {split} questions",
        ),
        width=width,
    )


def divergence_tables(s: dict, dataset: str, teacher: str, rule: str, width: int = WIDTH) -> str:
    """`interp divergence`: the share of divergence tokens, by rule and by completion offset."""
    head = (
        f"divergence tokens of {dataset} ({teacher} teacher vs control, rule {rule}): {s['share']:.2%} of "
        f"{s['n_positions']} completion tokens in {s['n_rows']} rows; {s['rows_with_divergence']:.0%} of rows have one"
    )
    rules = (
        "share by rule: "
        + ", ".join(f"{r} {v:.2%}" for r, v in s["share_by_rule"].items())
        + f"; emitted token = trait argmax {s['teacher_argmax_is_emitted']:.0%}, "
        f"= control argmax {s['control_argmax_is_emitted']:.0%}"
    )
    by = s["share_by_offset"]
    offsets = make_table(
        ("offset", *[f"+{k}" for k in range(10)]),
        [(start, *[f"{v:.0%}" for v in by[start : start + 10]]) for start in range(0, len(by), 10)],
        title="share of divergence tokens by completion-token offset",
    )
    top = (
        make_table(
            ("token", "count"),
            [(repr(tok), count) for tok, count in s["top_divergence_tokens"]],
            title=f"most frequent divergence tokens (of {s['n_divergence']})",
        )
        if s.get("top_divergence_tokens")
        else None
    )
    return render(head, rules, offsets, top, width=width)


def match_table(res: dict, width: int = WIDTH) -> str:
    """`interp match-multiplier`: each teacher's P(trait) and boost on the tuning questions, and
    each prompted teacher's matched multiplier with its bracketing grid points."""
    rows = [("base", "", f"{res['base_prob']:.4g}", "1.0")]
    rows += [(k, "", f"{p['prob']:.4g}", f"{p['boost']:.1f}") for k, p in res["prompted"].items()]
    rows += [("steered", f"x{s['multiplier']:g}", f"{s['prob']:.4g}", f"{s['boost']:.1f}") for s in res["steered"]]
    teachers = make_table(
        ("teacher", "multiplier", f"P({res['animal']})", "boost"),
        rows,
        title=f"P({res['animal']}) on the {res['n_questions']} {res['split']} questions, layer {res['layer']}",
    )
    matched = make_table(
        ("prompted teacher", "matched multiplier", "bracket (multiplier: P)", "crossings"),
        [
            (
                k,
                f"{m['multiplier']:.4g}",
                ", ".join(f"x{b['multiplier']:g}: {b['prob']:.4g}" for b in m["bracket"]),
                m["n_crossings"],
            )
            for k, m in res["matched"].items()
        ],
        title="behaviourally matched multiplier",
    )
    return render(teachers, matched, width=width)

"""The tables a command prints, as text: pure functions from a results dict to a string.

Rendered without colour at a fixed width (80 columns by default: a log or a narrow terminal), so
what a test reads is what a user sees. Intervals are one cell each (`ci`), never split across
lines; wide results are printed as several narrow tables rather than one wide one.
"""

from __future__ import annotations

import io
from typing import Iterable

from rich.console import Console
from rich.table import Table

from interp.stats import NO_INTERVAL, has_interval

WIDTH = 80


def render(*items, width: int = WIDTH) -> str:
    """Tables and lines of text as plain text `width` columns wide (no markup is interpreted)."""
    # force_jupyter=False: inside Jupyter rich would also display each table itself, so a notebook's
    # print(render(...)) showed it twice
    console = Console(
        width=width,
        record=True,
        file=io.StringIO(),
        markup=False,
        highlight=False,
        emoji=False,
        color_system=None,
        force_jupyter=False,
    )
    for item in items:
        if item is not None:
            console.print(item)
    return console.export_text()


def ci(d: dict, fmt: str = "{:.4f}") -> str:
    """`mean [lo, hi]` of a summary, or `mean (no interval)` when it has none (one seed)."""
    if not has_interval(d):
        return f"{fmt.format(d['mean'])} ({NO_INTERVAL})"
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci95'][0])}, {fmt.format(d['ci95'][1])}]"


def _ci(d: dict | None, fmt: str = "{:.4f}") -> str:
    """`ci`, or "-" where there is no value at all (e.g. no cosine without v)."""
    return "-" if d is None else ci(d, fmt)


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def mean(d: dict | None, fmt: str = "{:+.2f}") -> str:
    return "-" if d is None else fmt.format(d["mean"])


def _table(columns: Iterable[str], rows: Iterable[Iterable], title: str | None = None) -> Table:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table


# ----------------------------------------------------------------------------- registry, vectors, datasets


def models_table(rows: list[dict], width: int = WIDTH) -> str:
    return render(
        _table(
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
        _table(
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
    offsets = _table(
        ("offset", *[f"+{k}" for k in range(10)]),
        [(start, *[f"{v:.0%}" for v in by[start : start + 10]]) for start in range(0, len(by), 10)],
        title="share of divergence tokens by completion-token offset",
    )
    top = (
        _table(
            ("token", "count"),
            [(repr(tok), count) for tok, count in s["top_divergence_tokens"]],
            title=f"most frequent divergence tokens (of {s['n_divergence']})",
        )
        if s.get("top_divergence_tokens")
        else None
    )
    return render(head, rules, offsets, top, width=width)


# ----------------------------------------------------------------------------- E1 and sweeps


def plan_table(plan: dict, width: int = WIDTH) -> str:
    """`interp run --dry-run`: the stages `run_e1` would meet and which are cached."""
    from interp.plan import CACHED

    n_cached = sum(s["status"] == CACHED for s in plan["stages"])
    table = _table(
        ("stage", "status", "directory (under the root)"),
        [(s["name"], s["status"], s["dir"] or f"keyed by {s['waits_on']}") for s in plan["stages"]],
        title=f"dry run: {n_cached} of {len(plan['stages'])} stages cached",
    )
    tail = f"run directory: {plan['run_dir']}; nothing computed" + (
        "; a pending stage's key needs an earlier stage's output" if n_cached < len(plan["stages"]) else ""
    )
    return render(table, tail, width=width)


def e1_tables(res: dict, width: int = WIDTH) -> str:
    """`interp run`: the trait probability per arm, then one small (measure, value) table per
    comparison, so the headline numbers fit 80 columns and a log stays readable."""
    arms = _table(
        ("model", f"P({res['animal']}) [95% CI]", "log P [95% CI]"),
        [
            (arm if arm == "base" else f"{arm} student", ci(d["prob"]), ci(d["logprob"], "{:.3f}"))
            for arm, d in res["arms"].items()
        ],
        title=f"trait probability ({res['n_questions']} {res['question_split']} questions, seeds {res['seeds']})",
    )
    items = [arms]
    for name, d in res["transfer"].items():
        perm, ps = d["permutation_specific"], d["specific_per_seed"]
        mde = ps.get("detectable_80")
        items.append(
            _table(
                ("measure", "value"),
                (
                    ("delta log P [95% CI]", ci(d["logprob_diff"], "{:+.3f}")),
                    ("  interval covers", d["logprob_diff"]["covers"]),
                    ("P ratio", f"{d['prob_ratio']:.2f}x"),
                    ("specific delta log P [95% CI]", ci(d["specific_logprob_diff"], "{:+.3f}")),
                    ("specific, seed t-interval", ci(ps, "{:+.3f}") + (f" (n={ps['n']})" if ps["n"] > 1 else "")),
                    ("detectable (80%)", f"{mde:.3f}" if mde is not None else "-"),
                    ("trait rank among animals", d["trait_rank_among_animals"]),
                    *_sign_flip_row(d.get("sign_flip_specific")),
                    ("permutation p (unpaired)", f"{perm['p_value']:.3f} (min {perm['min_p']:.3f})"),
                ),
                title=f"transfer {name}: trait minus reference student",
            )
        )
    items.append("stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in res["timings_s"].items()))
    return render(*items, width=width)


SIGN_FLIP_HEADER = "p (sign-flip, seeds)"


def _sign_flip_row(sf: dict | None) -> tuple:
    """The primary p of a transfer, paired by seed; none in a results.json from before it was
    reported (which keeps its unpaired permutation p)."""
    return ((SIGN_FLIP_HEADER, f"{p_text(sf['p'])} (min {p_text(sf['min_p'])})"),) if sf else ()


def p_text(p: float) -> str:
    """A p to 3 decimals, or in exponent form below 0.001 (a sampled test's floor is 1e-4)."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def sweep_plan_table(plan: dict, width: int = WIDTH) -> str:
    """`interp sweep --dry-run`: the cells and their seeds."""
    return render(
        _table(
            ("cell", "values", "seeds"),
            [(c["id"], c["label"], c["seeds"]) for c in plan["cells"]],
            title=f"sweep {plan['sweep']}: {plan['n_jobs']} jobs -> {plan['directory']}",
        ),
        width=width,
    )


def sweep_tables(res: dict, width: int = WIDTH) -> str:
    """`interp sweep`: per comparison, each cell's transfer, then its comparison with the reference
    cell (and the power to detect the target ratio), as narrow tables (one wide table cut its
    intervals at 80 columns); then the noised bases' check. A results.json from before every
    comparison was reported shows its one `comparison`."""
    keys = res.get("grid_keys", list(res["grid"]))

    def cell(r: dict) -> str:
        return ", ".join(str(r[k]) for k in keys)

    names = res.get("comparisons") or [res["comparison"]]
    names = [res["comparison"]] + [n for n in names if n != res["comparison"]]
    items = []
    for name in names:
        # (row, this comparison's entry); a row without `comparisons` holds the one comparison itself
        entries = [
            (r, r["comparisons"][name] if "comparisons" in r else r)
            for r in res["rows"]
            if "comparisons" not in r or name in r["comparisons"]
        ]
        items += _sweep_comparison(name, entries, cell, keys, res.get("target_ratio"))
    if res.get("base_check"):
        items.append(_sweep_bases(res, cell))
    return render(*items, width=width)


def _sweep_comparison(name: str, entries: list[tuple[dict, dict]], cell, keys: list[str], target: float | None) -> list:
    # one p column: the sign-flip p over seeds where the report has it, else (an older report) the
    # unpaired permutation p it had
    if entries and all("sign_flip_specific" in e for _, e in entries):
        p_head, p_of = ("p sign-flip",), lambda e: (p_text(e["sign_flip_specific"]["p"]),)
    elif any("permutation_p" in e for _, e in entries):
        p_head, p_of = ("perm. p",), lambda e: (f"{e['permutation_p']:.3f}",)
    else:
        p_head, p_of = (), lambda e: ()
    transfer = _table(
        ("cell", "transfer [95% CI]", "> 0", "rank") + p_head,
        [
            (
                cell(r),
                ci(e["transfer_per_seed"], "{:+.2f}"),
                f"{e['positive_seeds']}/{e['n_seeds']}",
                e["trait_rank_among_animals"],
            )
            + p_of(e)
            for r, e in entries
        ],
        title=f"{name}: trait-specific transfer per cell ({', '.join(keys)}); "
        "95% t-intervals over seeds"
        + ("; p: sign-flip test over seeds, two-sided" if p_head == ("p sign-flip",) else ""),
    )
    rows, power = [], []
    for r, e in entries:
        if r.get("broken"):
            b = r["base_check"]
            rows.append((cell(r), f"broken: NLL {b['nll']:.2f} vs {b['clean_nll']:.2f}", "-"))
            continue
        v = e.get("vs_reference")
        if not v:
            continue
        paired = v.get("diff_paired_by_seed")
        diff = (
            ci(paired, "{:+.2f}")
            if paired
            else f"{v['diff']:+.2f} [{v['diff_ci95'][0]:+.2f}, {v['diff_ci95'][1]:+.2f}]"
        )
        ratio = f"{v['ratio']:.2f} [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}]" + (
            "" if v["denominator_excludes_zero"] else " *"
        )
        rows.append((cell(r), diff, ratio))
        p = v.get(f"power_{target:g}x") if target else None
        if p and not r.get("is_reference"):
            power.append(
                (
                    cell(r),
                    "-" if p["power"] is None else f"{p['power']:.2f}",
                    "-" if p["detectable_ratio_80"] is None else f"{p['detectable_ratio_80']:.2f}x",
                    "-" if p["sd"] is None else f"{p['sd']:.3f} (n={p['n']})",
                )
            )
    vs = (
        _table(
            ("cell", "- reference (paired)", "/ reference"),
            rows,
            title=f"{name} against the reference cell: difference by seed, ratio interval by bootstrap",
        )
        if rows
        else None
    )
    star = (
        "* the reference transfer's interval includes 0: read the difference, not the ratio"
        if any(e.get("vs_reference") and not e["vs_reference"]["denominator_excludes_zero"] for _, e in entries)
        else None
    )
    pw = (
        _table(
            ("cell", f"power at {target:g}x", "detectable at 80%", "sd of paired diffs"),
            power,
            title=f"{name}: power to detect a {target:g}x ratio (paired by seed, two-sided t, 0.05)",
        )
        if power
        else None
    )
    return [transfer, vs, star, pw]


def _sweep_bases(res: dict, cell) -> Table:
    """The noised bases' NLL per cell against the clean base's on the same rows (`interp.base_check`)."""
    b = res["base_check"]
    rows = []
    for r in res["rows"]:
        c = r.get("base_check")
        if not c or not c["n_bases"]:
            continue
        rows.append(
            (
                cell(r),
                f"{c['nll']:.3f}",
                f"{c['clean_nll']:.3f}",
                f"{c['max_excess']:+.3f}",
                f"{c['n_broken']}/{c['n_bases']}" + (" BROKEN" if c["broken"] else ""),
            )
        )
    return _table(
        ("cell", "NLL/token", "clean", "max excess", "broken"),
        rows,
        title=f"noised bases, {b['vocab']}-vocabulary NLL per number-completion token "
        f"(broken: > clean + {b['margin_nats_per_token']:g})",
    )


# ----------------------------------------------------------------------------- analyses


def lr_select_table(res: dict, width: int = WIDTH) -> str:
    """`interp lr-select`: each mode's held-out loss per lr (mean over seeds, 95% t-interval), the
    chosen lr marked."""
    rows = []
    for name, m in res["modes"].items():
        for g in m["grid"]:
            loss = (
                f"diverged on {g['diverged_seeds']} seed(s)"
                if g["mean"] is None
                else ci(g["per_seed_interval"], "{:.4f}")
            )
            rows.append((name, f"{g['lr']:g}", loss, "<- chosen" if res["chosen"][name] == g["lr"] else ""))
    return render(
        _table(
            ("mode", "lr", "held-out loss [95% CI]", ""),
            rows,
            title=f"held-out loss on the control teacher's data, seeds {res['seeds']} ({res['rule']})",
        ),
        width=width,
    )


def entangled_tables(res: dict, top: int, width: int = WIDTH) -> str:
    """`interp entangle`: the numbers a trait makes likelier, against the other animals as the null."""
    ranked = _table(
        ("rank", "number", "effect", "other animals: mean [min, max]", "specific", "z", "above others"),
        [
            (
                i,
                r["number"],
                f"{r['effect']:+.3f}",
                f"{r['null_mean']:+.3f} [{r['null_min']:+.3f}, {r['null_max']:+.3f}]",
                f"{r['specific']:+.3f}",
                f"{r['z']:+.2f}",
                f"{r['percentile']:.0%}",
            )
            for i, r in enumerate(res["top"], 1)
        ],
        title=f"numbers the {res['animal']} {res['condition']} makes likelier: Δ log P vs neutral "
        f"({res['n_numbers']} numbers, {res['n_questions']} questions, {len(res['animals']) - 1} null animals)",
    )
    sh = res["shuffled_top"]
    items = [
        ranked,
        f"shuffled-trait null: the mean specific effect of {res['animal']}'s top {sh['k']} is "
        f"{sh['target']:+.3f}, rank {sh['rank']} of {sh['of']} animals treated as the trait",
    ]
    if res.get("lens"):
        items.append(
            _table(
                ("token", "logit", "z in vocabulary", "above vocabulary", "z vs random directions"),
                [
                    (
                        repr(r["token"]),
                        f"{r['logit']:+.3f}",
                        f"{r['z']:+.2f}",
                        f"{r['percentile']:.1%}",
                        f"{r['z_vs_random']:+.2f}",
                    )
                    for r in res["lens"]["tokens"]
                ],
                title=f"logit lens of the {res['animal']} vector at layer {res['lens']['layer']}",
            )
        )
        items.append("top tokens of the direction: " + ", ".join(repr(t) for t, _ in res["lens"]["top_tokens"][:10]))
    if res.get("overrepresentation"):
        p = res["overrepresentation"]["pooled"]
        items.append(
            f"top {top} numbers in the dataset: {p['rate_a']:.2%} of its numbers vs {p['rate_b']:.2%} in the "
            f"control's; difference {p['mean']:+.2%} [{p['ci95'][0]:+.2%}, {p['ci95'][1]:+.2%}] (Newcombe), "
            f"[{p['diff_ci95_row_bootstrap'][0]:+.2%}, {p['diff_ci95_row_bootstrap'][1]:+.2%}] (rows bootstrap)"
        )
    return render(*items, width=width)


def prompting_tables(res: dict, width: int = WIDTH) -> str:
    """`interp entangle --number N`: P(trait) when the model loves N, against random numbers."""
    n, animal = res["number"], res["animal"]
    rows = [
        ("none", ci(res["prob_neutral"], "{:.4f}"), "-", "-"),
        (
            f"loves {n}",
            ci(res["prob_prompted"], "{:.4f}"),
            ci(res["shift"]["value"], "{:+.3f}"),
            ci(res["specific_shift"]["value"], "{:+.3f}"),
        ),
    ]
    if res.get("prob_null"):
        sh, sp = res["shift"], res["specific_shift"]
        rows.append(
            (
                f"loves a random number (x{len(res['null_numbers'])})",
                f"{sum(res['prob_null']) / len(res['prob_null']):.4f}",
                f"{sh['null_mean']:+.3f} (sd {sh['null_sd']:.3f})",
                f"{sp['null_mean']:+.3f} (sd {sp['null_sd']:.3f})",
            )
        )
    items = [
        _table(
            ("system prompt", f"P({animal}) [95% CI]", "Δ log P vs none [95% CI]", "specific Δ [95% CI]"),
            rows,
            title=f"subliminal prompting: the model loves {n} ({res['n_questions']} questions)",
        )
    ]
    if res.get("prob_null"):
        for name in ("shift", "specific_shift"):
            d = res[name]
            z = "-" if d["z"] is None else f"{d['z']:+.2f}"
            items.append(
                f"{name.replace('_', ' ')} vs random numbers: z {z}, above {d['percentile']:.0%} of them, "
                f"difference {ci(d['vs_null'], '{:+.3f}')} (interval over questions)"
            )
    return render(*items, width=width)


def audit_table(res: dict, name: str, width: int = WIDTH) -> str:
    """`interp audit`: the bank ranked by the evidence that the dataset carries each vector."""
    like = res["method"] == "likelihood"
    rows = [
        (
            r["rank"],
            r["name"],
            f"{r['score']:+.4g}",
            f"{r['excess']:+.4g} (x{r['multiplier']:g})" if like else f"{r['cosine']:+.3f}",
            f"{r['p_value']:.4f}",
            f"{r['p_bonferroni']:.4f}",
            "yes" if r["flagged"] else "",
        )
        for r in res["ranking"]
    ]
    return render(
        _table(
            (
                "rank",
                "vector",
                "LLR nats/row" if like else "score",
                "vs clean" if like else "cos",
                "p",
                "p Bonferroni",
                "flagged",
            ),
            rows,
            title=f"{res['method']} audit of {name} at layer {res['layer']}: {res['n_rows']} rows vs "
            f"{res['n_clean']} clean rows" + ("" if like else f" (random cos sd {res['random_cosine_sd']:.3f})"),
        ),
        width=width,
    )


def row_audit_table(res: dict, width: int = WIDTH) -> str:
    """`interp row-audit`: the per-row LLR of the teacher against the base, per dataset, and the
    AUROC of trait rows against control rows."""
    t = res["teacher"]
    who = (
        t["kind"]
        + (" on a student" if res.get("teacher_model") else "")
        + (f" (layer {t['steering']['layer']}, x{t['steering']['multiplier']:g})" if "steering" in t else "")
    )
    rows = [("dataset", res["llr"]["n"], ci(res["llr"], "{:+.3f}"))]
    if "control_llr" in res:
        rows.append(("control", res["control_llr"]["n"], ci(res["control_llr"], "{:+.3f}")))
    items = [
        _table(
            ("rows", "n", "LLR nats/row [95% CI]"),
            rows,
            title=f"log P(teacher) - log P(base) per row, {res['vocab']} vocabulary; teacher {who}",
        )
    ]
    if "auroc" in res:
        a = res["auroc"]
        items.append(
            f"AUROC of dataset rows against control rows: {a['auroc']:.3f} "
            f"[{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] (DeLong)"
        )
    items.append(f"scores key {res['key']}")
    return render(*items, width=width)


def selection_line(man: dict) -> str:
    """`interp select`: the bin written and its score range."""
    s = man["selection"]
    head = f"{s['quantile']} of {s['bins']} bins: {man['n_kept']} of {man['parent']['n_rows']} rows"
    if "llr_min" not in s:  # a random bin made without scores
        return head
    return (
        f"{head}, LLR {s['llr_min']:+.3f} to {s['llr_max']:+.3f} (mean {s['llr_mean']:+.3f}; "
        f"all rows {s['parent_llr_mean']:+.3f})"
    )


def _lineage_line(n: dict) -> str:
    k = n["kind"]
    if k == "student":
        return f"student {n.get('name', '')} seed {n.get('seed')} ({n.get('method')}) {n['dir']}".replace("  ", " ")
    if k == "dataset":
        t = n["teacher"]
        how = f" layer {t['steering']['layer']} x{t['steering'].get('multiplier', 0):g}" if "steering" in t else ""
        return f"dataset: {t['kind']} teacher{how}, {n['n_kept']} rows {n['dir']}"
    if k == "selection":
        return (
            f"selection: {n['quantile']} of {n['bins']} bins by scores {n['score_key']}, {n['n_kept']} rows {n['dir']}"
        )
    if k == "mix":
        return f"mix: {n['shares']} {n['dir']}"
    if k == "vector":
        return f"vector {n['vector_hash']} ({n['trait']}, {n['n_pairs']} pairs) {n['dir']}"
    if k == "finetune":
        boost = f", P({n['animal']}) x{n['prob_ratio']:.2f} on the tuning questions" if n.get("prob_ratio") else ""
        return (
            f"finetune: {n['animal']} teacher, {n['method']} on {n['n_pairs']} QA pairs (hash {n['qa_hash']}){boost} "
            f"{n['dir']}"
        )
    if k == "model":
        return f"model {n['name']} (fingerprint {n['fingerprint']})" + (
            f" noise {n['noise']}" if n.get("noise") else ""
        )
    return f"{k}: " + ", ".join(f"{a} {b}" for a, b in n.items() if a not in ("kind", "parents"))


def lineage_text(res: dict) -> str:
    """`interp lineage`: each student's (or the stage's) ancestry as an indented tree."""
    lines: list[str] = []

    def walk(n: dict, depth: int) -> None:
        lines.append("  " * depth + ("<- " if depth else "") + _lineage_line(n))
        for p in n.get("parents", []):
            walk(p, depth + 1)

    for root in res["roots"]:
        walk(root, 0)
    return "\n".join(lines) + "\n"


def analysis_tables(res: dict, width: int = WIDTH) -> str:
    """`interp analyze`: shifts and weight deltas, the gradient audit, emergence, sufficiency,
    necessity and the dose-response, each at the steering layer (or the middle layer read)."""
    at = res["vector"]["steering_layer"]
    i = res["layers"].index(at) if at in res["layers"] else len(res["layers"]) // 2
    layer = res["layers"][i]
    rows = []
    for arm, d in res["activation_shift"].items():
        a, q = d["numbers"]["all"]["by_layer"][i], d["questions"]["last"]["by_layer"][i]
        mods = res["weights"][arm]["by_layer"][i]["modules"]
        rows.append(
            (
                arm,
                _ci(a["cosine"], "{:+.3f}"),
                mean(a["z"]),
                _ci(q["cosine"], "{:+.3f}"),
                mean(q["z"]),
                *[mean(mods.get(m, {}).get("z")) for m in ("mlp.down_proj", "self_attn.o_proj")],
            )
        )
    items = [
        _table(
            ("student", "cos numbers/all [95% CI]", "z", "cos questions/last [95% CI]", "z", "down_proj z", "o_proj z"),
            rows,
            title=f"activation shift and weight delta vs v at layer {layer} (seeds {res['seeds']})",
        )
    ]
    if res.get("cosine_absent"):  # a cross-model run whose students' residual stream is not v's
        items.append(f"no cosine with v: {res['cosine_absent']}")
    if res.get("activation_shift_finetuned"):  # the three interventions' directions side by side
        refs = {
            "v": res["activation_shift"],
            "v_prompt": res.get("activation_shift_prompted") or {},
            "finetuned": res["activation_shift_finetuned"],
        }
        items.append(
            _table(
                ("student", *[f"cos(shift, {r}) [95% CI]" for r in refs]),
                [
                    (
                        arm,
                        *[
                            _ci(refs[r][arm]["numbers"]["all"]["by_layer"][i]["cosine"], "{:+.3f}")
                            if arm in refs[r]
                            else "-"
                            for r in refs
                        ],
                    )
                    for arm in res["activation_shift"]
                ],
                title=f"the shift against each teacher's direction at layer {layer}, numbers/all "
                "(finetuned: the fine-tuned teacher's residual difference from its base)",
            )
        )
    if res.get("mechanism"):  # direction (energy along v) beside amount (norms): noise cells compare on both
        items.append(
            _table(
                ("student", "down_proj energy along v [95% CI]", "||dW_down||", "|shift| numbers/all"),
                [
                    (
                        arm,
                        _ci(m["down_proj_energy"], "{:.4f}"),
                        mean(m["down_proj_delta_norm"], "{:.3g}"),
                        mean(m["shift_norm"]["numbers/all"], "{:.3g}"),
                    )
                    for arm, m in res["mechanism"].items()
                ],
                title=f"direction and amount at layer {at} (a random direction's energy: "
                f"{_num(next(iter(res['mechanism'].values()))['expected_random'], '{:.4f}')})",
            )
        )
    if any(g["by_layer"] for g in res["gradients"].values()):
        items.append(
            _table(
                ("data", "descent cos [95% CI]", "descent z", "mean per-example cos"),
                [
                    (
                        kind,
                        ci(g["by_layer"][i]["descent_cosine"], "{:+.3f}"),
                        mean(g["by_layer"][i].get("descent_z")),
                        mean(g["by_layer"][i]["mean_example_cosine"]),
                    )
                    for kind, g in res["gradients"].items()
                    if g["by_layer"]
                ],
                title=f"gradient audit on the base at layer {layer} (vs control data)",
            )
        )
    if res.get("emergence"):
        steps = next(iter(res["emergence"].values()))["by_texts"]["questions/all"]
        items.append(
            _table(
                ("student", *[f"step {r['step']}" for r in steps]),
                [
                    (arm, *[ci(r["cosine"], "{:+.3f}") for r in e["by_texts"]["questions/all"]])
                    for arm, e in res["emergence"].items()
                ],
                title=f"emergence: cos(shift, v) at layer {layer} on the questions, all tokens",
            )
        )
    if res.get("sufficiency"):
        items.append(
            _table(
                ("student", "specific shift [95% CI]", "random, same norm", "minus control", "|shift|"),
                [
                    (
                        arm,
                        ci(c["specific_shift"], "{:+.3f}"),
                        ci(c["random_specific_shift"], "{:+.3f}"),
                        ci(c["specific_minus_control"], "{:+.3f}") if c.get("specific_minus_control") else "-",
                        mean(c["norm"], "{:.2f}"),
                    )
                    for arm, c in res["sufficiency"].items()
                ],
                title=f"sufficiency: base + the student's shift at layer {at}, specific log P({res['animal']}) - base",
            )
        )
    if res.get("necessity"):
        items.append(
            _table(
                ("comparison", "specific diff [95% seed CI]", "specific > 0 seeds"),
                [
                    (name, ci(c["specific_per_seed"], "{:+.3f}"), c["specific_positive_seeds"])
                    for name, c in res["necessity"].items()
                ],
                title="necessity (E9): transfer from the run",
            )
        )
    if res.get("gradient_multiplier_trend"):
        row = res["gradient_multiplier_trend"]["by_layer"][i]
        items.append(
            f"gradient dose-response at layer {layer}: slope {row['slope']:.4g} per unit multiplier, "
            f"r = {row['r'] if row['r'] is None else round(row['r'], 3)} over {row['n']} datasets; "
            f"per-seed slope {ci(row['slope_per_seed'], '{:.4g}')}"
        )
    return render(*items, width=width)


# ----------------------------------------------------------------------------- toy experiments


def mnist_tables(results: dict, n_aux: int, hidden: int, chance: float, width: int = WIDTH) -> str:
    """`interp mnist` (E7): digit accuracy per condition, then one table per sweep."""
    diff = results["paired_difference"]
    rows = [(r["condition"], ci(r), f"{r['sd']:.3f}", r["n"]) for r in results["table"]]
    rows.append((f"{diff['a']} - {diff['b']} (paired)", ci(diff, "{:+.3f}"), f"{diff['sd']:.3f}", diff["n"]))
    items = [
        _table(
            ("condition", "digit accuracy [95% CI]", "sd", "seeds"),
            rows,
            title=f"E7 on {results['data']['source']} (m={n_aux}, hidden={hidden}; chance {chance:.2f})",
        )
    ]
    for name, sweep in results["sweeps"].items():
        shown = [
            r
            for r in sweep
            if r["condition"] in ("teacher", "student_aux", "cross_student_aux") or " - " in r["condition"]
        ]
        if sweep:
            items.append(
                _table(
                    (name, "condition", "digit accuracy [95% CI]", "seeds"),
                    [
                        (r["value"], r["condition"], ci(r, "{:+.3f}" if " - " in r["condition"] else "{:.3f}"), r["n"])
                        for r in shown
                    ],
                    title=f"sweep over {name}",
                )
            )
    return render(*items, width=width)


def theorem_table(results: dict, width: int = WIDTH) -> str:
    """`interp theorem` (E8): the student step against the teacher's displacement, per cell."""
    return render(
        _table(
            ("model", "teacher", "loss", "init", "<u,d> [95% CI]", "cos(u,d) [95% CI]", ">=0", "seeds", "|d|/|th0|"),
            [
                (
                    r["model"],
                    r["teacher"],
                    r["loss"],
                    r["init"],
                    ci(r["inner"], "{:+.1e}"),
                    ci(r["cosine"], "{:+.3f}"),
                    f"{r['frac_nonneg']:.2f}",
                    r["n"],
                    f"{r['relative_teacher_delta']:.4f}",
                )
                for r in results["rows"]
            ],
            title="E8: student step u vs teacher displacement d = theta_T - theta_0",
        ),
        width=width,
    )


def match_table(res: dict, width: int = WIDTH) -> str:
    """`interp match-multiplier`: each teacher's P(trait) and boost on the tuning questions, and
    each prompted teacher's matched multiplier with its bracketing grid points."""
    rows = [("base", "", f"{res['base_prob']:.4g}", "1.0")]
    rows += [(k, "", f"{p['prob']:.4g}", f"{p['boost']:.1f}") for k, p in res["prompted"].items()]
    rows += [("steered", f"x{s['multiplier']:g}", f"{s['prob']:.4g}", f"{s['boost']:.1f}") for s in res["steered"]]
    teachers = _table(
        ("teacher", "multiplier", f"P({res['animal']})", "boost"),
        rows,
        title=f"P({res['animal']}) on the {res['n_questions']} {res['split']} questions, layer {res['layer']}",
    )
    matched = _table(
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

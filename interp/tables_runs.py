"""The tables of the commands that train students: `interp run` (E1 and its dry run), `sweep`
and `lr-select`."""

from __future__ import annotations

from rich.table import Table

from interp.tables_render import WIDTH, ci, make_table, p_text, render


def plan_table(plan: dict, width: int = WIDTH) -> str:
    """`interp run --dry-run`: the stages `run_e1` would meet and which are cached."""
    from interp.plan import CACHED

    n_cached = sum(s["status"] == CACHED for s in plan["stages"])
    table = make_table(
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
    arms = make_table(
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
            make_table(
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


def seed_span(seeds: list[int]) -> str:
    """Seeds for a narrow column: "3100-3105" when consecutive, else listed."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds)) or "-"


def sweep_plan_table(plan: dict, width: int = WIDTH) -> str:
    """`interp sweep --dry-run`: the cells, their seeds, how many have finished and which have
    begun without finishing (a rerun resumes them)."""
    n_started = sum(len(c.get("started", [])) for c in plan["cells"])
    return render(
        make_table(
            ("cell", "values", "seeds", "done", "started"),
            [
                (
                    c["id"],
                    c.get("short_label", c["label"]),
                    seed_span(c["seeds"]),
                    f"{len(c['done'])}/{len(c['seeds'])}",
                    seed_span(c.get("started", [])),
                )
                for c in plan["cells"]
            ],
            title=f"sweep {plan['sweep']}: {plan['n_jobs']} jobs, {plan['n_done']} done, {n_started} started "
            f"-> {plan['directory']}",
        ),
        width=width,
    )


def lr_select_plan_text(plan: dict) -> str:
    """`interp lr-select --dry-run`: one line per mode, its method and learning rates."""
    return "\n".join(
        f"  {name:<12} {m['method']:<5} lr {', '.join(f'{x:g}' for x in m['lrs'])}" for name, m in plan["modes"].items()
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
    if any(r.get("cost") for r in res["rows"]):
        items.append(_sweep_cost(res, cell))
    return render(*items, width=width)


def _sweep_cost(res: dict, cell) -> Table:
    """What a student of each cell cost: training wall time (median and quartiles) and bytes kept."""
    rows = []
    for r in res["rows"]:
        c = r.get("cost")
        if not c:
            continue
        w, b = c["student_wall_s"], c["student_bytes"]
        rows.append(
            (
                cell(r),
                str(c["students"]),
                f"{w['median']:.0f} [{w['q1']:.0f}, {w['q3']:.0f}]" if "q1" in w else f"{w['median']:.0f}",
                "-" if b is None else f"{b['median'] / 1e6:.1f}",
            )
        )
    return make_table(
        ("cell", "students", "train s: median [quartiles]", "MB kept"),
        rows,
        title="cost per student: training wall time from each student's manifest (on the machine and load "
        "it ran under), and the bytes it keeps",
    )


def _sweep_comparison(name: str, entries: list[tuple[dict, dict]], cell, keys: list[str], target: float | None) -> list:
    # one p column: the sign-flip p over seeds where the report has it, else (an older report) the
    # unpaired permutation p it had
    if entries and all("sign_flip_specific" in e for _, e in entries):
        p_head, p_of = ("p sign-flip",), lambda e: (p_text(e["sign_flip_specific"]["p"]),)
    elif any("permutation_p" in e for _, e in entries):
        p_head, p_of = ("perm. p",), lambda e: (f"{e['permutation_p']:.3f}",)
    else:
        p_head, p_of = (), lambda e: ()
    transfer = make_table(
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
        make_table(
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
        make_table(
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
    return make_table(
        ("cell", "NLL/token", "clean", "max excess", "broken"),
        rows,
        title=f"noised bases, {b['vocab']}-vocabulary NLL per number-completion token "
        f"(broken: > clean + {b['margin_nats_per_token']:g})",
    )


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
        make_table(
            ("mode", "lr", "held-out loss [95% CI]", ""),
            rows,
            title=f"held-out loss on the control teacher's data, seeds {res['seeds']} ({res['rule']})",
        ),
        width=width,
    )

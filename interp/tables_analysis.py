"""The tables of the commands that look inside students and teachers: `interp analyze` (shifts,
weight deltas, the gradient audit, emergence, sufficiency, necessity) and `entangle`."""

from __future__ import annotations

from interp.tables_render import WIDTH, ci, ci_or_dash, make_table, mean, num_or_dash, render


def entangled_tables(res: dict, top: int, width: int = WIDTH) -> str:
    """`interp entangle`: the numbers a trait makes likelier, against the other animals as the null."""
    ranked = make_table(
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
            make_table(
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
        make_table(
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
                ci_or_dash(a["cosine"], "{:+.3f}"),
                mean(a["z"]),
                ci_or_dash(q["cosine"], "{:+.3f}"),
                mean(q["z"]),
                *[mean(mods.get(m, {}).get("z")) for m in ("mlp.down_proj", "self_attn.o_proj")],
            )
        )
    items = [
        make_table(
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
            make_table(
                ("student", *[f"cos(shift, {r}) [95% CI]" for r in refs]),
                [
                    (
                        arm,
                        *[
                            ci_or_dash(refs[r][arm]["numbers"]["all"]["by_layer"][i]["cosine"], "{:+.3f}")
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
            make_table(
                ("student", "down_proj energy along v [95% CI]", "||dW_down||", "|shift| numbers/all"),
                [
                    (
                        arm,
                        ci_or_dash(m["down_proj_energy"], "{:.4f}"),
                        mean(m["down_proj_delta_norm"], "{:.3g}"),
                        mean(m["shift_norm"]["numbers/all"], "{:.3g}"),
                    )
                    for arm, m in res["mechanism"].items()
                ],
                title=f"direction and amount at layer {at} (a random direction's energy: "
                f"{num_or_dash(next(iter(res['mechanism'].values()))['expected_random'], '{:.4f}')})",
            )
        )
    if any(g["by_layer"] for g in res["gradients"].values()):
        items.append(
            make_table(
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
            make_table(
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
            make_table(
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
            make_table(
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

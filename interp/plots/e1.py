"""E1 figures from a run's results.json (`interp.pipeline.run_e1`) and a student's train_log.json."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.plots._style import (
    HIGHLIGHT,
    REFERENCE_LINE,
    add_replicate_points,
    arm_color,
    ci_text,
    error_bars,
    figure,
    fit_legend,
    jitter,
    ordered_arms,
)


def _arm_label(arm: str) -> str:
    return arm if arm == "base" else f"{arm} student"


def trait_probabilities(results: dict) -> go.Figure:
    """P(trait) of the base and each student arm: mean with its 95% interval, per-seed points."""
    animal, arms = results["animal"], results["arms"]
    names = ordered_arms(arms)
    probs = [arms[a]["prob"] for a in names]
    hover = []
    for a in names:
        d = arms[a]
        seeds = d["prob"].get("n_seeds", 1)
        hover.append(
            f"<b>{_arm_label(a)}</b><br>P({animal}) = {ci_text(d['prob'])}<br>log P = {ci_text(d['logprob'])}"
            f"<br>interval covers: {d['prob'].get('covers', 'questions only')} ({seeds} seed(s), "
            f"{d['prob'].get('n_questions', d['prob'].get('n'))} questions)"
        )
    fig = figure(
        f"P({animal}) per model: {results['n_questions']} {results['question_split']} questions, seeds {results['seeds']}",
        "model",
        f"P({animal}) (probability of the first token after the answer prefix)",
    )
    x = list(range(len(names)))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[p["mean"] for p in probs],
            mode="markers",
            name="mean [95% CI]",
            **error_bars(probs),
            marker=dict(size=12, color=[arm_color(a) for a in names], line=dict(width=1, color="#222222")),
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    groups = []
    for i, a in enumerate(names):
        per_seed = arms[a].get("per_seed_prob", [])
        if len(per_seed) > 1:
            groups.append(
                (
                    i + 0.18,
                    per_seed,
                    [f"{_arm_label(a)}, seed {results['seeds'][k]}: P = {v:.6g}" for k, v in enumerate(per_seed)],
                )
            )
    add_replicate_points(fig, groups, size=6)
    if "base" in arms:
        fig.add_hline(
            y=arms["base"]["prob"]["mean"], line=REFERENCE_LINE, annotation_text="base", annotation_position="top left"
        )
    fig.update_xaxes(tickvals=x, ticktext=[_arm_label(a) for a in names], range=[-0.5, len(names) - 0.5])
    return fig


NO_SHIFT_INTERVALS = "no interval: the run's evaluation tensors are not available"


def animal_shifts(results: dict, intervals: dict | None = None) -> go.Figure:
    """Mean log-prob shift of every animal, student minus base, per student arm; the trait highlighted.

    `intervals`: {arm: {animal: {"mean", "ci95", "covers"}}}, each shift's 95% interval (what
    `interp.plots.run_dir.animal_shift_intervals` computes from a run's cached evaluations);
    without them the axis says there is none."""
    animal = results["animal"]
    arms = [a for a in ordered_arms(results["arms"]) if "per_animal_logprob_shift" in results["arms"][a]]
    shifts = {a: results["arms"][a]["per_animal_logprob_shift"] for a in arms}
    animals = list(shifts[arms[0]]) if arms else []
    animals.sort(key=lambda an: -sum(shifts[a][an] for a in arms) / len(arms))
    intervals = {a: intervals[a] for a in arms if intervals and a in intervals}
    covers = {c.get("covers", "seeds") for by in intervals.values() for c in by.values()}
    y_title = "mean Δ log P vs base (nats) " + (
        f"[95% bootstrap over {' / '.join(sorted(covers))}]" if intervals else f"({NO_SHIFT_INTERVALS})"
    )
    fig = figure(
        f"Log-prob shift of each animal vs base (trait: {animal})", "animal (sorted by mean shift over arms)", y_title
    )
    for i, a in enumerate(arms):
        ranks = {an: 1 + sorted(shifts[a].values(), reverse=True).index(shifts[a][an]) for an in animals}
        # the bar is results.json's mean; its error bar spans the interval's ends
        cells = [{**intervals[a][an], "mean": shifts[a][an]} for an in animals] if a in intervals else None
        fig.add_trace(
            go.Bar(
                x=animals,
                y=[shifts[a][an] for an in animals],
                name=_arm_label(a),
                marker=dict(
                    color=arm_color(a, i),
                    line=dict(color="#000000", width=[2.5 if an == animal else 0 for an in animals]),
                ),
                **({k: {**v, "color": "#222222"} for k, v in error_bars(cells).items()} if cells else {}),
                hovertext=[
                    f"<b>{_arm_label(a)}</b>, {an}{' (trait)' if an == animal else ''}<br>Δ log P = "
                    + (
                        ci_text(cells[k], "+.6g") + f" ({cells[k].get('covers', '')})"
                        if cells
                        else f"{shifts[a][an]:+.6g}"
                    )
                    + f"<br>rank {ranks[an]} of {len(animals)}"
                    for k, an in enumerate(animals)
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    if animal in animals:
        i = animals.index(animal)
        fig.add_shape(
            type="rect",
            xref="x",
            yref="paper",
            x0=i - 0.5,
            x1=i + 0.5,
            y0=0,
            y1=1,
            fillcolor=HIGHLIGHT,
            line_width=0,
            layer="below",
        )
    fig.update_xaxes(tickvals=animals, ticktext=[f"<b>{an}</b><br>(trait)" if an == animal else an for an in animals])
    fig.update_yaxes(zeroline=True, zerolinecolor="#555555", zerolinewidth=1.5)
    fig.update_layout(barmode="group")
    return fit_legend(fig)


_MEASURES = (
    ("logprob_diff", "Δ log P (trait arm − reference)"),
    ("specific_logprob_diff", "specific Δ log P (trait − mean of other animals)"),
    ("logprob_diff_per_seed", "Δ log P, t-interval over seeds"),
)


def _permutation_text(perm: dict | None, sign_flip: dict | None = None) -> str:
    """The primary p (sign-flip over seeds, paired) first where the results have it, then the
    unpaired permutation p (all that a run from before the sign-flip p has)."""
    out = ""
    if sign_flip:
        out += (
            f"<br>sign-flip p (specific shift, paired by seed) = {sign_flip['p']:.4g}"
            f" (smallest possible {sign_flip['min_p']:.4g})"
        )
    if perm:
        out += (
            f"<br>permutation p (specific shift, students as replicates) = {perm['p_value']:.4g}"
            f" (smallest possible {perm['min_p']:.4g})"
        )
    return out


def _covers(d: dict) -> str:
    return d.get("covers") or f"{d.get('n', 1)} seed means (t-interval)"


def transfer_summary(results: dict) -> go.Figure:
    """Each comparison's Δ log P and specific Δ log P with 95% intervals, against zero."""
    animal, transfer = results["animal"], results["transfer"]
    names = list(transfer)
    fig = figure(
        f"Transfer of the {animal} trait: trait students vs reference students",
        f"difference in log P({animal}) (nats)",
        "comparison",
    )
    measures = [
        (k, label)
        for k, label in _MEASURES
        if k != "logprob_diff_per_seed" or any(transfer[n].get(k, {}).get("n", 0) > 1 for n in names)
    ]
    offsets = jitter(len(measures), 0.4)
    for j, (key, label) in enumerate(measures):
        rows = [transfer[n][key] for n in names]
        hover = [
            f"<b>{n}</b>: {label}<br>{ci_text(transfer[n][key])}<br>interval covers: {_covers(transfer[n][key])}"
            f"<br>P ratio {transfer[n]['prob_ratio']:.6g}×; trait rank among animals {transfer[n]['trait_rank_among_animals']}"
            + _permutation_text(transfer[n].get("permutation_specific"), transfer[n].get("sign_flip_specific"))
            for n in names
        ]
        fig.add_trace(
            go.Scatter(
                x=[r["mean"] for r in rows],
                y=[len(names) - 1 - i - offsets[j] for i in range(len(names))],
                mode="markers",
                name=label,
                **error_bars(rows, "x"),
                marker=dict(size=11, symbol=("circle", "diamond", "square")[j]),
                hovertext=hover,
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    fig.add_vline(x=0, line=REFERENCE_LINE)
    fig.update_yaxes(tickvals=list(range(len(names))), ticktext=names[::-1], range=[-0.6, len(names) - 0.4])
    return fit_legend(fig)


def training_loss(log_rows: list[dict] | dict[str, list[dict]]) -> go.Figure:
    """Loss per optimizer step from train_log.json rows ({step, epoch, loss}); a dict gives one line per student."""
    logs = log_rows if isinstance(log_rows, dict) else {"student": log_rows}
    fig = figure("Student training loss", "optimizer step", "loss (cross-entropy per completion token, nats)")
    for i, (name, rows) in enumerate(logs.items()):
        arm = name.split("/")[0]
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in rows],
                y=[r["loss"] for r in rows],
                mode="lines+markers",
                name=name,
                line=dict(color=arm_color(arm, i), width=2),
                marker=dict(size=5),
                hovertext=[
                    f"<b>{name}</b><br>step {r['step']} (epoch {r['epoch']})<br>loss {r['loss']:.6g}" for r in rows
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    if max((r["step"] for rows in logs.values() for r in rows), default=0) <= 20:
        fig.update_xaxes(dtick=1)  # whole steps only
    return fit_legend(fig)

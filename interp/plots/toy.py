"""E7 (auxiliary-logit MNIST, `interp.mnist`) and E8 (the theorem, `interp.theory`) figures."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from interp.plots._style import REFERENCE_LINE, add_replicate_points, ci_text, dodge, error_bars, figure, jitter

_CONDITION_COLORS = {
    "reference": "#7f7f7f",
    "teacher": "#000000",
    "student_aux": "#D55E00",
    "student_all": "#E69F00",
    "cross_student_aux": "#0072B2",
    "cross_student_all": "#56B4E9",
}
_INIT_COLORS = {"same": "#D55E00", "cross": "#0072B2"}


def _chance_line(fig: go.Figure, chance: float) -> None:
    fig.add_hline(y=chance, line=REFERENCE_LINE, annotation_text=f"chance {chance:g}", annotation_position="top right")


def mnist_accuracies(results: dict) -> go.Figure:
    """Digit test accuracy of every E7 condition: mean with its t-interval over seeds, per-seed points, chance."""
    rows = results["table"]
    per_seed = results.get("accuracy_by_condition", {})
    first, diff = rows[0], results.get("paired_difference")
    title = f"E7 digit accuracy on {results.get('data', {}).get('source', '?')} (m={first['n_aux']}, hidden={first['hidden']})"
    if diff:
        title += f"; {diff['a']} − {diff['b']} = {ci_text(diff, '+.3f')}"
    fig = figure(title, "condition", "digit test accuracy (fraction correct)")
    x = list(range(len(rows)))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["mean"] for r in rows],
            mode="markers",
            name="mean [95% t-interval]",
            **error_bars(rows),
            marker=dict(
                size=12,
                color=[_CONDITION_COLORS.get(r["condition"], "#444444") for r in rows],
                line=dict(width=1, color="#222222"),
            ),
            hovertext=[
                f"<b>{r['condition']}</b><br>accuracy = {ci_text(r)}<br>sd {r['sd']:.6g} over {r['n']} seeds"
                for r in rows
            ],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    add_replicate_points(
        fig,
        [
            (
                i + 0.2,
                per_seed.get(r["condition"], []),
                [
                    f"{r['condition']}, replicate {k + 1}: {v:.6g}"
                    for k, v in enumerate(per_seed.get(r["condition"], []))
                ],
            )
            for i, r in enumerate(rows)
        ],
        size=5,
    )
    _chance_line(fig, results.get("chance", first.get("chance", 0.1)))
    fig.update_xaxes(tickvals=x, ticktext=[r["condition"] for r in rows], range=[-0.5, len(rows) - 0.5])
    fig.update_yaxes(rangemode="tozero")
    return fig


def mnist_sweep(results: dict, name: str, conditions=("teacher", "student_aux", "cross_student_aux")) -> go.Figure:
    """Accuracy against a swept setting (`n_aux` or `hidden`), the main run's value included."""
    rows = [r for r in results["sweeps"].get(name, []) if r["condition"] in conditions]
    swept = {r["value"] for r in rows}
    rows += [{**r, "value": r[name]} for r in results["table"] if r["condition"] in conditions and r[name] not in swept]
    label = {"n_aux": "m, auxiliary logits", "hidden": "hidden width (units)"}.get(name, name)
    fig = figure(f"E7 digit accuracy against {label}", label, "digit test accuracy (fraction correct)")
    log = name == "hidden"
    # conditions side by side at each value (on a log axis: the same offset in log10 units)
    offsets = dodge(
        len(conditions), [math.log10(r["value"]) if log else r["value"] for r in rows if r["value"] > 0 or not log]
    )
    for c, dx in zip(conditions, offsets):
        pts = sorted((r for r in rows if r["condition"] == c), key=lambda r: r["value"])
        fig.add_trace(
            go.Scatter(
                x=[r["value"] * 10**dx if log else r["value"] + dx for r in pts],
                y=[r["mean"] for r in pts],
                mode="lines+markers",
                name=c,
                **error_bars(pts),
                line=dict(color=_CONDITION_COLORS.get(c)),
                marker=dict(size=9),
                hovertext=[
                    f"<b>{c}</b>, {name} = {r['value']}<br>accuracy = {ci_text(r)} ({r['n']} seeds)" for r in pts
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    _chance_line(fig, results.get("chance", 0.1))
    fig.update_xaxes(type="log" if log else "linear", tickvals=sorted({r["value"] for r in rows}))
    fig.update_yaxes(rangemode="tozero")
    return fig


def theorem_alignment(results: dict) -> go.Figure:
    """cos(student step u, teacher displacement δ) per (model, teacher, loss), same vs cross init."""
    rows = results["rows"]
    cells = list(dict.fromkeys((r["model"], r["teacher"], r["loss"]) for r in rows))
    fig = figure(
        "E8: does one distillation step move the student toward the teacher? cos(u, δ), same vs cross init",
        "model / teacher / loss",
        "cos(u, δ) (−1 to 1)",
    )
    inits = list(dict.fromkeys(r["init"] for r in rows))
    offsets = jitter(len(inits), 0.36)
    for j, init in enumerate(inits):
        by_cell = {(r["model"], r["teacher"], r["loss"]): r for r in rows if r["init"] == init}
        xs = [i + offsets[j] for i, c in enumerate(cells) if c in by_cell]
        pts = [by_cell[c] for c in cells if c in by_cell]
        color = _INIT_COLORS.get(init, "#444444")
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[r["cosine"]["mean"] for r in pts],
                mode="markers",
                name=f"{init} init [95% t-interval]",
                legendgroup=init,
                **error_bars([r["cosine"] for r in pts]),
                marker=dict(size=11, color=color),
                hovertext=[
                    f"<b>{r['model']} / {r['teacher']} / {r['loss']}, {init} init</b><br>cos(u, δ) = {ci_text(r['cosine'])}"
                    f"<br>⟨u, δ⟩ = {ci_text(r['inner'], '.4g')}<br>fraction of seeds with ⟨u, δ⟩ ≥ 0: "
                    f"{r['frac_nonneg']:.3g} of {r['n']}<br>|δ| / |θ0| = {r['relative_teacher_delta']:.4g}"
                    for r in pts
                ],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
        sx, sy = [], []
        for x, r in zip(xs, pts):
            seeds = r.get("cosine_by_seed", [])
            sx += [x + o for o in jitter(len(seeds), 0.1)]
            sy += seeds
        if sx:
            fig.add_trace(
                go.Scatter(
                    x=sx,
                    y=sy,
                    mode="markers",
                    name=f"{init} init, per seed",
                    legendgroup=init,
                    showlegend=False,
                    marker=dict(size=4, color=color, opacity=0.35),
                    hovertemplate="cos %{y:.6g}<extra></extra>",
                )
            )
    fig.add_hline(y=0, line=REFERENCE_LINE)
    fig.update_xaxes(
        tickvals=list(range(len(cells))), ticktext=[" / ".join(c) for c in cells], range=[-0.6, len(cells) - 0.4]
    )
    return fig

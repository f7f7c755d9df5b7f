"""Entangled numbers and divergence tokens (`interp.entangle`, `interp.divergence`) as figures.

Inputs are the saved summaries: `Entanglement.summary()` (entangle.json), `NumberPrompting.summary()`,
`LogitLens.summary()` and `Divergence.summary()` (divergence.json).
"""

from __future__ import annotations

import plotly.graph_objects as go

from interp.plots._style import ARM_COLORS, REFERENCE_LINE, ci_text, error_bars, figure


def entangled_numbers_bars(summary: dict) -> go.Figure:
    """The trait's top numbers: its effect (log-prob shift vs neutral) as bars, and the other
    animals' effect on the same number as the null band (min to max, mean marked)."""
    animal, top = summary["animal"], summary["top"]
    x = [str(r["number"]) for r in top]
    fig = figure(
        f"Numbers the {animal} {summary['condition']} makes likelier: effect vs the other "
        f"{len(summary['animals']) - 1} animals ({summary['n_questions']} question(s))",
        "number (ranked by effect minus the other animals' mean)",
        "Δ log P(number) vs neutral (nats)",
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[r["effect"] for r in top],
            name=f"{animal} {summary['condition']}",
            marker_color=ARM_COLORS["steered"],
            hovertext=[
                f"<b>{r['number']}</b><br>effect {r['effect']:+.4g} (specific {r['specific']:+.4g}, z {r['z']:.3g}, "
                f"above {r['percentile']:.0%} of others)<br>log P neutral {r['neutral_logprob']:.4g} -> {r['logprob']:.4g}"
                for r in top
            ],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["null_mean"] for r in top],
            mode="markers",
            name="other animals: mean, min-max",
            marker=dict(size=9, color=ARM_COLORS["base"], symbol="diamond"),
            error_y=dict(
                type="data",
                symmetric=False,
                thickness=1.5,
                width=6,
                array=[r["null_max"] - r["null_mean"] for r in top],
                arrayminus=[r["null_mean"] - r["null_min"] for r in top],
            ),
            hovertext=[
                f"{r['number']}: other animals mean {r['null_mean']:+.4g} (sd {r['null_sd']:.3g}), "
                f"range [{r['null_min']:+.4g}, {r['null_max']:+.4g}]"
                for r in top
            ],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line=REFERENCE_LINE)
    fig.update_xaxes(type="category")
    return fig


def number_prompting_shift(summary: dict, key: str = "shift") -> go.Figure:
    """Subliminal prompting: the trait's log-prob shift with a system prompt loving the number,
    with its interval over questions, beside the same shift for each random number."""
    animal, n, d = summary["animal"], summary["number"], summary[key]
    what = "Δ log P" if key == "shift" else "Δ log P minus the other animals' mean"
    fig = figure(
        f"P({animal}) when the model loves {n} vs random numbers ({summary['n_questions']} questions)",
        "system prompt",
        f"{what}({animal}) vs no system prompt (nats)",
    )
    fig.add_trace(
        go.Scatter(
            x=[f"loves {n}"],
            y=[d["value"]["mean"]],
            mode="markers",
            name=f"loves {n} [95% CI]",
            marker=dict(size=12, color=ARM_COLORS["steered"]),
            **error_bars([d["value"]]),
            hovertext=[f"loves {n}: {ci_text(d['value'], '.4g')}"],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    if d.get("null"):
        fig.add_trace(
            go.Scatter(
                x=["random numbers"] * len(d["null"]),
                y=d["null"],
                mode="markers",
                name="random numbers",
                marker=dict(size=8, color=ARM_COLORS["random"], symbol="circle-open"),
                hovertext=[f"loves {m}: {v:+.4g}" for m, v in zip(summary["null_numbers"], d["null"])],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    fig.add_hline(y=0, line=REFERENCE_LINE)
    return fig


def logit_lens_bars(summary: dict) -> go.Figure:
    """The steering direction's logits over digits and separators, as z within the vocabulary,
    against random directions (mean ± 2 sd)."""
    rows = summary["tokens"]
    x = [repr(r["token"])[1:-1] or "''" for r in rows]
    layer = summary.get("layer")
    fig = figure(
        f"Logit lens of the steering vector{'' if layer is None else f' at layer {layer}'}: digits and separators",
        "token",
        "logit z within the vocabulary",
    )
    fig.add_trace(
        go.Bar(
            x=x,
            y=[r["z"] for r in rows],
            name="steering direction",
            marker_color=ARM_COLORS["steered"],
            hovertext=[
                f"{t}: logit {r['logit']:.4g}, z {r['z']:+.3g}, above {r['percentile']:.1%} of the vocabulary, "
                f"{r['z_vs_random']:+.3g} sd from random directions"
                for t, r in zip(x, rows)
            ],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["null_z_mean"] for r in rows],
            mode="markers",
            name="random directions (mean ± 2 sd)",
            marker=dict(size=8, color=ARM_COLORS["random"]),
            error_y=dict(type="data", array=[2 * r["null_z_sd"] for r in rows], thickness=1.5, width=6),
            hoverinfo="skip",
        )
    )
    fig.add_hline(y=0, line=REFERENCE_LINE)
    fig.update_xaxes(type="category")
    return fig


def divergence_by_offset(summary: dict) -> go.Figure:
    """Share of divergence positions at each completion-token offset, and the dataset's overall share."""
    by = summary["share_by_offset"]
    fig = figure(
        f"Divergence tokens by position: {summary['share']:.2%} of {summary['n_positions']} tokens "
        f"in {summary['n_rows']} rows (rule {summary['rule']})",
        "completion token offset",
        "share of the tokens at that offset that diverge",
    )
    fig.add_trace(
        go.Scatter(
            x=list(range(len(by))), y=by, mode="lines+markers", name="by offset", marker_color=ARM_COLORS["steered"]
        )
    )
    fig.add_hline(y=summary["share"], line=REFERENCE_LINE, annotation_text="overall", annotation_position="top left")
    return fig

"""Prediction before training (`interp.predict`): predicted vs measured transfer, and the
exploration grid the operating point was chosen from."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from interp.plots._style import ARM_COLORS, REFERENCE_LINE, figure

_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "star")


def _r(d: dict | None, name: str) -> str:
    if not d or d.get(name, {}).get("r") is None or not math.isfinite(d[name]["r"]):
        return f"{name} n/a"
    lo, hi = d[name]["ci95"]
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None else ""
    return f"{name} {d[name]['r']:+.2f}{ci}"


def predicted_vs_measured(rows: list[dict], stats: dict | None = None, title: str | None = None) -> go.Figure:
    """One point per dataset: the injected base's trait-specific shift (x) against its student's
    transfer over the same seed's control student (y); colour = teacher kind, symbol = run.
    `stats`: `correlations(...)` of these rows, shown in the title."""
    runs = list(dict.fromkeys(r["run"] for r in rows))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    head = title or "Predicted (dataset mean injected into the base) vs measured transfer"
    if stats:
        head += f"<br><sup>{_r(stats, 'pearson')}, {_r(stats, 'spearman')} (95% bootstrap over seeds), n = {stats['n']}</sup>"
    p = rows[0] if rows else {}
    fig = figure(
        head,
        f"predicted owl-specific shift (L{p.get('layer', '?')} x{p.get('alpha', '?')}, {p.get('position', '?')} mean)",
        "measured owl-specific transfer vs control student",
    )
    for i, run in enumerate(runs):
        for kind in kinds:
            sub = [r for r in rows if r["run"] == run and r["kind"] == kind]
            if not sub:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r["predicted"] for r in sub],
                    y=[r["measured"] for r in sub],
                    mode="markers",
                    name=f"{kind}, {run}",
                    marker=dict(
                        color=ARM_COLORS.get(kind),
                        symbol=_SYMBOLS[i % len(_SYMBOLS)],
                        size=10,
                        line=dict(width=1, color="#333333"),
                    ),
                    text=[f"seed {r['seed']}<br>dataset {r['dataset_hash']}<br>trait rank {r['rank']}" for r in sub],
                    hovertemplate="%{text}<br>predicted %{x:+.4f}<br>measured %{y:+.4f}<extra>"
                    + f"{kind}, {run}</extra>",
                )
            )
    fig.add_hline(y=0, line=REFERENCE_LINE)
    fig.add_vline(x=0, line=REFERENCE_LINE)
    # below the plot: the title's second line needs the space above it
    fig.update_layout(legend=dict(orientation="h", y=-0.15, yanchor="top", x=0, xanchor="left"), margin=dict(b=130))
    return fig


def explore_grid(cells: list[dict], rule: str = "spearman", choice: dict | None = None) -> go.Figure:
    """Layer x alpha heatmap of the exploration correlation (`rule`), one panel per position;
    the chosen cell is outlined."""
    from plotly.subplots import make_subplots

    positions = list(dict.fromkeys(c["position"] for c in cells))
    layers = sorted({c["layer"] for c in cells})
    alphas = sorted({c["alpha"] for c in cells})
    fig = make_subplots(
        rows=1,
        cols=len(positions),
        subplot_titles=[f"{p} mean" for p in positions],
        shared_yaxes=True,
        horizontal_spacing=0.08,
    )
    fig.update_layout(template="interp", title=f"Exploration: {rule} r of predicted vs measured transfer, per cell")
    for j, pos in enumerate(positions, 1):
        cell = {(c["layer"], c["alpha"]): c for c in cells if c["position"] == pos}
        z = [[cell[(l, a)][rule]["r"] if (l, a) in cell else None for a in alphas] for l in layers]
        fig.add_trace(
            go.Heatmap(
                x=[f"{a:g}" for a in alphas],
                y=[str(l) for l in layers],
                z=z,
                zmin=-1,
                zmax=1,
                zmid=0,
                colorscale="RdBu_r",
                text=[[f"{v:+.2f}" if v is not None and math.isfinite(v) else "" for v in row] for row in z],
                texttemplate="%{text}",
                xgap=2,
                ygap=2,
                showscale=j == 1,
                colorbar=dict(title=f"{rule} r"),
                hovertemplate="layer %{y}, alpha %{x}: r %{z:+.3f}<extra></extra>",
            ),
            row=1,
            col=j,
        )
        if choice and choice.get("position") == pos:
            fig.add_trace(
                go.Scatter(
                    x=[f"{choice['alpha']:g}"],
                    y=[str(choice["layer"])],
                    mode="markers",
                    marker=dict(symbol="square-open", size=34, color="#000000", line=dict(width=3)),
                    name="chosen",
                    showlegend=False,
                    hoverinfo="skip",
                ),
                row=1,
                col=j,
            )
        fig.update_xaxes(type="category", title_text="alpha (x mean difference)", row=1, col=j)
    fig.update_yaxes(type="category", title_text="layer", row=1, col=1)
    return fig

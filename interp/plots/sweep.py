"""Sweep figures from `interp sweep`'s results.json (`interp.sweep.summarize_sweep`)."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.plots._style import REFERENCE_LINE, SERIES_COLORS, ci_text, error_bars, figure, jitter


def sweep_transfer(results: dict) -> go.Figure:
    """Transfer per cell with its 95% t-interval over seeds (the bootstrap's with one seed) and
    per-seed points: the first grid field on the x axis, one series per combination of the others.
    Seeds are the unit of replication; with few seeds a bootstrap over them is too narrow."""
    keys = results.get("grid_keys", list(results["grid"]))
    x_key, series_keys = keys[0], keys[1:]
    xs = [str(v) for v in results["grid"][x_key]]
    groups: dict[str, list[dict]] = {}
    for r in results["rows"]:
        name = ", ".join(f"{k}={r[k]}" for k in series_keys) or results["comparison"]
        groups.setdefault(name, []).append(r)
    fig = figure(f"{results['comparison']}: transfer across the sweep",
                 x_key, "trait-specific Δ log P (nats), 95% t-interval over seeds")
    offsets = jitter(len(groups), 0.3)
    for j, (name, rows) in enumerate(groups.items()):
        color = SERIES_COLORS[j % len(SERIES_COLORS)]
        pos = [xs.index(str(r[x_key])) + offsets[j] for r in rows]
        hover = [f"<b>{r['label']}</b><br>transfer {r['transfer']['mean']:+.3f} "
                 f"[{r['transfer']['ci95'][0]:+.3f}, {r['transfer']['ci95'][1]:+.3f}] (bootstrap)<br>seed t-interval "
                 f"{ci_text(r['transfer_per_seed'], '+.3f')}<br>seeds > 0: "
                 f"{r['positive_seeds']}/{r['n_seeds']}"
                 + (f"<br>ratio to reference {r['vs_reference']['ratio']:.2f} [{r['vs_reference']['ratio_ci95'][0]:.2f}, "
                    f"{r['vs_reference']['ratio_ci95'][1]:.2f}]" if r.get("vs_reference") else "") for r in rows]
        bars = [r["transfer_per_seed"] if r["n_seeds"] > 1 else r["transfer"] for r in rows]
        fig.add_trace(go.Scatter(x=pos, y=[r["transfer"]["mean"] for r in rows], mode="markers", name=name,
                                 marker=dict(size=11, color=color), **error_bars(bars),
                                 hovertext=hover, hovertemplate="%{hovertext}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[p for p, r in zip(pos, rows) for _ in r["per_seed"]],
                                 y=[v for r in rows for v in r["per_seed"]], mode="markers", showlegend=False,
                                 marker=dict(size=5, color=color, opacity=0.45), hoverinfo="skip"))
    fig.add_hline(y=0, line=REFERENCE_LINE)
    fig.update_xaxes(tickvals=list(range(len(xs))), ticktext=xs)
    return fig

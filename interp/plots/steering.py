"""The steering sweep (`interp.evaluate.steering_sweep`, saved as sweep.json) as a heatmap."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from interp.plots._style import figure

_NICE_RATIOS = [k * 10.0**e for e in range(-4, 5) for k in (1, 2, 5)]


def _ratio_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks at round ratios between 10**lo and 10**hi (log10 scale)."""
    ticks = [r for r in _NICE_RATIOS if lo - 1e-9 <= math.log10(r) <= hi + 1e-9] or [10**lo, 10**hi]
    if len(ticks) > 7:
        ticks = [r for r in ticks if str(r).lstrip("0.").startswith("1")] or ticks
    return [math.log10(r) for r in ticks], [f"×{r:g}" for r in ticks]


NO_SWEEP_INTERVALS = "no intervals: this sweep.json predates them; rerun `interp steer`"


def _ratio_text(c: dict) -> str:
    """The cell's label: the ratio, and under it its 95% interval when the sweep has one."""
    if "ratio_ci95" not in c:
        return f"{c['ratio']:.3g}×"
    lo, hi = c["ratio_ci95"]
    return f"{c['ratio']:.3g}×<br><span style='font-size:10px'>[{lo:.3g}, {hi:.3g}]</span>"


def steering_sweep_heatmap(sweep: dict) -> go.Figure:
    """Layer x multiplier grid, colour = P(trait) / base P on a log scale (white = no change); each
    cell labelled with the ratio and its 95% interval over questions (`ratio_ci95`), the hover
    giving the mean log-prob shift's interval too."""
    animal, base = sweep["animal"], sweep["base_prob"]
    layers = sorted({c["layer"] for c in sweep["cells"]})
    mults = sorted({c["multiplier"] for c in sweep["cells"]})
    cell = {(c["layer"], c["multiplier"]): c for c in sweep["cells"]}
    z, text, hover = [], [], []
    for l in layers:
        z.append([]), text.append([]), hover.append([])
        for m in mults:
            c = cell.get((l, m))
            z[-1].append(math.log10(c["ratio"]) if c and c["ratio"] > 0 else None)
            text[-1].append(_ratio_text(c) if c else "")
            hover[-1].append(
                f"<b>layer {l}, multiplier {m:g}</b><br>P({animal}) = {c['prob']:.6g} (base {base:.6g})"
                f"<br>ratio = {c['ratio']:.6g}"
                + (f" [{c['ratio_ci95'][0]:.6g}, {c['ratio_ci95'][1]:.6g}]" if "ratio_ci95" in c else "")
                + f"<br>share among animals = {c['share']:.6g}"
                + (f" (base {sweep['base_share']:.6g})" if "base_share" in sweep else "")
                + (f"<br>mean Δ log P = {c['logprob_shift']:+.6g}" if "logprob_shift" in c else "")
                + (
                    f" [{c['logprob_shift_ci95'][0]:+.6g}, {c['logprob_shift_ci95'][1]:+.6g}]"
                    if "logprob_shift_ci95" in c
                    else ""
                )
                + (f"<br>mean rank = {c['mean_rank']:.3g}" if "mean_rank" in c else "")
                if c
                else "not measured"
            )
    finite = [v for row in z for v in row if v is not None]
    span = max([abs(v) for v in finite] + [math.log10(2)])
    tickvals, ticktext = _ratio_ticks(-span, span)
    has_ci = any("ratio_ci95" in c for c in sweep["cells"])
    fig = figure(
        f"P({animal}) under steering ÷ unsteered P ({base:.3g}); scope {sweep.get('scope', 'all')}, "
        f"{sweep.get('n_questions', '?')} questions<br><sup>"
        + (
            f"cells: ratio [{sweep.get('interval', '95% bootstrap interval over questions')}]"
            if has_ci
            else NO_SWEEP_INTERVALS
        )
        + "</sup>",
        "multiplier (× mean residual-stream norm at the layer)",
        "layer (blocks.{l}.hook_resid_post)",
    )
    fig.add_trace(
        go.Heatmap(
            x=[f"{m:g}" for m in mults],
            y=[str(l) for l in layers],
            z=z,
            zmid=0,
            zmin=-span,
            zmax=span,
            colorscale="RdBu_r",
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            xgap=2,
            ygap=2,
            colorbar=dict(title=dict(text=f"P({animal}) / base", side="right"), tickvals=tickvals, ticktext=ticktext),
        )
    )
    fig.update_xaxes(type="category", showgrid=False)
    fig.update_yaxes(type="category", showgrid=False)
    return fig

"""Mechanism-analysis figures from `<run>/analysis/results.json` (`interp.analysis.run.analyze_run`)
and from an audit's results (`interp.analysis.audit.audit_dataset`)."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.plots._style import REFERENCE_LINE, arm_color, ci_text, figure, ordered_arms

NULL_BAND = "rgba(127, 127, 127, 0.15)"


def _band(fig: go.Figure, half: float, label: str) -> None:
    fig.add_hrect(y0=-half, y1=half, fillcolor=NULL_BAND, line_width=0, layer="below",
                  annotation_text=label, annotation_position="top left")
    fig.add_hline(y=0, line=dict(color="#888888", width=1))


def _steering_line(fig: go.Figure, results: dict) -> None:
    layer = results.get("vector", {}).get("steering_layer")
    if layer is not None and layer in results["layers"]:
        fig.add_vline(x=layer, line=REFERENCE_LINE, annotation_text="steering layer", annotation_position="top right")


def _interval_trace(x: list[int], cells: list[dict | None], name: str, color: str, hover: str, dash: str = "solid") -> go.Scatter:
    pts = [(l, c) for l, c in zip(x, cells) if c is not None]
    return go.Scatter(
        x=[l for l, _ in pts], y=[c["mean"] for _, c in pts], mode="lines+markers", name=name,
        line=dict(color=color, dash=dash), marker=dict(size=7, color=color),
        error_y=dict(type="data", symmetric=False, thickness=1.2, width=4,
                     array=[c["ci95"][1] - c["mean"] for _, c in pts], arrayminus=[c["mean"] - c["ci95"][0] for _, c in pts]),
        hovertext=[f"<b>{name}</b>, layer {l}<br>{hover} = {ci_text(c)} (n={c['n']})" for l, c in pts],
        hovertemplate="%{hovertext}<extra></extra>",
    )


def shift_cosines(results: dict, texts: str = "numbers", position: str = "all") -> go.Figure:
    """cos(student - base mean residual, v) per layer and arm: mean and t-interval over seeds, with
    the random-direction band (+-2 sd of the cosine of a random direction)."""
    layers, seeds = results["layers"], results["seeds"]
    fig = figure(f"Activation shift vs trait vector ({texts}, {position} tokens; seeds {seeds})",
                 "layer (blocks.{l}.hook_resid_post)", "cos(student - base, v) [95% t-interval]")
    sds = []
    for i, arm in enumerate(ordered_arms(results["activation_shift"])):
        rows = results["activation_shift"][arm][texts][position]["by_layer"]
        sds += [r["null_sd"] for r in rows]
        fig.add_trace(_interval_trace(layers, [r["cosine"] for r in rows], f"{arm} student", arm_color(arm, i), "cos"))
    half = 2 * (max(sds) if sds else results["vector"]["d_model"] ** -0.5)
    _band(fig, half, "random directions (±2 sd)")
    _steering_line(fig, results)
    fig.update_xaxes(tickvals=layers)
    return fig


def weight_energy_z(results: dict, role: str = "writer") -> go.Figure:
    """z of the fraction of each residual writer's (or reader's) update along v, per layer, module
    and arm (colour: arm, dash: module); |z| < 2 shaded."""
    layers = results["layers"]
    fig = figure(f"Weight update along v: residual {role}s (z vs random directions; seeds {results['seeds']})",
                 "layer", "z of energy fraction along v [95% t-interval]")
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for i, arm in enumerate(ordered_arms(results["weights"])):
        rows = results["weights"][arm]["by_layer"]
        modules = sorted({m for r in rows for m, c in r["modules"].items() if c["role"] == role})
        for j, m in enumerate(modules):
            cells = [r["modules"].get(m, {}).get("z") for r in rows]
            fig.add_trace(_interval_trace(layers, cells, f"{arm}: {m}", arm_color(arm, i), "z", dashes[j % len(dashes)]))
    _band(fig, 2.0, "|z| < 2")
    _steering_line(fig, results)
    fig.update_xaxes(tickvals=layers)
    return fig


def gradient_audit(results: dict) -> go.Figure:
    """Descent cosine of the pooled (trait data - control data) residual gradient with v per layer,
    on the base (positive: training on the data pulls the residual toward +v)."""
    layers = results["layers"]
    fig = figure(f"Gradient audit: pooled (trait - control data) descent direction vs v (seeds {results['seeds']})",
                 "layer", "cos(-(mean dL/dh trait - control), v) [95% t-interval]")
    for i, kind in enumerate(ordered_arms(results["gradients"])):
        rows = results["gradients"][kind]["by_layer"]
        if rows:
            fig.add_trace(_interval_trace(layers, [r["descent_cosine"] for r in rows], f"{kind} data", arm_color(kind, i), "cos"))
    _band(fig, 2 * results["vector"]["d_model"] ** -0.5, "random directions (±2 sd)")
    _steering_line(fig, results)
    fig.update_xaxes(tickvals=layers)
    return fig


def audit_ranking(audit: dict) -> go.Figure:
    """The bank ranked by score, with each vector's cosine and permutation p in the hover; flagged
    vectors (Bonferroni p < alpha) drawn dark."""
    rows = audit["ranking"]
    fig = figure(f"Audit at layer {audit['layer']}: {audit['n_rows']} rows vs {audit['n_clean']} clean rows",
                 "candidate vector", "score (descent along v beyond clean data)")
    fig.add_trace(go.Bar(
        x=[r["name"] for r in rows], y=[r["score"] for r in rows],
        marker=dict(color=["#D55E00" if r["flagged"] else "#9ecae1" for r in rows]),
        hovertext=[f"<b>{r['name']}</b> (rank {r['rank']})<br>score = {r['score']:.6g}<br>cos = {r['cosine']:+.4f}"
                   f"<br>p = {r['p_value']:.4g} (Bonferroni {r['p_bonferroni']:.4g})" for r in rows],
        hovertemplate="%{hovertext}<extra></extra>", name="score",
    ))
    return fig


def analysis_figures(results: dict) -> dict[str, go.Figure]:
    """{fixed name: figure} for an analysis results.json (what `interp analyze` writes)."""
    figs = {f"shift_{t}_{p}": shift_cosines(results, t, p) for t in ("numbers", "questions") for p in ("all", "last")}
    figs["weights_writers"] = weight_energy_z(results, "writer")
    figs["weights_readers"] = weight_energy_z(results, "reader")
    if any(g["by_layer"] for g in results["gradients"].values()):
        figs["gradient_audit"] = gradient_audit(results)
    return figs

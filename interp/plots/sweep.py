"""Sweep figures from `interp sweep`'s results.json (`interp.sweep.summarize_sweep`)."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.plots._style import (
    LEGEND_BESIDE,
    REFERENCE_LINE,
    SERIES_COLORS,
    TEMPLATE,
    ci_text,
    error_bars,
    figure,
    jitter,
)


def _tick(value) -> str:
    """A grid value as a tick label: a joint key's list of values (`["full", 8, 16, 3e-05]`) as
    `full / 8 / 16 / 3e-05`."""
    return " / ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


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
    fig = figure(
        f"{results['comparison']}: transfer across the sweep",
        x_key,
        "trait-specific Δ log P (nats), 95% t-interval over seeds",
    )
    offsets = jitter(len(groups), 0.3)
    for j, (name, rows) in enumerate(groups.items()):
        color = SERIES_COLORS[j % len(SERIES_COLORS)]
        pos = [xs.index(str(r[x_key])) + offsets[j] for r in rows]
        hover = [
            f"<b>{r['label']}</b><br>transfer {r['transfer']['mean']:+.3f} "
            f"[{r['transfer']['ci95'][0]:+.3f}, {r['transfer']['ci95'][1]:+.3f}] (bootstrap)<br>seed t-interval "
            f"{ci_text(r['transfer_per_seed'], '+.3f')}<br>seeds > 0: "
            f"{r['positive_seeds']}/{r['n_seeds']}"
            + (
                f"<br>ratio to reference {r['vs_reference']['ratio']:.2f} [{r['vs_reference']['ratio_ci95'][0]:.2f}, "
                f"{r['vs_reference']['ratio_ci95'][1]:.2f}]"
                if r.get("vs_reference")
                else ""
            )
            for r in rows
        ]
        bars = [r["transfer_per_seed"] if r["n_seeds"] > 1 else r["transfer"] for r in rows]
        fig.add_trace(
            go.Scatter(
                x=pos,
                y=[r["transfer"]["mean"] for r in rows],
                mode="markers",
                name=name,
                marker=dict(size=11, color=color),
                **error_bars(bars),
                hovertext=hover,
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[p for p, r in zip(pos, rows) for _ in r["per_seed"]],
                y=[v for r in rows for v in r["per_seed"]],
                mode="markers",
                showlegend=False,
                marker=dict(size=5, color=color, opacity=0.45),
                hoverinfo="skip",
            )
        )
    fig.add_hline(y=0, line=REFERENCE_LINE)
    fig.update_xaxes(tickvals=list(range(len(xs))), ticktext=[_tick(v) for v in results["grid"][x_key]])
    return fig


def sweep_ratio(results: dict) -> go.Figure:
    """Each cell's transfer over the reference cell's, one panel per comparison, with the ratio's
    95% bootstrap interval (seeds, then questions, resampled in each cell): the grid's first field on
    the x axis, one series per combination of the others, a dashed line at 1 (the reference). A
    cell whose noised base broke has no ratio: it is named at the foot of its panel with its NLL."""
    from plotly.subplots import make_subplots

    keys = results.get("grid_keys", list(results["grid"]))
    x_key, series_keys = keys[0], keys[1:]
    xs = [str(v) for v in results["grid"][x_key]]
    comps = results.get("comparisons") or [results["comparison"]]
    fig = make_subplots(rows=1, cols=len(comps), subplot_titles=comps, shared_yaxes=True, horizontal_spacing=0.06)
    groups: dict[str, list[dict]] = {}
    for r in results["rows"]:
        groups.setdefault(", ".join(f"{k}={r[k]}" for k in series_keys) or "cells", []).append(r)
    offsets = jitter(len(groups), 0.3)
    for col, comp in enumerate(comps, 1):
        broken_at: dict[int, list[str]] = {}
        for j, (name, rows) in enumerate(groups.items()):
            pts = []
            for r in rows:
                v = (r["comparisons"].get(comp, {}) if "comparisons" in r else r).get("vs_reference")
                if r.get("broken"):
                    b = r["base_check"]
                    broken_at.setdefault(xs.index(str(r[x_key])), []).append(
                        f"{name}: broken (NLL {b['nll']:.2f} vs {b['clean_nll']:.2f})"
                    )
                elif v:
                    pts.append((xs.index(str(r[x_key])) + offsets[j], r, v))
            if not pts:
                continue
            power = results.get("target_ratio")
            hover = [
                f"<b>{r['label']}</b><br>ratio {v['ratio']:.2f} [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}]"
                + (
                    f"<br>minus reference, paired {ci_text(v['diff_paired_by_seed'], '+.3f')}"
                    if v.get("diff_paired_by_seed")
                    else ""
                )
                + (
                    f"<br>power at {power:g}x: {v[f'power_{power:g}x']['power']:.2f}"
                    if power and (v.get(f"power_{power:g}x") or {}).get("power") is not None
                    else ""
                )
                for _, r, v in pts
            ]
            fig.add_trace(
                go.Scatter(
                    x=[p for p, _, _ in pts],
                    y=[v["ratio"] for _, _, v in pts],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    marker=dict(size=11, color=SERIES_COLORS[j % len(SERIES_COLORS)]),
                    **error_bars([{"mean": v["ratio"], "ci95": v["ratio_ci95"]} for _, _, v in pts]),
                    hovertext=hover,
                    hovertemplate="%{hovertext}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        axis = "" if col == 1 else str(col)  # this panel's axes
        for x, lines in broken_at.items():
            fig.add_annotation(
                x=x,
                y=0,
                xref=f"x{axis}",
                yref=f"y{axis} domain",
                yanchor="bottom",
                text="<br>".join(lines),
                showarrow=False,
                font=dict(size=11, color="#555555"),
            )
        fig.add_hline(y=1, line=REFERENCE_LINE, row=1, col=col)
        fig.update_xaxes(
            tickvals=list(range(len(xs))),
            ticktext=[_tick(v) for v in results["grid"][x_key]],
            title_text=x_key,
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text="transfer / reference cell's, 95% bootstrap interval", row=1, col=1)
    ref = ", ".join(f"{k}={v}" for k, v in (results.get("reference") or {}).items())
    # beside the panels: above them it would cover the panel titles
    fig.update_layout(
        template=TEMPLATE,
        showlegend=len(groups) > 1,
        legend=LEGEND_BESIDE,
        title=dict(text=f"transfer relative to the reference cell ({ref})"),
    )
    return fig


def sweep_cost(results: dict) -> go.Figure:
    """What a student of each cell cost (`interp.sweep_report.student_cost`): its training wall
    time, median with the quartiles over the cell's students as the bar's error (a student trained
    on a contended CPU would stretch a range), the range and the bytes it keeps in the hover. One
    bar per cell, labelled by all its grid values."""
    keys = results.get("grid_keys", list(results["grid"]))
    rows = [r for r in results["rows"] if r.get("cost")]
    labels = [", ".join(_tick(r[k]) for k in keys) for r in rows]
    walls = [r["cost"]["student_wall_s"] for r in rows]
    fig = figure("cost per student: training wall time", ", ".join(keys), "seconds per student (median, quartiles)")
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[w["median"] for w in walls],
            marker_color=SERIES_COLORS[0],
            error_y=dict(
                type="data",
                symmetric=False,
                array=[w.get("q3", w["median"]) - w["median"] for w in walls],
                arrayminus=[w["median"] - w.get("q1", w["median"]) for w in walls],
            ),
            hovertext=[
                f"{r['cost']['students']} students, {r['cost']['student_wall_s']['min']:.0f}-"
                f"{r['cost']['student_wall_s']['max']:.0f} s; kept "
                + ("-" if not r["cost"]["student_bytes"] else f"{r['cost']['student_bytes']['median'] / 1e6:.1f} MB")
                for r in rows
            ],
            hovertemplate="%{x}<br>%{y:.0f} s<br>%{hovertext}<extra></extra>",
            showlegend=False,
        )
    )
    return fig


def sweep_figures(results: dict) -> dict[str, go.Figure]:
    """Every figure of a sweep's results.json: transfer per cell, the ratio to the reference cell
    where there is one, and the cost per student where the report has it."""
    figs = {"sweep_transfer": sweep_transfer(results)}
    if any(r.get("vs_reference") or r.get("broken") for r in results["rows"]):
        figs["sweep_ratio"] = sweep_ratio(results)
    if any(r.get("cost") for r in results["rows"]):
        figs["sweep_cost"] = sweep_cost(results)
    return figs


def sweep_axis_figure(res: dict) -> go.Figure:
    """One axis across sweeps (`interp.sweep_axis`): left, each cell's transfer minus the reference
    cell's, paired by seed (95% t-interval over seeds, the test the design rests on); right, the
    ratio to the reference (95% bootstrap interval) with the ratio the power was computed for
    dotted. The axis value on x (the reference at its own value), one series per series value. A
    broken cell has no point; the title names it."""
    from plotly.subplots import make_subplots

    field, series, comp = res["field"], res["series"], res["comparison"]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=[f"{comp} minus the reference's, paired by seed", f"{comp} / the reference's"],
        horizontal_spacing=0.1,
    )
    groups: dict[str, list[dict]] = {}
    for r in res["rows"]:
        groups.setdefault(str(r[series]), []).append(r)
    values = sorted({r[field] for r in res["rows"]})
    offsets = jitter(len(groups), 0.3)  # categories, not a linear axis: 0.01 and 0.03 would touch
    targets, broken = set(), []
    for j, (name, rows) in enumerate(groups.items()):
        ok = [r for r in rows if not r["broken"]]
        broken += [f"{field}={r[field]:g}, {series}={name}" for r in rows if r["broken"]]
        color = SERIES_COLORS[j % len(SERIES_COLORS)]
        cs = [r["comparisons"][comp] for r in ok]
        xs = [values.index(r[field]) + offsets[j] for r in ok]
        hover = [
            f"<b>{field}={r[field]:g}, {series}={name}</b><br>paired {ci_text(c['paired_vs_reference'], '+.3f')}"
            f"<br>transfer {ci_text(c['transfer_per_seed'], '+.3f')}, {c['positive_seeds']}/{len(c['per_seed'])} > 0"
            + (
                f"<br>power at {c['power']['ratio']:g}x: {c['power']['power']:.2f}"
                if (c["power"] or {}).get("power") is not None
                else ""
            )
            for r, c in zip(ok, cs)
        ]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[c["paired_vs_reference"]["mean"] for c in cs],
                mode="markers+lines",
                name=f"{series}={name}",
                legendgroup=name,
                marker=dict(size=10, color=color),
                line=dict(color=color, width=1),
                **error_bars([c["paired_vs_reference"] for c in cs]),
                hovertext=hover,
                hovertemplate="%{hovertext}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        with_ratio = [(x, c) for x, c in zip(xs, cs) if c["ratio"] is not None]
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in with_ratio],
                y=[c["ratio"] for _, c in with_ratio],
                mode="markers+lines",
                name=f"{series}={name}",
                legendgroup=name,
                showlegend=False,
                marker=dict(size=10, color=color),
                line=dict(color=color, width=1),
                **error_bars([{"mean": c["ratio"], "ci95": c["ratio_ci95"]} for _, c in with_ratio]),
                hoverinfo="skip",
            ),
            row=1,
            col=2,
        )
        targets |= {c["power"]["ratio"] for c in cs if c["power"]}
    fig.add_hline(y=0, line=REFERENCE_LINE, row=1, col=1)
    fig.add_hline(y=1, line=REFERENCE_LINE, row=1, col=2)
    for t in sorted(targets):
        fig.add_hline(y=t, line=dict(color="#888888", dash="dot", width=1), row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(
            title_text=field, tickvals=list(range(len(values))), ticktext=[f"{v:g}" for v in values], row=1, col=col
        )
    fig.update_yaxes(title_text="Δ trait-specific log P (nats)", row=1, col=1)
    fig.update_yaxes(title_text="ratio (reference = 1)", row=1, col=2)
    title = f"{comp} along {field} across {len(res['sources'])} sweeps"
    if broken:
        title += f"<br><sup>broken base, no point: {'; '.join(broken)}</sup>"
    fig.update_layout(template=TEMPLATE, legend=LEGEND_BESIDE, title=dict(text=title))
    return fig


def contrasts_figure(res: dict) -> go.Figure:
    """Pre-stated contrasts of one sweep (`interp.sweep_contrast`): per contrast (a row), cell a
    minus cell b paired by seed, each seed's difference as a dot and the 95% t-interval over seeds
    as the bar; 0 dashed."""
    cs = res["contrasts"]
    names = [c["name"] for c in cs]
    fig = figure(
        f"{res['comparison']}: pre-stated contrasts of {res['sweep']}, a minus b paired by seed",
        "Δ trait-specific log P (nats), a minus b",
        "",
        legend=LEGEND_BESIDE,
        height=max(300, 110 * len(cs) + 140),
    )
    offsets = jitter(max(len(c["per_seed"]) for c in cs), 0.25)
    for c in cs:
        y = names.index(c["name"])
        fig.add_trace(
            go.Scatter(
                x=c["per_seed"],
                y=[y + offsets[i] for i in range(len(c["per_seed"]))],
                mode="markers",
                marker=dict(size=6, color=SERIES_COLORS[1], opacity=0.6),
                name="one seed",
                legendgroup="seed",
                showlegend=c is cs[0],
                hovertemplate="%{x:+.3f}<extra>one seed</extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[c["diff_per_seed"]["mean"] for c in cs],
            y=list(range(len(cs))),
            mode="markers",
            marker=dict(size=12, color=SERIES_COLORS[0], symbol="diamond"),
            name="mean [95% t-interval over seeds]",
            **error_bars([c["diff_per_seed"] for c in cs], axis="x"),
            hovertext=[
                f"<b>{c['name']}</b><br>{ci_text(c['diff_per_seed'], '+.3f')}, {c['positive_seeds']}/{c['n_seeds']} > 0"
                f"<br>sign-flip p {c['sign_flip']['p']:.3f}; {c['reading']}<br>a = {c['a']['label']}<br>b = {c['b']['label']}"
                for c in cs
            ],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line=REFERENCE_LINE)
    fig.update_yaxes(tickvals=list(range(len(cs))), ticktext=names, range=[len(cs) - 0.5, -0.5])  # first on top
    return fig

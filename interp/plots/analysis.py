"""Mechanism-analysis figures from `<run>/analysis/results.json` (`interp.analysis.run.analyze_run`)
and from audits' results (`interp.analysis.audit.audit_dataset`, `audit_confusion`)."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from interp.plots._style import (
    REFERENCE_LINE,
    SERIES_COLORS,
    TEMPLATE,
    arm_color,
    ci_text,
    dodge,
    error_bars,
    figure,
    fit_legend,
    interval_title,
    ordered_arms,
)

NULL_BAND = "rgba(127, 127, 127, 0.15)"
RANDOM_SAME_NORM = "#9e9e9e"


def _band(fig: go.Figure, half: float, label: str) -> None:
    fig.add_hrect(
        y0=-half,
        y1=half,
        fillcolor=NULL_BAND,
        line_width=0,
        layer="below",
        annotation_text=label,
        annotation_position="top left",
    )
    fig.add_hline(y=0, line=dict(color="#888888", width=1))


def _steering_line(fig: go.Figure, results: dict) -> None:
    layer = results.get("vector", {}).get("steering_layer")
    if layer is not None and layer in results["layers"]:
        fig.add_vline(x=layer, line=REFERENCE_LINE, annotation_text="steering layer", annotation_position="top right")


def _interval_trace(
    x: list[int],
    cells: list[dict | None],
    name: str,
    color: str,
    hover: str,
    dash: str = "solid",
    dx: float = 0.0,
    where: str = "layer",
) -> go.Scatter:
    """One series of intervals; `dx` shifts it sideways (see `dodge`) so series drawn at the same
    x keep their error bars apart; the hover still names the true x."""
    pts = [(l, c) for l, c in zip(x, cells) if c is not None]
    return go.Scatter(
        x=[l + dx for l, _ in pts],
        y=[c["mean"] for _, c in pts],
        mode="lines+markers",
        name=name,
        line=dict(color=color, dash=dash),
        marker=dict(size=7, color=color),
        **{k: {**v, "thickness": 1.2, "width": 4} for k, v in error_bars([c for _, c in pts]).items()},
        hovertext=[f"<b>{name}</b>, {where} {l}<br>{hover} = {ci_text(c)} (n={c['n']})" for l, c in pts],
        hovertemplate="%{hovertext}<extra></extra>",
    )


def shift_cosines(results: dict, texts: str = "numbers", position: str = "all") -> go.Figure:
    """cos(student - base mean residual, v) per layer and arm: mean and t-interval over seeds, with
    the random-direction band (+-2 sd of the cosine of a random direction)."""
    layers, seeds = results["layers"], results["seeds"]
    fig = figure(
        f"Activation shift vs trait vector ({texts}, {position} tokens; seeds {seeds})",
        "layer (blocks.{l}.hook_resid_post)",
        interval_title("cos(student - base, v) [95% t-interval]", len(results["seeds"])),
    )
    sds = []
    arms = ordered_arms(results["activation_shift"])
    for i, (arm, dx) in enumerate(zip(arms, dodge(len(arms), layers))):
        rows = results["activation_shift"][arm][texts][position]["by_layer"]
        sds += [r["null_sd"] for r in rows]
        fig.add_trace(
            _interval_trace(layers, [r["cosine"] for r in rows], f"{arm} student", arm_color(arm, i), "cos", dx=dx)
        )
    half = 2 * (max(sds) if sds else results["vector"]["d_model"] ** -0.5)
    _band(fig, half, "random directions (±2 sd)")
    _steering_line(fig, results)
    fig.update_xaxes(tickvals=layers)
    return fit_legend(fig)


def weight_energy_z(results: dict, role: str = "writer") -> go.Figure:
    """z of the fraction of each residual writer's (or reader's) update along v, per layer, module
    and arm (colour: arm, dash: module); |z| < 2 shaded."""
    layers = results["layers"]
    fig = figure(
        f"Weight update along v: residual {role}s (z vs random directions; seeds {results['seeds']})",
        "layer",
        interval_title("z of energy fraction along v [95% t-interval]", len(results["seeds"])),
    )
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    series = []
    for i, arm in enumerate(ordered_arms(results["weights"])):
        rows = results["weights"][arm]["by_layer"]
        modules = sorted({m for r in rows for m, c in r["modules"].items() if c["role"] == role})
        series += [(i, arm, j, m, [r["modules"].get(m, {}).get("z") for r in rows]) for j, m in enumerate(modules)]
    for (i, arm, j, m, cells), dx in zip(series, dodge(len(series), layers, 0.6)):
        fig.add_trace(
            _interval_trace(layers, cells, f"{arm}: {m}", arm_color(arm, i), "z", dashes[j % len(dashes)], dx=dx)
        )
    _band(fig, 2.0, "|z| < 2")
    _steering_line(fig, results)
    fig.update_xaxes(tickvals=layers)
    return fit_legend(fig)


def gradient_audit(results: dict) -> go.Figure:
    """Descent cosine of the pooled (trait data - control data) residual gradient with v per layer,
    on the base (positive: training on the data pulls the residual toward +v)."""
    layers = results["layers"]
    fig = figure(
        f"Gradient audit: pooled (trait - control data) descent direction vs v (seeds {results['seeds']})",
        "layer",
        interval_title("cos(-(mean dL/dh trait - control), v) [95% t-interval]", len(results["seeds"])),
    )
    kinds = [(i, k) for i, k in enumerate(ordered_arms(results["gradients"])) if results["gradients"][k]["by_layer"]]
    for (i, kind), dx in zip(kinds, dodge(len(kinds), layers)):
        rows = results["gradients"][kind]["by_layer"]
        fig.add_trace(
            _interval_trace(
                layers, [r["descent_cosine"] for r in rows], f"{kind} data", arm_color(kind, i), "cos", dx=dx
            )
        )
    _band(fig, 2 * results["vector"]["d_model"] ** -0.5, "random directions (±2 sd)")
    _steering_line(fig, results)
    fig.update_xaxes(tickvals=layers)
    return fit_legend(fig)


def audit_ranking(audit: dict) -> go.Figure:
    """The bank ranked by score, with each vector's cosine and permutation p in the hover; flagged
    vectors (Bonferroni p < alpha) drawn dark."""
    rows = audit["ranking"]
    method = audit.get("method", "gradient")
    fig = figure(
        f"{method.capitalize()} audit at layer {audit['layer']}: {audit['n_rows']} rows vs {audit['n_clean']} clean rows "
        f"(dark: flagged, Bonferroni p < {audit.get('alpha', 0.05):g})",
        "candidate vector",
        "score (descent along v beyond clean data)"
        if method == "gradient"
        else "score (log-likelihood ratio under the candidate's steering, nats per row)",
    )

    def hover(r: dict) -> str:
        return (
            f"<b>{r['name']}</b> (rank {r['rank']})<br>score = {r['score']:.6g}"
            + ("" if r.get("cosine") is None else f"<br>cos = {r['cosine']:+.4f}")
            + ("" if r.get("multiplier") is None else f"<br>multiplier {r['multiplier']:g}")
            + ("" if r.get("z") is None else f"<br>z = {r['z']:.3g} (permutations)")
            + f"<br>p = {r['p_value']:.4g} (Bonferroni {r['p_bonferroni']:.4g})"
        )

    fig.add_trace(
        go.Bar(
            x=[r["name"] for r in rows],
            y=[r["score"] for r in rows],
            marker=dict(color=["#D55E00" if r["flagged"] else "#9ecae1" for r in rows]),
            hovertext=[hover(r) for r in rows],
            hovertemplate="%{hovertext}<extra></extra>",
            name="score",
        )
    )
    fig.update_xaxes(type="category")
    return fig


CONFUSION_COLOURS = {"cosine_z": "cos(descent, v) / random sd", "z": "score z (permutations)", "score": "score"}


def confusion_figure(result: dict, metric: str | None = None) -> go.Figure:
    """Datasets (true candidate; "clean" last) x candidate vectors, colour = `metric` (default: the
    gradient audit's cosine in random-direction sds, the likelihood audit's score in nats per row),
    each cell annotated with the candidate's rank in its row (* = flagged, Bonferroni p < alpha);
    the true candidate's cell is outlined."""
    method = result.get("method", "gradient")
    metric = metric or ("cosine_z" if method == "gradient" else "score")
    if metric not in CONFUSION_COLOURS or (metric == "cosine_z" and method != "gradient"):
        raise ValueError(f"metric: {metric!r} is not one of {list(CONFUSION_COLOURS)} (cosine_z: gradient audits only)")
    rows, cols, mat = result["datasets"], result["candidates"], result["matrix"]
    text, hover = [], []
    for i, d in enumerate(rows):
        text.append([]), hover.append([])
        for j, c in enumerate(cols):
            rank, z = mat["rank"][i][j], mat["z"][i][j]
            star = "*" if mat["p_bonferroni"][i][j] < result["alpha"] else ""
            text[-1].append(f"{rank}{star}")
            hover[-1].append(
                f"<b>{d} data, candidate {c}</b> (rank {rank})<br>score = {mat['score'][i][j]:.6g}"
                f"<br>z = {'n/a' if z is None else f'{z:.3g}'}"
                + (
                    ""
                    if mat["cosine"][i][j] is None
                    else f"<br>cos = {mat['cosine'][i][j]:+.4f} ({mat['cosine_z'][i][j]:+.3g} random sd)"
                )
                + f"<br>p = {mat['p_value'][i][j]:.4g} "
                f"(Bonferroni {mat['p_bonferroni'][i][j]:.4g}){' flagged' if star else ''}"
            )
    z = [[math.nan if v is None else v for v in row] for row in mat[metric]]
    span = max([abs(v) for row in z for v in row if not math.isnan(v)] + [1e-12])
    acc = result["top1"]
    clean = result.get("clean")
    fig = figure(
        f"{method.capitalize()} audit confusion at layer {result['layer']}: top-1 {acc['k']}/{acc['n']} "
        f"(95% CI {acc['ci95'][0]:.2f}-{acc['ci95'][1]:.2f}, chance {acc['chance']:.2f})"
        + ("" if clean is None else f"; clean flags {', '.join(clean['flagged']) or 'nothing'}"),
        "candidate vector",
        "dataset (teacher steered with)",
    )
    fig.add_trace(
        go.Heatmap(
            x=cols,
            y=rows,
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
            colorbar=dict(
                title=dict(
                    text="LLR score (nats/row)"
                    if metric == "score" and method == "likelihood"
                    else CONFUSION_COLOURS[metric],
                    side="right",
                )
            ),
        )
    )
    for i, d in enumerate(rows):
        if d in cols:  # outline the true candidate
            j = cols.index(d)
            fig.add_shape(
                type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(color="#222222", width=2)
            )
    fig.update_xaxes(type="category", showgrid=False)
    fig.update_yaxes(type="category", showgrid=False, autorange="reversed")
    return fig


def shift_references(results: dict, texts: str = "numbers", position: str = "all") -> go.Figure:
    """E2: each student's shift against the references side by side, the steering vector v
    (solid), the prompted teacher's own activation difference (dashed) and, in a run with a
    fine-tuned teacher, that teacher's residual difference from its base (dotted), per layer."""
    layers = results["layers"]
    refs = (
        ("activation_shift", "solid", "v"),
        ("activation_shift_prompted", "dash", "v_prompt"),
        ("activation_shift_finetuned", "dot", "finetuned"),
    )
    shown = " and ".join(f"{r} ({d})" for f, d, r in refs if results.get(f))
    fig = figure(
        f"Activation shift vs {shown}: {texts}, {position} tokens",
        "layer (blocks.{l}.hook_resid_post)",
        interval_title("cos(student - base, reference) [95% t-interval]", len(results["seeds"])),
    )
    series = [
        (field, dash, ref, i, arm)
        for field, dash, ref in refs
        for i, arm in enumerate(ordered_arms(results.get(field) or {}))
    ]
    for (field, dash, ref, i, arm), dx in zip(series, dodge(len(series), layers)):
        rows = results[field][arm][texts][position]["by_layer"]
        fig.add_trace(
            _interval_trace(
                layers,
                [r["cosine"] for r in rows],
                f"{arm} vs {ref}",
                arm_color(arm, i),
                f"cos with {ref}",
                dash,
                dx=dx,
            )
        )
    ref = results.get("reference_vectors", {}).get("cosine_v_prompted")
    if ref:
        fig.add_trace(
            go.Scatter(x=layers, y=ref, mode="lines", name="cos(v, v_prompt)", line=dict(color="#222222", dash="dot"))
        )
    _band(fig, 2 * results["vector"]["d_model"] ** -0.5, "random directions (±2 sd)")
    _steering_line(fig, results)
    fig.update_xaxes(tickvals=layers)
    return fit_legend(fig)


# the mechanism block's four measures, as (field, key within it or None, panel title, y title)
MECHANISM_PANELS = (
    ("cosine", "numbers/all", "direction: cos(shift, v)", "cos(student - base, v), numbers/all"),
    ("down_proj_energy", None, "direction: down_proj update along v", "energy fraction of dW_down along v"),
    ("shift_norm", "numbers/all", "amount: |shift|", "|student - base|, numbers/all"),
    ("down_proj_delta_norm", None, "amount: ||dW_down||", "||dW_down||_F"),
)


def mechanism_figure(results: dict) -> go.Figure:
    """Direction beside amount at the steering layer (the analysis' `mechanism` block): per arm,
    cos(shift, v) and the down_proj update's energy fraction along v (direction) beside |shift|
    and ||dW_down||_F (amount), each with its t-interval over seeds; one trace per arm and panel,
    one legend entry per arm. The energy panel marks a random direction's fraction (1/d_model)."""
    from plotly.subplots import make_subplots

    mech = results["mechanism"]
    first = next(iter(mech.values()))
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[t for _, _, t, _ in MECHANISM_PANELS],
        horizontal_spacing=0.14,
        vertical_spacing=0.2,
    )
    fig.update_layout(
        template=TEMPLATE,
        title=dict(
            text=f"Direction and amount at layer {first['layer']} ({first['module']}; seeds {results['seeds']})"
        ),
    )
    arms = ordered_arms(mech)
    for k, (field, key, _, y_title) in enumerate(MECHANISM_PANELS):
        row, col = k // 2 + 1, k % 2 + 1
        for i, arm in enumerate(arms):
            cell = mech[arm][field] if key is None else mech[arm][field].get(key)
            pts = [cell] if cell is not None else []  # None: no value at all (a student whose update is zero)
            fig.add_trace(
                go.Scatter(
                    x=[arm] * len(pts),
                    y=[c["mean"] for c in pts],
                    mode="markers",
                    name=f"{arm} student",
                    legendgroup=arm,
                    showlegend=k == 0,
                    marker=dict(size=9, color=arm_color(arm, i)),
                    **error_bars(pts),
                    hovertext=[f"<b>{arm}</b><br>{y_title} = {ci_text(c)} (n={c['n']})" for c in pts],
                    hovertemplate="%{hovertext}<extra></extra>",
                ),
                row=row,
                col=col,
            )
        fig.update_yaxes(
            title_text=interval_title(f"{y_title} [95% t-interval]", len(results["seeds"])),
            title_font=dict(size=11),
            row=row,
            col=col,
        )
        fig.update_xaxes(categoryorder="array", categoryarray=arms, row=row, col=col)
    fig.add_hline(y=0, line=dict(color="#888888", width=1), row=1, col=1)
    if first.get("expected_random") is not None:
        fig.add_hline(
            y=first["expected_random"],
            line=REFERENCE_LINE,
            annotation_text="random direction",
            annotation_position="top left",
            row=1,
            col=2,
        )
    return fit_legend(fig)


def emergence_curve(results: dict, texts: str = "questions/all") -> go.Figure:
    """E9: cos(student_t - base, v) at the steering layer at every kept training snapshot, per arm."""
    em = results.get("emergence") or {}
    layer = next((e["layer"] for e in em.values()), results["vector"].get("steering_layer"))
    fig = figure(
        f"Emergence: shift vs v at layer {layer} during training ({texts}; seeds {results['seeds']})",
        "optimizer step",
        interval_title("cos(student - base, v) [95% t-interval]", len(results["seeds"])),
    )
    arms = ordered_arms(em)
    steps = [r["step"] for arm in arms for r in em[arm]["by_texts"].get(texts) or []]
    for i, (arm, dx) in enumerate(zip(arms, dodge(len(arms), steps))):
        rows = em[arm]["by_texts"].get(texts) or []
        fig.add_trace(
            _interval_trace(
                [r["step"] for r in rows],
                [r["cosine"] for r in rows],
                f"{arm} student",
                arm_color(arm, i),
                "cos",
                dx=dx,
                where="step",
            )
        )
    _band(fig, 2 * results["vector"]["d_model"] ** -0.5, "random directions (±2 sd)")
    return fit_legend(fig)


def sufficiency_bars(results: dict) -> go.Figure:
    """E9 sufficiency: the base's owl-specific log-prob shift with each student's learned shift
    added at the steering layer, beside a random direction of the same norm (t-intervals over seeds)."""
    suff = results.get("sufficiency") or {}
    fig = figure(
        f"Sufficiency: base + student's shift at layer {results['vector'].get('steering_layer')} "
        f"(seeds {results['seeds']})",
        "student whose shift is added",
        interval_title(f"specific log P({results['animal']}) - base [95% t-interval]", len(results["seeds"])),
    )
    arms = ordered_arms(suff)
    # One trace per colour, so each legend swatch is the colour of its bars: the students' shifts
    # in their arm's colour, the random directions in grey; offset groups keep the pairs side by side.
    series = [(f"{a} student's shift", [a], "specific_shift", arm_color(a, i), "shift") for i, a in enumerate(arms)]
    series.append(("random direction, same norm", arms, "random_specific_shift", RANDOM_SAME_NORM, "random"))
    for name, xs, field, colour, group in series:
        cells = [suff[a][field] for a in xs]
        fig.add_trace(
            go.Bar(
                x=xs,
                y=[c["mean"] for c in cells],
                name=name,
                marker=dict(color=colour),
                offsetgroup=group,
                **error_bars(cells),
                hovertext=[f"<b>{a}</b>: {name}<br>{ci_text(c)} (n={c['n']})" for a, c in zip(xs, cells)],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(categoryorder="array", categoryarray=arms)
    fig.add_hline(y=0, line=dict(color="#888888", width=1))
    return fit_legend(fig)


def multiplier_trend(results: dict) -> go.Figure:
    """E4 dose-response: the descent projection of the data's mean residual gradient on v at the
    steering layer against the teacher's multiplier, one line per seed, with the pooled fit."""
    tr = results["gradient_multiplier_trend"]
    at = results["vector"].get("steering_layer")
    i = results["layers"].index(at) if at in results["layers"] else len(results["layers"]) // 2
    row = tr["by_layer"][i]
    r_text = "n/a" if row["r"] is None else f"{row['r']:+.2f}"
    fig = figure(
        f"Gradient projection on v vs steering multiplier at layer {row['layer']}: slope {row['slope']:.3g}, "
        f"r = {r_text} (n = {row['n']})",
        "teacher multiplier (0 = control teacher)",
        "-mean dL/dh . v_hat on the base",
    )
    ms = tr["multipliers"]
    for j, (seed, by_m) in enumerate(tr["per_seed"].items()):
        fig.add_trace(
            go.Scatter(
                x=ms,
                y=[by_m[f"{m:g}"][i] for m in ms],
                mode="lines+markers",
                name=f"seed {seed}",
                line=dict(color=arm_color("steered", j), width=1),
                opacity=0.7,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[min(ms), max(ms)],
            y=[row["intercept"] + row["slope"] * m for m in (min(ms), max(ms))],
            mode="lines",
            name="least-squares fit",
            line=dict(color="#222222", dash="dash"),
        )
    )
    return fit_legend(fig)


def analysis_figures(results: dict) -> dict[str, go.Figure]:
    """{fixed name: figure} for an analysis results.json (what `interp analyze` writes)."""
    figs = {f"shift_{t}_{p}": shift_cosines(results, t, p) for t in ("numbers", "questions") for p in ("all", "last")}
    figs["weights_writers"] = weight_energy_z(results, "writer")
    figs["weights_readers"] = weight_energy_z(results, "reader")
    if any(g["by_layer"] for g in results["gradients"].values()):
        figs["gradient_audit"] = gradient_audit(results)
    if results.get("activation_shift_prompted") or results.get("activation_shift_finetuned"):
        figs["shift_references"] = shift_references(results)
    if results.get("mechanism"):
        figs["mechanism"] = mechanism_figure(results)
    if results.get("emergence"):
        figs["emergence"] = emergence_curve(results)
    if results.get("sufficiency"):
        figs["sufficiency"] = sufficiency_bars(results)
    if results.get("gradient_multiplier_trend"):
        figs["multiplier_trend"] = multiplier_trend(results)
    return figs


def _seed_points(names: list[str], rows: list[dict], showlegend: bool = True) -> go.Scatter:
    """Every seed's value beside its row's interval (horizontal rows named `names`)."""
    return go.Scatter(
        x=[v for r in rows for v in r["per_seed"]],
        y=[k for k, r in zip(names, rows) for _ in r["per_seed"]],
        mode="markers",
        marker=dict(size=4, color="rgba(60, 60, 60, 0.45)"),
        name="one seed",
        showlegend=showlegend,
        hoverinfo="skip",
    )


def e9_figure(res: dict) -> go.Figure:
    """E9 at matched behaviour (`interp.e9_report`): each contrast paired by seed (95% t-interval
    over seeds, per-seed points), left the transfer (trait-specific log P), right cos(shift, v) at
    the steering layer with the random-direction null's +-2 sd band; the verdict in the title."""
    from plotly.subplots import make_subplots

    names = res["order"]
    n = len(res["seeds"])
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=[
            "transfer: trait-specific log P shift",
            f"cos(shift, v) at layer {res['steering_layer']}, number prompts",
        ],
    )
    sds = [a["cos_null_sd"] for a in res["arms"].values() if a.get("cos_null_sd") is not None]
    if sds:  # a difference of two cosines: the null's sd times sqrt(2)
        half = 2 * math.sqrt(2) * sum(sds) / len(sds)
        fig.add_vrect(x0=-half, x1=half, fillcolor=NULL_BAND, line_width=0, row=1, col=2)
    for col, field in ((1, "transfer"), (2, "cos_v")):
        keys = [k for k in names if field in res["contrasts"][k]]  # unanalysed arms: transfer only
        cs = [res["contrasts"][k][field] for k in keys]
        fig.add_trace(
            go.Scatter(
                x=[c["mean"] for c in cs],
                y=keys,
                mode="markers",
                marker=dict(size=10, color=[arm_color(k.split("-")[0].split(" ")[0]) for k in keys]),
                **error_bars(cs, axis="x"),
                hovertext=[
                    f"<b>{k}</b><br>{ci_text(c, '+.3f')}, {c['positive_seeds']}/{n} > 0, p {c['sign_flip_p']:.3g}"
                    for k, c in zip(keys, cs)
                ],
                hovertemplate="%{hovertext}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        fig.add_trace(_seed_points(keys, cs, showlegend=col == 1), row=1, col=col)
        fig.add_vline(x=0, line=REFERENCE_LINE, row=1, col=col)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_layout(
        template=TEMPLATE,
        title=dict(
            text=f"E9 at matched behaviour ({res['model']}, {res['animal']}, {n} seeds, paired by seed): {res['verdict']}"
        ),
        height=140 + 34 * len(names),
    )
    return fig


def necessity_figure(res: dict) -> go.Figure:
    """E9's necessity (`interp.necessity_report`): each row's transfer paired by seed (95% t-interval
    over seeds, per-seed points), the plain runs' contrasts beside their v-projected twins'; each
    multiplier's verdict in the title."""
    names = res["order"]
    rows = [res["rows"][k] for k in names]
    n = len(res["seeds"])
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[r["mean"] for r in rows],
            y=names,
            mode="markers",
            marker=dict(  # the arm's colour; open where v was projected out of the students
                size=10,
                color=[arm_color(k.split(" ")[1].split("-")[0], 4) for k in names],
                symbol=["circle-open" if "projected out" in k else "circle" for k in names],
            ),
            **error_bars(rows, axis="x"),
            hovertext=[
                f"<b>{k}</b><br>{ci_text(r, '+.3f')}, {r['positive_seeds']}/{n} > 0, p {r['sign_flip_p']:.3g}"
                for k, r in zip(names, rows)
            ],
            hovertemplate="%{hovertext}<extra></extra>",
            name="mean over seeds",
        )
    )
    fig.add_trace(_seed_points(names, rows))
    fig.add_vline(x=0, line=REFERENCE_LINE)
    verdicts = "; ".join(f"{m} {v['verdict']}" for m, v in res["verdicts"].items())
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=f"Is v necessary? ({res['model']}, {res['animal']}, {n} seeds, paired by seed)<br>{verdicts}"),
        xaxis_title="transfer: trait-specific log P shift",
        height=170 + 30 * len(names),
    )
    return fig


def e9_layers_figure(res: dict) -> go.Figure:
    """E9 by layer (`interp.e9_report.by_layer`): each arm's cos(shift, v) (left) and cos(shift,
    v_prompt) (right) minus the control students', paired by seed, at every layer read (95%
    t-interval over seeds), the claim's steered - prompted contrasts dashed; grey, the random-
    direction null's +-2 sd of a difference; dotted, the steering layer where the verdict is read."""
    from plotly.subplots import make_subplots

    bl = res["by_layer"]
    layers = bl["layers"]
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=["cos(shift, v) minus control's", "cos(shift, v_prompt) minus control's"],
    )
    claims = {f"steered {res['partner'][p]}-{p}" for p in res["partner"]}
    names = [k for k in bl["contrasts"] if k.endswith("-control") or k in claims]
    for col, (field, nulls) in enumerate((("cos_v", bl["null_sd"]), ("cos_v_prompt", bl["null_sd_prompt"])), start=1):
        sds = [v for v in nulls.values() if v]
        if sds:  # a difference of two cosines: the null's sd times sqrt(2), averaged over arms
            half = [2 * math.sqrt(2) * sum(s[j] for s in sds) / len(sds) for j in range(len(layers))]
            fig.add_trace(
                go.Scatter(
                    x=layers + layers[::-1],
                    y=half + [-h for h in half[::-1]],
                    fill="toself",
                    fillcolor=NULL_BAND,
                    line=dict(width=0),
                    name="random-direction null, +-2 sd",
                    showlegend=col == 1,
                    hoverinfo="skip",
                ),
                row=1,
                col=col,
            )
        for i, k in enumerate(names):
            rows = bl["contrasts"][k].get(field)
            if not rows:
                continue
            bars = error_bars(rows)
            if bars:  # thin and capless: 30 layers x several contrasts
                bars["error_y"].update(thickness=1, width=0)
            fig.add_trace(
                go.Scatter(
                    x=[r["layer"] for r in rows],
                    y=[r["mean"] for r in rows],
                    mode="lines+markers",
                    marker=dict(size=5),
                    line=dict(color=SERIES_COLORS[i % len(SERIES_COLORS)], dash="dash" if k in claims else "solid"),
                    **bars,
                    name=k,
                    legendgroup=k,
                    showlegend=col == 1,
                    hovertext=[f"<b>{k}</b>, layer {r['layer']}<br>{ci_text(r, '+.3f')}" for r in rows],
                    hovertemplate="%{hovertext}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_hline(y=0, line=REFERENCE_LINE, row=1, col=col)
        fig.add_vline(x=res["steering_layer"], line=dict(color="#555555", width=1, dash="dot"), row=1, col=col)
        fig.update_xaxes(title_text="layer", row=1, col=col)
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=f"E9 by layer ({res['model']}, {res['animal']}, {len(res['seeds'])} seeds, paired by seed)"),
        legend=dict(orientation="h", x=0, xanchor="left", y=-0.18, yanchor="top"),
        height=680,
    )
    return fig

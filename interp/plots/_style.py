"""One look for every figure: a registered template, fixed colours per model arm, helpers.

Figures leave width and height unset so the HTML fills its window; `interp.export` sets the
size of static images.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

from interp.stats import NO_INTERVAL, has_interval

TEMPLATE = "interp"

# Model arms and conditions keep their colour in every figure (colour-blind-safe Okabe-Ito).
ARM_ORDER = ("base", "control", "prompted", "prompted_ablated", "steered", "random")
ARM_COLORS = {
    "base": "#7f7f7f",
    "control": "#0072B2",
    "prompted": "#E69F00",
    "steered": "#D55E00",
    "random": "#009E73",
    "prompted_ablated": "#CC79A7",
}
SERIES_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
HIGHLIGHT = "rgba(213, 94, 0, 0.12)"  # the trait's column
REFERENCE_LINE = dict(color="#555555", width=1.5, dash="dash")


def _register() -> None:
    base = pio.templates["plotly_white"]
    t = go.layout.Template(base)
    t.layout.update(
        font=dict(family="Inter, Helvetica, Arial, sans-serif", size=13, color="#222222"),
        title=dict(x=0.0, xref="paper", xanchor="left", font=dict(size=16)),
        colorway=list(SERIES_COLORS),
        margin=dict(l=80, r=30, t=70, b=70),
        hoverlabel=dict(font=dict(family="Menlo, Consolas, monospace", size=12), align="left"),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        xaxis=dict(showline=True, linecolor="#888888", ticks="outside", zeroline=False, automargin=True),
        yaxis=dict(
            showline=True, linecolor="#888888", ticks="outside", zeroline=False, automargin=True, gridcolor="#e8e8e8"
        ),
    )
    pio.templates[TEMPLATE] = t


_register()


def figure(title: str, x_title: str, y_title: str, **layout) -> go.Figure:
    """An empty figure in the interp template with a title and axis titles (units included)."""
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title=dict(text=title), xaxis_title=x_title, yaxis_title=y_title, **layout)
    return fig


def arm_color(arm: str, i: int = 0) -> str:
    # `steered+kd` shares the colour of `steered`: the teacher, not the objective, names the arm
    return ARM_COLORS.get(arm, ARM_COLORS.get(arm.split("+")[0], SERIES_COLORS[i % len(SERIES_COLORS)]))


def ordered_arms(arms) -> list[str]:
    """Known arms in canonical order, then any others in their given order."""
    return [a for a in ARM_ORDER if a in arms] + [a for a in arms if a not in ARM_ORDER]


def error_bars(intervals: list[dict], axis: str = "y") -> dict:
    """Asymmetric error bars from `{"mean", "ci95": [lo, hi]}` intervals (`error_y` or `error_x`);
    none when no interval has a spread (one replicate: `n = 1: no interval`)."""
    if intervals and not any(has_interval(d) for d in intervals):
        return {}
    return {
        f"error_{axis}": dict(
            type="data",
            symmetric=False,
            thickness=1.5,
            width=6,
            array=[d["ci95"][1] - d["mean"] for d in intervals],
            arrayminus=[d["mean"] - d["ci95"][0] for d in intervals],
        )
    }


def ci_text(d: dict, fmt: str = ".6g") -> str:
    """`mean [lo, hi]` with exact values, for hover text (`mean (n = 1: no interval)` for one replicate)."""
    if not has_interval(d):
        return f"{d['mean']:{fmt}} ({NO_INTERVAL})"
    return f"{d['mean']:{fmt}} [{d['ci95'][0]:{fmt}}, {d['ci95'][1]:{fmt}}]"


def interval_title(title: str, n: int, interval: str = "[95% t-interval]") -> str:
    """An axis title naming its interval, or saying there is none when `n` (replicates) is 1."""
    return title.replace(interval, f"({NO_INTERVAL})") if n < 2 else title


# A legend above the plot shares the top margin with the title: one row fits beside it, a second
# row runs into it. Rows are estimated at export size (interp.export.WIDTH less the margins).
LEGEND_ROW_PX = 1000 - 110
LEGEND_CHAR_PX, LEGEND_ITEM_PX = 7.5, 45
LEGEND_BESIDE = dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top")


def legend_entries(fig: go.Figure) -> list[str]:
    """The names the legend shows (traces with a name not hidden from it; a legend group once)."""
    names, groups = [], set()
    for tr in fig.data:
        if tr.showlegend is False or not tr.name:
            continue
        group = getattr(tr, "legendgroup", None)
        if group:
            if group in groups:
                continue
            groups.add(group)
        names.append(tr.name)
    return names


def fit_legend(fig: go.Figure) -> go.Figure:
    """Move the legend from above the plot to its right when it would need more than one row
    there (it would cover the title); a short legend stays above."""
    names = legend_entries(fig)
    if len(names) > 1 and sum(LEGEND_ITEM_PX + LEGEND_CHAR_PX * len(n) for n in names) > LEGEND_ROW_PX:
        fig.update_layout(legend=LEGEND_BESIDE)
    return fig


def dodge(n: int, xs, width: float = 0.3) -> list[float]:
    """Horizontal offsets for n series drawn at the same x values, as a fraction `width` of the
    smallest gap between the x values, so their error bars sit side by side instead of on top
    of each other."""
    xs = sorted(set(xs))
    gap = min((b - a for a, b in zip(xs, xs[1:])), default=1) or 1
    return [o * gap for o in jitter(n, width)]


def jitter(n: int, width: float = 0.25) -> list[float]:
    """Deterministic horizontal offsets for n per-seed points around a category."""
    if n <= 1:
        return [0.0] * n
    return [-width / 2 + width * i / (n - 1) for i in range(n)]


def add_replicate_points(fig, groups: list[tuple[float, list[float], list[str]]], size: int = 6) -> None:
    """Overlay one open marker per replicate (seed) beside each category's interval.

    `groups`: (x position, values, hover labels) per category; nothing is drawn if all are empty.
    """
    import plotly.graph_objects as go

    px, py, ph = [], [], []
    for x, values, labels in groups:
        px += [x + o for o in jitter(len(values), 0.12 if size >= 6 else 0.15)]
        py += list(values)
        ph += list(labels)
    if px:
        fig.add_trace(
            go.Scatter(
                x=px,
                y=py,
                mode="markers",
                name="per seed",
                hovertext=ph,
                hovertemplate="%{hovertext}<extra></extra>",
                marker=dict(size=size, color="rgba(0,0,0,0.45)", symbol="circle-open"),
            )
        )

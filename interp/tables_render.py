"""What every printed table shares: rendering tables and lines as plain text at a fixed width,
and the cell formats (an interval in one cell, a p, a dash for a missing value).

Rendered without colour at a fixed width (80 columns by default: a log or a narrow terminal), so
what a test reads is what a user sees. Intervals are one cell each (`ci`), never split across
lines; wide results are printed as several narrow tables rather than one wide one.
"""

from __future__ import annotations

import io
from typing import Iterable

from rich.console import Console
from rich.table import Table

from interp.stats import NO_INTERVAL, has_interval

WIDTH = 80


def render(*items, width: int = WIDTH) -> str:
    """Tables and lines of text as plain text `width` columns wide (no markup is interpreted)."""
    # force_jupyter=False: inside Jupyter rich would also display each table itself, so a notebook's
    # print(render(...)) showed it twice
    console = Console(
        width=width,
        record=True,
        file=io.StringIO(),
        markup=False,
        highlight=False,
        emoji=False,
        color_system=None,
        force_jupyter=False,
    )
    for item in items:
        if item is not None:
            console.print(item)
    return console.export_text()


def ci(d: dict, fmt: str = "{:.4f}") -> str:
    """`mean [lo, hi]` of a summary, or `mean (no interval)` when it has none (one seed)."""
    if not has_interval(d):
        return f"{fmt.format(d['mean'])} ({NO_INTERVAL})"
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci95'][0])}, {fmt.format(d['ci95'][1])}]"


def ci_or_dash(d: dict | None, fmt: str = "{:.4f}") -> str:
    """`ci`, or "-" where there is no value at all (e.g. no cosine without v)."""
    return "-" if d is None else ci(d, fmt)


def num_or_dash(x: float | None, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def mean(d: dict | None, fmt: str = "{:+.2f}") -> str:
    return "-" if d is None else fmt.format(d["mean"])


def make_table(columns: Iterable[str], rows: Iterable[Iterable], title: str | None = None) -> Table:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table


def p_text(p: float) -> str:
    """A p to 3 decimals, or in exponent form below 0.001 (a sampled test's floor is 1e-4)."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"

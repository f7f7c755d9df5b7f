"""Write figures to disk: HTML always (the pages of a folder share one plotly.min.js), PNG/SVG/PDF
through kaleido and a Chromium; and show them in notebooks with a static fallback.

Kaleido 1.x renders in a headless Chromium it must find on this machine (its `get_chrome()`
downloads one, which needs a network). We look for a browser the way choreographer (kaleido's
browser driver) does, `BROWSER_PATH` first, then `chromium`, `google-chrome`, ... on PATH (Debian's
`/usr/bin/chromium` from `make chromium`), and hand the path to kaleido explicitly. Without one,
the static formats are skipped with a one-line message and the HTML is still written. Every file
is written atomically.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import base64
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import plotly.graph_objects as go

from interp.runs import atomic_path

FORMATS = ("html", "png", "svg", "pdf")
PLOTLYJS_FILE = "plotly.min.js"  # beside the HTML pages of a figures folder, which all load it
STATIC_FORMATS = ("png", "svg", "pdf")
WIDTH, HEIGHT, PNG_SCALE = 1000, 600, 2  # static images: layout pixels, PNG at 2x for print
RENDER_TIMEOUT_S = 60

_log = logging.getLogger(__name__)


@dataclass
class Exported:
    """What an export wrote, and one line on what it could not (None when everything was written)."""

    written: list[Path] = field(default_factory=list)
    message: str | None = None


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """'html,png' or ['png'] -> ['html', 'png'] (HTML is always written), in FORMATS order."""
    asked = [f.strip().lower().lstrip(".") for f in (formats.split(",") if isinstance(formats, str) else formats)]
    bad = [f for f in asked if f and f not in FORMATS]
    if bad:
        raise ValueError(f"formats: {', '.join(bad)} not supported; choose from {', '.join(FORMATS)}")
    return [f for f in FORMATS if f == "html" or f in asked]


def find_chromium() -> str | None:
    """Path of a Chromium-based browser kaleido can drive, or None. `BROWSER_PATH` wins when set."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 (an unusual choreographer version: no browser rather than a crash)
        return None


def _no_browser_message(formats: list[str]) -> str:
    env = os.environ.get("BROWSER_PATH")
    where = f"BROWSER_PATH={env!r} is not an executable" if env else "no Chromium found"
    return (
        f"{'/'.join(formats)} skipped: {where}; install one with `make chromium` (apt-get install chromium) "
        "or set BROWSER_PATH; HTML written"
    )


async def _render(browser: str, jobs: list[tuple[go.Figure, dict]]) -> list[bytes]:
    import kaleido

    # mathjax=False: kaleido's default loads MathJax from a CDN, which an offline machine waits on.
    async with kaleido.Kaleido(n=1, path=browser, mathjax=False, timeout=RENDER_TIMEOUT_S) as k:
        return [await k.calc_fig(fig, opts=opts) for fig, opts in jobs]


def _render_sync(browser: str, jobs: list[tuple[go.Figure, dict]]) -> list[bytes]:
    # A thread of its own, so this works inside a running event loop (Jupyter) as well.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _render(browser, jobs)).result()


def _html(fig: go.Figure, name: str) -> str:
    """A page whose figure fills the window; plotly.js comes from `PLOTLYJS_FILE` beside it (no
    network), one copy per folder instead of 4.8 MB inside every page."""
    config = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg", "filename": name}}
    page = fig.to_html(include_plotlyjs="directory", full_html=True, config=config, default_height="100vh")
    return page.replace("<head>", f"<head><title>{name}</title><style>body {{ margin: 0; }}</style>", 1)


def save_figures(
    figures: Mapping[str, go.Figure],
    out_dir: str | Path,
    formats: str | Iterable[str] = ("html",),
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Exported:
    """Write `out_dir/<name>.<format>` for every figure and format (one browser for all images)."""
    formats = parse_formats(formats)
    out_dir = Path(out_dir)
    done = Exported()
    for name, fig in figures.items():
        done.written.append(_write(out_dir / f"{name}.html", _html(fig, name).encode()))
    if figures:
        _write_plotlyjs(out_dir)
    static = [f for f in formats if f in STATIC_FORMATS]
    if not static or not figures:
        return done
    browser = find_chromium()
    if browser is None:
        done.message = _no_browser_message(static)
        _log.warning(done.message)
        return done
    targets = [(fig, fmt, out_dir / f"{name}.{fmt}") for name, fig in figures.items() for fmt in static]
    jobs = [
        (fig, {"format": fmt, "width": width, "height": height, "scale": PNG_SCALE if fmt == "png" else 1})
        for fig, fmt, _ in targets
    ]
    try:
        images = _render_sync(browser, jobs)
    except Exception as e:  # noqa: BLE001 (a browser that fails must not cost the HTML)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        done.message = f"{'/'.join(static)} failed with {browser}: {type(e).__name__}: {first}; HTML written"
        _log.warning(done.message)
        return done
    done.written += [_write(path, data) for (_, _, path), data in zip(targets, images)]
    return done


def _write_plotlyjs(out_dir: Path) -> None:
    """The plotly.js every HTML page in `out_dir` loads, written when missing or another version."""
    from plotly.offline import get_plotlyjs

    path, js = out_dir / PLOTLYJS_FILE, get_plotlyjs().encode()
    if not path.is_file() or path.stat().st_size != len(js) or path.read_bytes() != js:
        _write(path, js)


def _write(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes files 0600; figures are for sharing
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


NOTEBOOK_RENDERER = "plotly_mimetype+interp_png"


def _static_image_renderer():
    from plotly.io.base_renderers import MimetypeRenderer

    class StaticImage(MimetypeRenderer):
        """A PNG of the figure beside plotly's JSON in a notebook's output: what GitHub, nbviewer
        and nbconvert show, which do not run plotly.js. Nothing, and no error, without a Chromium."""

        def to_mimebundle(self, fig_dict):
            browser = find_chromium()
            if browser is None:
                return {}
            try:
                png = _render_sync(
                    browser, [(go.Figure(fig_dict), {"format": "png", "width": WIDTH, "height": HEIGHT})]
                )[0]
            except Exception as e:  # noqa: BLE001 (the interactive figure must not be lost)
                _log.warning("no static fallback for a figure: %s: %s", type(e).__name__, str(e).splitlines()[:1])
                return {}
            return {"image/png": base64.b64encode(png).decode()}

    return StaticImage()


def use_notebook_figures(static: bool = True) -> None:
    """Display figures in a notebook as plotly's JSON (interactive in JupyterLab and VS Code) and,
    with `static`, a PNG beside it, so a saved notebook still shows them where no JavaScript runs.
    The notebooks call it first; the PNG needs a Chromium (`make chromium`), as static export does."""
    import plotly.io as pio

    pio.renderers["interp_png"] = _static_image_renderer()
    pio.renderers.default = NOTEBOOK_RENDERER if static else "plotly_mimetype"


def save_figure(fig: go.Figure, path_stem: str | Path, formats: str | Iterable[str] = ("html",), **size) -> Exported:
    """Write `<path_stem>.html` and `<path_stem>.<format>` for each static format asked for."""
    stem = Path(path_stem)
    return save_figures({stem.name: fig}, stem.parent, formats, **size)

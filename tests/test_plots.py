"""Figures from real result files of tiny runs: the traces hold the results' numbers; export and
`interp plot` write what they say; an exported page renders in a real (headless) Chromium."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import plotly.graph_objects as go
import pytest
import torch

from interp import export, plots
from interp.cli import app
from interp.config import parse_config
from interp.mnist import MnistConfig, run_mnist
from interp.pipeline import run_e1
from interp.theory import TheoremConfig, run_theorem

# ----------------------------------------------------------------------------- real results (tiny runs)


@pytest.fixture(scope="module")
def module_env(tmp_path_factory):
    """Module-scoped fixtures run before conftest's per-test isolation: give them their own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_CACHE", str(tmp_path_factory.mktemp("cache")))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def e1(module_env, tmp_path_factory) -> tuple[dict, Path]:
    cfg = parse_config(
        {
            "experiment": "plots",
            "model": "tiny",
            "seeds": [0],
            "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
            "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
            "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
            "eval": {"split": "tuning", "n_boot": 200},
        }
    )
    res = run_e1(cfg, tmp_path_factory.mktemp("e1"), progress=False, log=lambda *a, **k: None)
    return res, Path(res["run_dir"])


@pytest.fixture(scope="module")
def sweep_dir(module_env, tmp_path_factory) -> Path:
    from interp.evaluate import steering_sweep
    from interp.models import load_model
    from interp.prompts import contrastive_pairs, questions
    from interp.runs import write_json
    from interp.steering import build_steering_vector

    m = load_model("tiny", device="cpu")
    vec = build_steering_vector(m, contrastive_pairs("owl", 4), trait="owl")
    out = tmp_path_factory.mktemp("vector")
    vec.save(out)
    write_json(
        out / "sweep.json",
        steering_sweep(m, vec, "owl", [1, 2, 3], [0.5, 1.0], questions("tuning")[:6], progress=False),
    )
    return out


@pytest.fixture(scope="module")
def mnist_dir(module_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mnist")
    run_mnist(MnistConfig(n_seeds=2, hidden=16, teacher_steps=20, student_steps=20, sweep_aux=(1,)), out)
    return out


@pytest.fixture(scope="module")
def theorem_dir(module_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("theorem")
    run_theorem(TheoremConfig(n_seeds=3, models=("mlp",), hidden=16, n_inputs=16), out)
    return out


def _results(d: Path, name: str = "results.json") -> dict:
    return json.loads((d / name).read_text())


def _lo_hi(trace, axis: str = "y") -> tuple[list[float], list[float]]:
    """The interval ends a trace draws: value - arrayminus, value + array."""
    err, vals = getattr(trace, f"error_{axis}"), getattr(trace, axis)
    return [v - m for v, m in zip(vals, err.arrayminus)], [v + p for v, p in zip(vals, err.array)]


def _close(a, b) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- E1 figures


def test_trait_probabilities_points_are_the_arm_means_and_bars_their_intervals(e1):
    res, _ = e1
    fig = plots.trait_probabilities(res)
    arms = ["base", "control", "steered"]
    assert list(fig.layout.xaxis.ticktext) == ["base", "control student", "steered student"]
    pts = fig.data[0]
    assert _close(pts.y, [res["arms"][a]["prob"]["mean"] for a in arms])
    lo, hi = _lo_hi(pts)
    assert _close(lo, [res["arms"][a]["prob"]["ci95"][0] for a in arms])
    assert _close(hi, [res["arms"][a]["prob"]["ci95"][1] for a in arms])
    assert f"{res['arms']['steered']['prob']['mean']:.6g}" in pts.hovertext[2]
    assert fig.layout.shapes[0].y0 == res["arms"]["base"]["prob"]["mean"]  # the base reference line
    assert "P(owl)" in fig.layout.yaxis.title.text


def test_trait_probabilities_orders_every_arm_and_adds_per_seed_points(e1):
    res = copy.deepcopy(e1[0])
    res["seeds"] = [0, 1]
    for arm, per_seed in (("random", [0.001, 0.002]), ("prompted", [0.003, 0.004])):
        res["arms"][arm] = {**copy.deepcopy(res["arms"]["steered"]), "per_seed_prob": per_seed}
    fig = plots.trait_probabilities(res)
    assert list(fig.layout.xaxis.ticktext) == [
        "base",
        "control student",
        "prompted student",
        "steered student",
        "random student",
    ]
    seeds = next(t for t in fig.data if t.name == "per seed")
    assert list(seeds.y) == [0.003, 0.004, 0.001, 0.002]


def test_animal_shifts_bars_are_the_per_animal_shifts_with_the_trait_highlighted(e1):
    res, _ = e1
    fig = plots.animal_shifts(res)
    assert [t.name for t in fig.data] == ["control student", "steered student"]
    for trace, arm in zip(fig.data, ["control", "steered"]):
        assert dict(zip(trace.x, trace.y)) == res["arms"][arm]["per_animal_logprob_shift"]
        widths = dict(zip(trace.x, trace.marker.line.width))
        assert widths.pop("owl") > 0 and not any(widths.values())
    i = list(fig.data[0].x).index("owl")
    assert (fig.layout.shapes[0].x0, fig.layout.shapes[0].x1) == (i - 0.5, i + 0.5)
    assert "<b>owl</b>" in fig.layout.xaxis.ticktext[i]


def test_transfer_summary_shows_both_differences_with_intervals_and_a_zero_line(e1):
    res, _ = e1
    t = res["transfer"]["steered-control"]
    fig = plots.transfer_summary(res)
    assert len(fig.data) == 2  # one seed: no t-interval over seeds
    for trace, key in zip(fig.data, ["logprob_diff", "specific_logprob_diff"]):
        assert _close(trace.x, [t[key]["mean"]])
        assert _close([v[0] for v in _lo_hi(trace, "x")], t[key]["ci95"])
    assert any(s.x0 == 0 and s.x1 == 0 for s in fig.layout.shapes)
    assert list(fig.layout.yaxis.ticktext) == ["steered-control"]
    assert (
        f"permutation p (specific shift, students as replicates) = {t['permutation_specific']['p_value']:.4g}"
        in fig.data[0].hovertext[0]
    )


def test_transfer_summary_adds_the_seed_interval_with_several_seeds(e1):
    res = copy.deepcopy(e1[0])
    res["transfer"]["steered-control"]["logprob_diff_per_seed"] = {"mean": 0.1, "ci95": [0.0, 0.2], "sd": 0.05, "n": 3}
    fig = plots.transfer_summary(res)
    assert len(fig.data) == 3 and list(fig.data[2].x) == [0.1]


def test_training_loss_draws_each_students_log(e1):
    _, run_dir = e1
    logs = plots.student_logs(run_dir)
    assert set(logs) == {"control/seed0", "steered/seed0"}
    fig = plots.training_loss(logs)
    for trace in fig.data:
        assert list(trace.y) == [r["loss"] for r in logs[trace.name]]
        assert list(trace.x) == [r["step"] for r in logs[trace.name]]
    single = plots.training_loss(logs["control/seed0"])
    assert single.data[0].name == "student" and "nats" in single.layout.yaxis.title.text


# ----------------------------------------------------------------------------- steering, E7, E8


def test_steering_heatmap_colour_is_log_ratio_and_hover_has_exact_values(sweep_dir):
    sweep = _results(sweep_dir, "sweep.json")
    fig = plots.steering_sweep_heatmap(sweep)
    hm = fig.data[0]
    assert list(hm.y) == ["1", "2", "3"] and list(hm.x) == ["0.5", "1"]
    for c in sweep["cells"]:
        i, j = [1, 2, 3].index(c["layer"]), [0.5, 1.0].index(c["multiplier"])
        assert math.isclose(hm.z[i][j], math.log10(c["ratio"]))
        for key in ("prob", "ratio", "share"):
            assert f"{c[key]:.6g}" in hm.hovertext[i][j]
    assert hm.zmid == 0 and hm.zmin == -hm.zmax  # white = unchanged, symmetric in log ratio
    assert "×1" in hm.colorbar.ticktext


def test_steering_heatmap_leaves_unmeasured_cells_empty(sweep_dir):
    sweep = _results(sweep_dir, "sweep.json")
    sweep["cells"] = [c for c in sweep["cells"] if (c["layer"], c["multiplier"]) != (2, 0.5)]
    hm = plots.steering_sweep_heatmap(sweep).data[0]
    assert hm.z[1][0] is None and hm.hovertext[1][0] == "not measured"


def test_mnist_accuracies_are_the_table_with_t_intervals_and_chance(mnist_dir):
    res = _results(mnist_dir)
    fig = plots.mnist_accuracies(res)
    pts = fig.data[0]
    assert list(fig.layout.xaxis.ticktext) == [r["condition"] for r in res["table"]]
    assert _close(pts.y, [r["mean"] for r in res["table"]])
    lo, hi = _lo_hi(pts)
    assert _close(lo, [r["ci95"][0] for r in res["table"]]) and _close(hi, [r["ci95"][1] for r in res["table"]])
    seeds = fig.data[1]
    assert list(seeds.y) == [v for r in res["table"] for v in res["accuracy_by_condition"][r["condition"]]]
    assert fig.layout.shapes[0].y0 == res["chance"] == 0.1


def test_mnist_sweep_includes_the_main_run(mnist_dir):
    res = _results(mnist_dir)
    fig = plots.mnist_sweep(res, "n_aux")
    student = next(t for t in fig.data if t.name == "student_aux")
    assert list(student.x) == [1, 3]
    main = next(r for r in res["table"] if r["condition"] == "student_aux")
    assert student.y[1] == main["mean"]


def test_theorem_alignment_same_and_cross_cosines(theorem_dir):
    res = _results(theorem_dir)
    fig = plots.theorem_alignment(res)
    for init in ("same", "cross"):
        trace = next(t for t in fig.data if t.name.startswith(f"{init} init ["))
        rows = [r for r in res["rows"] if r["init"] == init]
        assert _close(trace.y, [r["cosine"]["mean"] for r in rows])
        assert _close(_lo_hi(trace)[0], [r["cosine"]["ci95"][0] for r in rows])
    assert len(fig.layout.xaxis.ticktext) == 4  # mlp x (trained, random) x (soft_ce, mse)


def test_every_figure_shares_the_template_and_titles_its_axes(e1, sweep_dir, mnist_dir, theorem_dir):
    figs = [f for d in (e1[1], sweep_dir, mnist_dir, theorem_dir) for f in plots.run_figures(d)[1].values()]
    assert len(figs) == 8  # e1 4, vector 1, mnist 2, theorem 1
    for fig in figs:
        assert isinstance(fig, go.Figure) and fig.layout.title.text
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
        assert fig.layout.template.layout.font.family == figs[0].layout.template.layout.font.family


def test_detect_run_names_each_kind_and_refuses_other_folders(e1, sweep_dir, mnist_dir, theorem_dir, tmp_path):
    assert [plots.detect_run(d) for d in (e1[1], sweep_dir, mnist_dir, theorem_dir)] == [
        "e1",
        "vector",
        "mnist",
        "theorem",
    ]
    with pytest.raises(ValueError, match="not a run directory"):
        plots.detect_run(tmp_path)


# ----------------------------------------------------------------------------- export


def test_html_pages_share_one_plotly_js_beside_them_and_open_offline(e1, tmp_path):
    from plotly.offline import get_plotlyjs

    res, _ = e1
    figs = {"fig": plots.trait_probabilities(res), "shifts": plots.animal_shifts(res)}
    done = export.save_figures(figs, tmp_path, formats="html")
    assert done.written == [tmp_path / "fig.html", tmp_path / "shifts.html"] and done.message is None
    html = (tmp_path / "fig.html").read_text()
    assert json.dumps(res["arms"]["steered"]["prob"]["mean"]) in html
    assert not re.search(r'<script[^>]*src="https?:', html)  # no network
    for page in done.written:  # kilobytes, not plotly.js's 4.8 MB each
        assert '<script charset="utf-8" src="plotly.min.js">' in page.read_text() and page.stat().st_size < 200_000
    assert (tmp_path / export.PLOTLYJS_FILE).read_text() == get_plotlyjs()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporaries left


def test_parse_formats_always_includes_html_and_names_bad_ones():
    assert export.parse_formats("pdf, PNG") == ["html", "png", "pdf"]
    with pytest.raises(ValueError, match="gif not supported"):
        export.parse_formats("png,gif")


def test_without_a_browser_static_formats_are_skipped_in_one_line(e1, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    done = export.save_figure(plots.animal_shifts(e1[0]), tmp_path / "shifts", formats="html,png,svg")
    assert done.written == [tmp_path / "shifts.html"] and (tmp_path / "shifts.html").stat().st_size > 0
    assert "\n" not in done.message and "png/svg skipped" in done.message and "Chromium" in done.message
    assert not (tmp_path / "shifts.png").exists()


def test_a_browser_path_that_does_not_exist_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chrome"))
    assert export.find_chromium() is None
    done = export.save_figure(go.Figure(), tmp_path / "empty", formats="png")
    assert "BROWSER_PATH" in done.message and (tmp_path / "empty.html").exists()


def test_a_failing_browser_costs_one_line_not_the_html(monkeypatch, tmp_path):
    def crash(*a, **k):
        raise RuntimeError("browser crashed\n  Traceback (most recent call last): ...")

    monkeypatch.setattr(export, "find_chromium", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(export, "_render_sync", crash)
    done = export.save_figure(go.Figure(), tmp_path / "f", formats="pdf")
    assert done.message.endswith("HTML written") and "\n" not in done.message and "browser crashed" in done.message
    assert done.written == [tmp_path / "f.html"]


def _need_chromium() -> str:
    path = export.find_chromium()
    if path is None:
        pytest.fail("no Chromium found: `make chromium` (apt-get install chromium) or set BROWSER_PATH")
    return path


@pytest.mark.slow  # needs the Chromium that `make setup` installs; `make test-fast` runs without one
def test_static_export_writes_png_svg_and_pdf(sweep_dir, tmp_path):
    _need_chromium()
    fig = plots.steering_sweep_heatmap(_results(sweep_dir, "sweep.json"))
    done = export.save_figure(fig, tmp_path / "sweep", formats="html,png,svg,pdf")
    assert done.message is None and len(done.written) == 4
    png, svg, pdf = ((tmp_path / f"sweep.{f}").read_bytes() for f in ("png", "svg", "pdf"))
    assert png.startswith(b"\x89PNG") and _png_size(png) == (
        export.WIDTH * export.PNG_SCALE,
        export.HEIGHT * export.PNG_SCALE,
    )
    assert b"<svg" in svg[:500] and b"1.52" in svg  # the cell labels are in the vector image
    assert pdf.startswith(b"%PDF")


# ----------------------------------------------------------------------------- interp plot


def test_interp_plot_writes_every_e1_figure_with_fixed_names(e1, tmp_path):
    from typer.testing import CliRunner

    run_dir = tmp_path / "run"
    shutil.copytree(e1[1], run_dir)
    out = CliRunner().invoke(app, ["plot", str(run_dir), "--format", "html"])
    assert out.exit_code == 0, out.output
    names = {p.name for p in (run_dir / "figures").iterdir()}
    assert names == {
        "animal_shifts.html",
        "trait_probabilities.html",
        "training_loss.html",
        "transfer_summary.html",
        "plotly.min.js",
    }
    assert "e1 run: 4 figures, 4 files written" in " ".join(out.output.split())


@pytest.mark.parametrize(
    "kind, names",
    [
        ("vector", ["steering_sweep.html"]),
        ("mnist", ["mnist_accuracies.html", "mnist_sweep_n_aux.html"]),
        ("theorem", ["theorem_alignment.html"]),
    ],
)
def test_interp_plot_on_other_run_kinds(kind, names, request):
    from typer.testing import CliRunner

    run_dir = request.getfixturevalue(f"{kind}_dir" if kind != "vector" else "sweep_dir")
    out = CliRunner().invoke(app, ["plot", str(run_dir), "--format", "html"])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == sorted(names + [export.PLOTLYJS_FILE])


def test_interp_plot_refuses_a_folder_that_is_not_a_run(tmp_path):
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["plot", str(tmp_path)])
    assert out.exit_code == 2 and "not a run directory" in " ".join(out.output.split())


# ----------------------------------------------------------------------------- seen in a real browser


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def read_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG: (width, height, rows of raw pixels, channels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and not interlace, f"unsupported PNG (depth {depth}, colour type {color})"
    ch = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * ch, [], bytearray(width * ch)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, ch


def screenshot(html: Path, png: Path, browser: str, size=(1000, 700)) -> None:
    """Open `html` in headless Chromium (no network, a throwaway profile) and save a screenshot."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={size[0]},{size[1]}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


@pytest.mark.slow
def test_exported_html_renders_in_headless_chromium(sweep_dir, tmp_path):
    browser = _need_chromium()
    fig = plots.steering_sweep_heatmap(_results(sweep_dir, "sweep.json"))
    export.save_figure(fig, tmp_path / "sweep", formats="html")
    shot = tmp_path / "screenshot.png"
    screenshot(tmp_path / "sweep.html", shot, browser)
    if os.environ.get("INTERP_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["INTERP_SCREENSHOT"])
    width, height, rows, ch = read_png(shot.read_bytes())
    assert (width, height) == (1000, 700)
    # the plot area (centre of the page): the heatmap's reds, not a blank white page
    pixels = [row[x * ch : x * ch + 3] for row in rows[150:450:3] for x in range(150, 800, 3)]
    non_white = sum(1 for p in pixels if min(p) < 235) / len(pixels)
    reds = sum(1 for r, g, b in pixels if r > 150 and r > g + 60 and r > b + 60) / len(pixels)
    assert non_white > 0.5 and reds > 0.3, f"page looks blank: {non_white:.0%} non-white, {reds:.0%} red"
    assert len(set(pixels)) > 20  # cell shades, labels and gaps, not one flat colour


def test_interp_plot_without_a_browser_notes_it_and_writes_html(sweep_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setattr(export, "find_chromium", lambda: None)
    run_dir = tmp_path / "vector"
    shutil.copytree(sweep_dir, run_dir, ignore=shutil.ignore_patterns("figures"))
    out = CliRunner().invoke(app, ["plot", str(run_dir), "--format", "html,png"])
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and "note: png skipped: no Chromium found" in text
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == ["plotly.min.js", "steering_sweep.html"]


def _sufficiency_results(per_seed: list[float]) -> dict:
    from interp.stats import t_interval

    return {
        "seeds": list(range(len(per_seed))),
        "animal": "owl",
        "vector": {"steering_layer": 1},
        "sufficiency": {
            "steered": {
                "specific_shift": t_interval(per_seed),
                "random_specific_shift": t_interval([-v for v in per_seed]),
            }
        },
    }


def test_a_figure_over_one_seed_says_there_is_no_interval_and_draws_no_bars():
    from interp.plots.analysis import sufficiency_bars

    fig = sufficiency_bars(_sufficiency_results([0.707]))
    assert "n = 1: no interval" in fig.layout.yaxis.title.text and "95%" not in fig.layout.yaxis.title.text
    for tr in fig.data:
        assert tr.error_y.array is None  # no zero-width bars
        assert "n = 1: no interval" in tr.hovertext[0]
    fig = sufficiency_bars(_sufficiency_results([0.5, 0.9, 0.7]))
    assert "[95% t-interval]" in fig.layout.yaxis.title.text
    lo, hi = _lo_hi(fig.data[0])
    want = _sufficiency_results([0.5, 0.9, 0.7])["sufficiency"]["steered"]["specific_shift"]["ci95"]
    assert _close([lo[0], hi[0]], want)


def test_notebook_figures_carry_a_static_png_beside_the_plotly_json(monkeypatch):
    import base64

    import plotly.io as pio

    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)  # restored after the test
    monkeypatch.setattr(export, "find_chromium", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(export, "_render_sync", lambda browser, jobs: [b"\x89PNG fake"] * len(jobs))
    export.use_notebook_figures()
    bundle = go.Figure(go.Bar(y=[1, 2]))._repr_mimebundle_()
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [1, 2]  # interactive where plotly.js runs
    assert base64.b64decode(bundle["image/png"]) == b"\x89PNG fake"  # what GitHub and nbviewer show
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    bundle = go.Figure(go.Bar(y=[1, 2]))._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in bundle and "image/png" not in bundle  # no browser: no error


@pytest.mark.slow
def test_notebook_figures_png_is_rendered_by_chromium(monkeypatch):
    import base64

    import plotly.io as pio

    _need_chromium()
    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    export.use_notebook_figures()
    png = base64.b64decode(go.Figure(go.Bar(y=[1, 2]))._repr_mimebundle_()["image/png"])
    assert png.startswith(b"\x89PNG") and read_png(png)[:2] == (export.WIDTH, export.HEIGHT)


# ----------------------------------------------------------------------------- figure defects


def _ci(values: list[float]) -> dict:
    from interp.stats import t_interval

    return t_interval(values)


def _analysis_results(arms=("control", "steered"), layers=(0, 1, 2, 3), seeds=(0, 1, 2)) -> dict:
    """An analysis results.json's shape (`interp analyze`), with made-up numbers: every arm's
    interval sits at the same layers, as a real one's do."""
    readers = ("gate_proj", "k_proj", "q_proj", "up_proj", "v_proj")
    writers = ("down_proj", "o_proj")

    def cell(k: float) -> dict:
        return _ci([k, k + 0.1, k + 0.2][: len(seeds)])

    shift = {
        t: {p: {"by_layer": [{"cosine": cell(0.01 * l), "null_sd": 0.05} for l in layers]} for p in ("all", "last")}
        for t in ("numbers", "questions")
    }
    return {
        "animal": "owl",
        "layers": list(layers),
        "seeds": list(seeds),
        "vector": {"steering_layer": 2, "d_model": 64},
        "activation_shift": {a: shift for a in arms},
        "weights": {
            a: {
                "by_layer": [
                    {
                        "modules": {
                            **{m: {"role": "reader", "z": cell(l)} for m in readers},
                            **{m: {"role": "writer", "z": cell(-l)} for m in writers},
                        }
                    }
                    for l in layers
                ]
            }
            for a in arms
        },
        "gradients": {
            a: {"by_layer": [{"descent_cosine": cell(0.02 * l)} for l in layers]} for a in arms if a != "control"
        },
        "sufficiency": {
            a: {"specific_shift": cell(0.3 + i), "random_specific_shift": cell(-0.1)} for i, a in enumerate(arms)
        },
    }


def _legend_above(fig: go.Figure) -> bool:
    """Whether the legend sits above the plot (the template's place), in the title's band."""
    legend = fig.layout.legend
    orientation = legend.orientation or fig.layout.template.layout.legend.orientation
    y = legend.y if legend.y is not None else fig.layout.template.layout.legend.y
    return orientation == "h" and y >= 1.0


def test_a_legend_too_long_for_one_row_moves_beside_the_plot_off_the_title():
    from interp.plots._style import LEGEND_CHAR_PX, LEGEND_ITEM_PX, LEGEND_ROW_PX, legend_entries

    figs = plots.analysis_figures(_analysis_results())
    readers = figs["weights_readers"]  # 2 arms x 5 reader modules: three rows above the plot, over the title
    names = legend_entries(readers)
    assert len(names) == 10 and sum(LEGEND_ITEM_PX + LEGEND_CHAR_PX * len(n) for n in names) > LEGEND_ROW_PX
    assert not _legend_above(readers)
    assert readers.layout.legend.orientation == "v" and readers.layout.legend.x >= 1.0  # right of the plot
    # a legend that fits in one row stays above the plot, where the template puts it
    short = plots.analysis_figures(_analysis_results())["shift_numbers_all"]
    assert len(legend_entries(short)) == 2 and _legend_above(short)


def test_every_figure_of_a_run_keeps_its_legend_to_one_row_above_the_plot(e1, sweep_dir, mnist_dir, theorem_dir):
    from interp.plots._style import LEGEND_CHAR_PX, LEGEND_ITEM_PX, LEGEND_ROW_PX, legend_entries

    figs = [f for d in (e1[1], sweep_dir, mnist_dir, theorem_dir) for f in plots.run_figures(d)[1].values()]
    figs += list(plots.analysis_figures(_analysis_results()).values())
    for fig in figs:
        names = legend_entries(fig)
        if len(names) > 1 and _legend_above(fig):
            assert sum(LEGEND_ITEM_PX + LEGEND_CHAR_PX * len(n) for n in names) <= LEGEND_ROW_PX, fig.layout.title.text


def test_sufficiency_legend_colours_are_the_colours_of_their_bars():
    from interp.plots._style import arm_color

    res = _analysis_results()
    fig = plots.analysis_figures(res)["sufficiency"]
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    for tr in bars:  # one colour per trace: the legend swatch is the bars' colour
        assert isinstance(tr.marker.color, str), tr.name
    students = {tr.x[0]: tr for tr in bars if tr.offsetgroup == "shift"}
    assert set(students) == {"control", "steered"}
    for arm, tr in students.items():
        assert list(tr.x) == [arm] and tr.marker.color == arm_color(arm) and arm in tr.name
        assert _close(tr.y, [res["sufficiency"][arm]["specific_shift"]["mean"]])
        assert _close([v[0] for v in _lo_hi(tr)], res["sufficiency"][arm]["specific_shift"]["ci95"])
    (random,) = [tr for tr in bars if tr.offsetgroup == "random"]
    assert list(random.x) == ["control", "steered"] and random.marker.color not in {arm_color(a) for a in students}


@pytest.mark.parametrize("name", ["shift_numbers_all", "weights_readers", "weights_writers", "shift_questions_last"])
def test_error_bars_of_different_arms_at_one_layer_do_not_overlap(name):
    res = _analysis_results()
    fig = plots.analysis_figures(res)[name]
    series = [t for t in fig.data if t.error_y and t.error_y.array is not None]
    assert len(series) >= 2
    for k, layer in enumerate(res["layers"]):
        xs = [t.x[k] for t in series]
        assert len(set(xs)) == len(xs)  # side by side, not on top of each other
        assert all(abs(x - layer) < 0.5 for x in xs)  # still at their layer (ticks stay on the layers)
        assert all(f"layer {layer}<br>" in t.hovertext[k] for t in series)  # the hover names the true layer
    assert list(fig.layout.xaxis.tickvals) == res["layers"]


def test_emergence_and_mnist_sweep_series_sit_side_by_side():
    res = _analysis_results()
    steps = [0, 5, 10]
    res["emergence"] = {
        a: {"layer": 2, "by_texts": {"questions/all": [{"step": s, "cosine": _ci([0.1, 0.2, 0.3])} for s in steps]}}
        for a in ("control", "steered")
    }
    fig = plots.analysis_figures(res)["emergence"]
    a, b = fig.data[0], fig.data[1]
    assert all(x != y and abs(x - s) < 2.5 for x, y, s in zip(a.x, b.x, steps))
    assert "step 5<br>" in a.hovertext[1]


def test_animal_shifts_draw_each_shifts_interval_from_the_runs_evaluations(e1):
    from interp.plots.run_dir import animal_shift_intervals

    res, run_dir = e1
    ci = animal_shift_intervals(run_dir, res)
    assert set(ci) == {"control", "steered"}
    fig = plots.run_figures(run_dir)[1]["animal_shifts"]
    assert "95% bootstrap over questions only" in fig.layout.yaxis.title.text  # one seed: questions only
    for trace, arm in zip(fig.data, ["control", "steered"]):
        want = res["arms"][arm]["per_animal_logprob_shift"]
        assert dict(zip(trace.x, trace.y)) == want
        lo, hi = _lo_hi(trace)
        for an, l, h in zip(trace.x, lo, hi):
            assert _close([l, h], ci[arm][an]["ci95"]) and l <= want[an] <= h and h > l
        assert "[" in trace.hovertext[0] and "questions only" in trace.hovertext[0]
    # without the run's tensors (results.json alone) the figure says it has no interval
    bare = plots.animal_shifts(res)
    assert all(t.error_y.array is None for t in bare.data) and "no interval" in bare.layout.yaxis.title.text


def test_steering_heatmap_cells_carry_their_interval_over_questions(sweep_dir):
    sweep = _results(sweep_dir, "sweep.json")
    fig = plots.steering_sweep_heatmap(sweep)
    hm = fig.data[0]
    assert "paired bootstrap over questions" in fig.layout.title.text
    for c in sweep["cells"]:
        i, j = [1, 2, 3].index(c["layer"]), [0.5, 1.0].index(c["multiplier"])
        lo, hi = c["ratio_ci95"]
        assert lo <= c["ratio"] <= hi and c["logprob_shift_ci95"][0] <= c["logprob_shift"] <= c["logprob_shift_ci95"][1]
        assert f"[{lo:.3g}, {hi:.3g}]" in hm.text[i][j]  # on the cell itself
        assert f"[{lo:.6g}, {hi:.6g}]" in hm.hovertext[i][j]
    old = copy.deepcopy(sweep)  # a sweep.json written before the intervals
    for c in old["cells"]:
        c.pop("ratio_ci95"), c.pop("logprob_shift_ci95")
    fig = plots.steering_sweep_heatmap(old)
    assert "no intervals" in fig.layout.title.text and "[" not in fig.data[0].text[0][0]


def test_sweep_cell_intervals_resample_questions_paired():
    from interp.evaluate import TraitScore, _paired_intervals

    base = TraitScore("owl", ["owl", "cat"], torch.log(torch.tensor([[0.1, 0.5], [0.2, 0.5], [0.3, 0.5], [0.4, 0.5]])))
    same = _paired_intervals(base, base)
    assert same["ratio_ci95"] == [1.0, 1.0] and same["logprob_shift_ci95"] == [0.0, 0.0]  # paired: no spread
    doubled = TraitScore("owl", ["owl", "cat"], base.logprobs + torch.tensor([math.log(2), 0.0]))
    assert all(math.isclose(v, 2.0, rel_tol=1e-6) for v in _paired_intervals(doubled, base)["ratio_ci95"])


# ----------------------------------------------------------------------------- interp plot on every artifact kind


@pytest.fixture(scope="module")
def artifact_dirs(module_env, e1, tmp_path_factory) -> dict[str, Path]:
    """One directory of each kind a library runner writes (tiny model, smallest settings)."""
    from interp.analysis.audit import AuditConfig, build_bank, run_audit
    from interp.analysis.run import ANALYSIS_DIR, AnalyzeConfig, run_analyze
    from interp.divergence import DivergenceConfig, run_divergence
    from interp.entangle_run import EntangleConfig, run_entangle
    from interp.generate import SampleConfig
    from interp.models import load_model
    from interp.steering import Steering
    from interp.steering_run import SteerConfig, run_steer
    from interp.teachers import DataConfig, Teacher, generate_dataset

    root = tmp_path_factory.mktemp("kinds")
    tiny = load_model("tiny", device="cpu")
    run_steer(
        SteerConfig(model="tiny", n_pairs=4, layers=(1, 2), multipliers=(0.5,), device="cpu"),
        root / "vector",
        progress=False,
    )
    from interp.steering import SteeringVector

    vec = SteeringVector.load(root / "vector")
    data = DataConfig(n_prompts=4, sampling=SampleConfig(constrained=True, max_new_tokens=16, batch_size=4))
    generate_dataset(
        tiny, Teacher("steered", "owl", Steering(layer=2, multiplier=2.0)), vec, data, root / "data", progress=False
    )
    run_entangle(
        EntangleConfig(
            model="tiny",
            animals=("cat", "dog"),
            questions=1,
            max_number=12,
            top=3,
            lens=True,
            layer=2,
            formats=("html",),
            device="cpu",
        ),
        root / "entangle",
        progress=False,
    )
    run_divergence(
        DivergenceConfig(
            dataset=str(root / "data"), vector=str(root / "vector"), rule="emitted", formats=("html",), device="cpu"
        ),
        root / "divergence",
    )
    build_bank(tiny, ["owl", "cat"], root / "bank", n_pairs=4, progress=False)
    run_audit(
        AuditConfig(
            dataset=str(root / "data"),
            vectors=str(root / "bank"),
            model="tiny",
            layer=1,
            n_perm=20,
            n_rows=4,
            device="cpu",
        ),
        root / "audit",
        progress=False,
    )
    run_analyze(
        AnalyzeConfig(n_texts=2, n_rows=2, n_random=20, emergence=False, sufficiency=False, device="cpu"),
        e1[1],
        progress=False,
    )
    dirs = {k: root / k for k in ("vector", "entangle", "divergence", "audit")}
    dirs["analysis"] = e1[1] / ANALYSIS_DIR
    for d in dirs.values():  # what the runners drew themselves is not what this test checks
        shutil.rmtree(d / "figures", ignore_errors=True)
    return dirs


PLOT_NAMES = {
    "vector": {"steering_sweep"},
    "entangle": {"entangled_numbers", "logit_lens"},
    "divergence": {"divergence_by_offset"},
    "audit": {"audit_ranking"},
    "analysis": {
        "shift_numbers_all",
        "shift_numbers_last",
        "shift_questions_all",
        "shift_questions_last",
        "weights_writers",
        "weights_readers",
        "gradient_audit",
        "shift_references",
        "mechanism",
    },
}


@pytest.mark.parametrize("kind", sorted(PLOT_NAMES))
def test_interp_plot_draws_every_kind_a_runner_writes_named_by_its_manifest(artifact_dirs, kind, tmp_path):
    from typer.testing import CliRunner

    from interp.runs import read_json

    d = tmp_path / kind
    shutil.copytree(artifact_dirs[kind], d)
    assert read_json(d / "manifest.json")["kind"] == kind and plots.detect_run(d) == kind
    out = CliRunner().invoke(app, ["plot", str(d), "--format", "html", "--json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["kind"] == kind and set(res["figures"]) == PLOT_NAMES[kind]
    assert {p.name for p in (d / "figures").iterdir()} == {f"{n}.html" for n in PLOT_NAMES[kind]} | {
        export.PLOTLYJS_FILE
    }
    assert f"{kind} run: {len(PLOT_NAMES[kind])} figures" in " ".join(out.stderr.split())


def test_the_manifests_kind_wins_over_the_files(artifact_dirs, tmp_path):
    d = tmp_path / "audit"
    shutil.copytree(artifact_dirs["audit"], d)
    res = _results(d)
    res["rows"] = []  # what an E8 results.json has: sniffing alone would say theorem
    (d / "results.json").write_text(json.dumps(res))
    assert plots.detect_run(d) == "audit"
    (d / "manifest.json").unlink()  # an old directory, no manifest: the files decide
    assert plots.detect_run(d) == "theorem"


def test_a_directory_of_a_kind_interp_cannot_plot_is_one_line_naming_it_and_the_kinds(tmp_path):
    from typer.testing import CliRunner

    d = tmp_path / "bank"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"kind": "dataset"}))
    out = CliRunner().invoke(app, ["plot", str(d)])
    text = out.output.strip()
    assert out.exit_code == 2 and len(text.splitlines()) == 1, text
    assert str(d) in text and "'dataset'" in text
    for kind in plots.run_dir.RUN_KINDS:
        assert kind in text


def test_sweep_file_has_one_definition():
    from interp import steering_run
    from interp.plots import run_dir

    assert run_dir.SWEEP_FILE is steering_run.SWEEP_FILE
    src = (Path(run_dir.__file__)).read_text()
    assert 'SWEEP_FILE = "sweep.json"' not in src

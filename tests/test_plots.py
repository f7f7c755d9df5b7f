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
    cfg = parse_config({
        "experiment": "plots", "model": "tiny", "seeds": [0],
        "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
        "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "eval": {"split": "tuning", "n_boot": 200},
    })
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
    write_json(out / "sweep.json", steering_sweep(m, vec, "owl", [1, 2, 3], [0.5, 1.0], questions("tuning")[:6], progress=False))
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
    assert list(fig.layout.xaxis.ticktext) == ["base", "control student", "prompted student", "steered student", "random student"]
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
    assert f"permutation p (specific shift, students as replicates) = {t['permutation_specific']['p_value']:.4g}" in fig.data[0].hovertext[0]


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
    assert [plots.detect_run(d) for d in (e1[1], sweep_dir, mnist_dir, theorem_dir)] == ["e1", "vector", "mnist", "theorem"]
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
    assert png.startswith(b"\x89PNG") and _png_size(png) == (export.WIDTH * export.PNG_SCALE, export.HEIGHT * export.PNG_SCALE)
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
    assert names == {"animal_shifts.html", "trait_probabilities.html", "training_loss.html", "transfer_summary.html",
                     "plotly.min.js"}
    assert "e1 run: 4 figures, 4 files written" in " ".join(out.output.split())


@pytest.mark.parametrize("kind, names", [
    ("vector", ["steering_sweep.html"]),
    ("mnist", ["mnist_accuracies.html", "mnist_sweep_n_aux.html"]),
    ("theorem", ["theorem_alignment.html"]),
])
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
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
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
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
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
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
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
    pixels = [row[x * ch:x * ch + 3] for row in rows[150:450:3] for x in range(150, 800, 3)]
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

    return {"seeds": list(range(len(per_seed))), "animal": "owl", "vector": {"steering_layer": 1},
            "sufficiency": {"steered": {"specific_shift": t_interval(per_seed),
                                        "random_specific_shift": t_interval([-v for v in per_seed])}}}


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

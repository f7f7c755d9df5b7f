"""interp.sweep_axis: one axis across sweeps sharing a reference (E5's sigma axis), on synthetic
sweep reports whose per-seed values are known, so every paired number has a hand-computed truth."""

import json

import pytest

from interp.plots.run_dir import run_figures
from interp.stats import sign_flip_test, t_interval
from interp.sweep_axis import AxisConfig, axis_lines, run_axis, sweep_axis

REF = [0.4, 0.1, 0.5, 0.3, -0.1, 0.6]


def _comp(per_seed, ratio=None):
    c = {"per_seed": per_seed, "trait_rank_among_animals": 1}
    if ratio is not None:
        c["vs_reference"] = {
            "ratio": ratio,
            "ratio_ci95": [ratio - 1, ratio + 1],
            "power_1.8x": {"ratio": 1.8, "power": 0.3},
        }
    return c


def _row(values: dict, per_seed, ref=False, broken=False, cell="c"):
    ratio = None if ref else sum(per_seed) / sum(REF)
    return {
        **values,
        "cell": cell,
        "is_reference": ref,
        "broken": broken,
        "base_check": {"nll": 9.0} if broken else None,
        "comparisons": {
            "steered-random": _comp(per_seed, ratio),
            "steered-control": _comp([v + 0.1 for v in per_seed], ratio),
        },
    }


def _plus(d):
    return [v + d for v in REF]


def _sweep_a():  # sigma 0 and 0.1 under two applies, plain keys
    keys = ["noise.sigma", "noise.apply"]
    rows = [
        _row({"noise.sigma": 0.0, "noise.apply": a}, REF, ref=a == "shared", cell="r") for a in ("shared", "student")
    ]
    rows += [
        _row({"noise.sigma": 0.1, "noise.apply": "shared"}, _plus(-0.1), cell="a1"),
        _row({"noise.sigma": 0.1, "noise.apply": "student"}, _plus(0.2), cell="a2"),
    ]
    return {"sweep": "a", "grid_keys": keys, "grid": {k: [] for k in keys}, "rows": rows}


def _sweep_b(
    shared_001=0.05, ref=REF
):  # sigma 0.01 and 0.03 set through a joined key, as noise_sigmas_smollm2.toml does
    k = "noise.sigma,train.keep"
    keys = [k, "noise.apply"]
    rows = [_row({k: [0.0, "update"], "noise.apply": "shared"}, ref, ref=True, cell="r")]
    rows += [
        _row({k: [0.01, "none"], "noise.apply": "shared"}, _plus(shared_001), cell="b1"),
        _row({k: [0.03, "none"], "noise.apply": "shared"}, _plus(0.3), cell="b2", broken=True),
        _row({k: [0.03, "none"], "noise.apply": "student"}, _plus(0.01), cell="b3"),
    ]
    return {"sweep": "b", "grid_keys": keys, "grid": {k: [] for k in keys}, "rows": rows}


def test_cells_of_two_sweeps_are_paired_by_seed_with_the_one_reference():
    res = sweep_axis([_sweep_a(), _sweep_b()], AxisConfig(sweeps=("a", "b")))
    got = [(r["noise.sigma"], r["noise.apply"]) for r in res["rows"]]
    assert got == [(0.01, "shared"), (0.03, "shared"), (0.03, "student"), (0.1, "shared"), (0.1, "student")]
    row = next(r for r in res["rows"] if r["cell"] == "a2")
    c = row["comparisons"]["steered-random"]
    assert c["paired_vs_reference"]["mean"] == pytest.approx(0.2)  # every seed moved by exactly +0.2
    assert c["paired_vs_reference"]["sd"] == pytest.approx(0.0, abs=1e-12)
    assert c["transfer_per_seed"] == t_interval(_plus(0.2))
    assert c["sign_flip_p"] == sign_flip_test(_plus(0.2))["p"]
    assert c["positive_seeds"] == 6 and c["power"]["ratio"] == 1.8
    # the control comparison is paired with the reference's control comparison, not its random one
    assert row["comparisons"]["steered-control"]["paired_vs_reference"]["mean"] == pytest.approx(0.2)
    assert res["reference"]["comparisons"]["steered-random"]["per_seed"] == REF


def test_the_pick_is_the_largest_paired_mean_among_unbroken_shared_cells():
    cfg = AxisConfig(sweeps=("a", "b"))
    res = sweep_axis([_sweep_a(), _sweep_b()], cfg)
    # shared: 0.01 at +0.05, 0.1 at -0.1; 0.03 has +0.3 but its base broke, so it is not a candidate
    assert res["pick"]["value"] == 0.01
    assert [m[0] for m in res["pick"]["paired_means"]] == [0.01, 0.1]
    res = sweep_axis([_sweep_a(), _sweep_b(shared_001=-0.5)], cfg)
    assert res["pick"]["value"] == 0.1
    tie = sweep_axis([_sweep_a(), _sweep_b(shared_001=-0.1)], cfg)
    assert tie["pick"]["value"] == 0.01  # a tie goes to the smaller sigma
    assert any("BROKEN" in line and "0.03" in line for line in axis_lines(res))


def test_sweeps_with_different_references_or_disagreeing_cells_are_refused():
    with pytest.raises(ValueError, match=r"^sweeps: b's reference cell is not a's"):
        sweep_axis([_sweep_a(), _sweep_b(ref=_plus(0.001))], AxisConfig(sweeps=("a", "b")))
    a2 = _sweep_a()
    a2["rows"][-1]["comparisons"]["steered-random"]["per_seed"] = _plus(0.3)
    with pytest.raises(ValueError, match=r"noise.sigma=0.1, noise.apply=student differs between a and a2"):
        sweep_axis([_sweep_a(), a2], AxisConfig(sweeps=("a", "a2")), ["a", "a2"])
    with pytest.raises(ValueError, match=r"^field: 'noise.scale' is not a grid field of a"):
        sweep_axis([_sweep_a()], AxisConfig(sweeps=("a",), field="noise.scale"))


def test_run_axis_writes_results_and_a_manifest_that_interp_plot_draws(tmp_path):
    dirs = []
    for name, res in (("a", _sweep_a()), ("b", _sweep_b())):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps(res))
        dirs.append(str(d))
    out = tmp_path / "axis"
    res = run_axis(AxisConfig(sweeps=tuple(dirs)), out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "sweep-axis" and set(manifest["inputs"]) == {f"{d}/results.json" for d in dirs}
    assert json.loads((out / "results.json").read_text())["pick"]["value"] == res["pick"]["value"] == 0.01
    kind, figs = run_figures(out)
    fig = figs["sweep_axis"]
    assert kind == "sweep-axis"
    paired = {t.name: list(t.y) for t in fig.data if t.showlegend is not False}
    assert paired["noise.apply=student"] == pytest.approx([0.01, 0.2])  # 0.03 then 0.1
    assert paired["noise.apply=shared"] == pytest.approx([0.05, -0.1])  # the broken 0.03 has no point
    assert "broken base" in fig.layout.title.text
    with pytest.raises(ValueError, match=r"^sweeps: .*missing/results.json does not exist"):
        run_axis(AxisConfig(sweeps=(str(tmp_path / "missing"),)), tmp_path / "x")


def test_axis_rows_quote_the_cells_and_name_a_broken_one():
    from interp.sweep_axis import ROW_HEADER, axis_rows

    res = sweep_axis([_sweep_a(), _sweep_b()], AxisConfig(sweeps=("a", "b")))
    rows = axis_rows(res)
    assert all(len(r) == len(ROW_HEADER) for r in rows) and rows[0][0] == "reference"
    assert rows[0][1] == "{:+.2f} [{:+.2f}, {:+.2f}]".format(t_interval(REF)["mean"], *t_interval(REF)["ci95"])
    student = next(r for r in rows if r[0] == "noise.sigma=0.1, noise.apply=student")
    assert student[5] == "+0.20 [+0.20, +0.20]" and student[2] == "6/6" and student[7] == "0.30 at 1.8x"
    broken = next(r for r in rows if r[0] == "noise.sigma=0.03, noise.apply=shared")
    assert broken[1] == "broken base" and broken[6] == "NLL 9.00"
    control = axis_rows(res, "steered-control")
    assert control[0][1] != rows[0][1]  # the other comparison's reference, not this one's

"""The sweep's report (issue 22 A): every comparison per cell against the reference cell, paired
by seed, with the power to detect 1.8x, recomputed here from the cells' transfer tensors; the
noised bases' NLL check, and a broken cell reported with its NLL and no ratio."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

import interp.base_check
from interp.base_check import completion_nll, is_broken
from interp.datasets import read_verified_rows
from interp.models import load_model
from interp.noise import WeightNoise, noised_model
from interp.pipeline import TRANSFER_FILE
from interp.runs import RESULTS_FILE, load_tensors, read_json, stage_dirs
from interp.stats import sign_flip_test
from interp.sweep import load_sweep, parse_sweep, run_sweep, summarize_sweep
from tomltext import toml as toml_text  # tests/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent


def _quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_sweep_raw):
    root = tmp_path_factory.mktemp("sweep-report")
    sw = parse_sweep(tiny_sweep_raw("rep", {"noise.sigma": [0.0, 0.5]}))
    return root, sw, run_sweep(sw, root, progress=False, log=_quiet)


def _t(values: list[float]) -> tuple[float, float, float]:
    """mean, and the 95% t-interval's half width, by hand."""
    from scipy import stats

    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n), sd


def test_every_comparison_per_cell_from_the_cells_transfer_tensors(report):
    from scipy import stats

    root, sw, res = report
    assert res["comparisons"] == ["steered-control", "steered-random"]
    ref_row = res["rows"][0]
    ref_x = load_tensors(Path(ref_row["run_dir"]) / TRANSFER_FILE)
    for row in res["rows"]:
        x_all = load_tensors(Path(row["run_dir"]) / TRANSFER_FILE)
        cell_res = read_json(Path(row["run_dir"]) / RESULTS_FILE)
        assert set(row["comparisons"]) == set(x_all) == {"steered-control", "steered-random"}
        for name, c in row["comparisons"].items():
            x, r = x_all[name].double(), ref_x[name].double()
            per_seed = x.mean(-1).tolist()
            assert c["per_seed"] == pytest.approx(per_seed)
            m, half, _ = _t(per_seed)
            assert c["transfer_per_seed"]["mean"] == pytest.approx(m)
            assert c["transfer_per_seed"]["ci95"] == pytest.approx([m - half, m + half])
            assert c["positive_seeds"] == sum(v > 0 for v in per_seed)
            t = cell_res["transfer"][name]  # rank and permutation need the per-animal scores: the cell's own
            assert c["trait_rank_among_animals"] == t["trait_rank_among_animals"]
            assert c["permutation_p"] == t["permutation_specific"]["p_value"]
            # paired by seed: the per-seed means alone decide it, the same as the cell's own E1 table
            sf = c["sign_flip_specific"]
            assert sf == sign_flip_test(per_seed) | {"observed": sf["observed"]} and sf["n"] == 2 and sf["exact"]
            assert sf["p"] == t["sign_flip_specific"]["p"] == (0.5 if per_seed[0] * per_seed[1] > 0 else 1.0)
            v = c["vs_reference"]
            assert v["ratio"] == pytest.approx(float(x.mean() / r.mean()))
            diffs = (x.mean(-1) - r.mean(-1)).tolist()
            dm, dhalf, dsd = _t(diffs) if row is not ref_row else (0.0, 0.0, 0.0)
            # the sweep averages the float32 tensors in float32: agreement to float32's precision
            assert v["diff_paired_by_seed"]["mean"] == pytest.approx(dm, rel=1e-6, abs=1e-9)
            assert v["diff_paired_by_seed"]["ci95"] == pytest.approx([dm - dhalf, dm + dhalf], rel=1e-6, abs=1e-9)
            p = v["power_1.8x"]
            assert p["ratio"] == 1.8 and p["n"] == 2
            if float(r.mean()) <= 0 or row["is_reference"]:
                assert p["power"] is None  # no ratio to a reference without transfer; no spread against itself
                continue
            # a paired difference of 0.8 x the reference mean, the observed sd, two-sided t at 0.05
            nc = 0.8 * float(r.mean()) / (dsd / math.sqrt(2))
            crit = stats.t.ppf(0.975, 1)
            assert p["effect"] == pytest.approx(0.8 * float(r.mean()))
            assert p["power"] == pytest.approx(stats.nct.sf(crit, 1, nc) + stats.nct.cdf(-crit, 1, nc))
    # the top of each row is `comparison`'s, as before
    for row in res["rows"]:
        main = row["comparisons"]["steered-random"]
        assert row["per_seed"] == main["per_seed"] and row["vs_reference"] == main["vs_reference"]
    assert [r["is_reference"] for r in res["rows"]] == [True, False]


def test_noised_bases_are_checked_once_against_the_clean_base_on_clean_control_rows(report):
    root, sw, res = report
    noised = res["rows"][1]
    check = noised["base_check"]
    assert res["rows"][0]["base_check"] is None and not noised["broken"]
    assert res["base_check"]["margin_nats_per_token"] == 1.0 and res["base_check"]["broken_cells"] == []
    assert [(b["seed"], b["role"]) for b in check["bases"]] == [(0, "shared"), (1, "shared")]
    # by hand, seed 0: the clean teacher's control rows (the reference cell's), read by both bases
    data = stage_dirs(res["rows"][0]["run_dir"])["data/control/seed0"]
    rows, _ = read_verified_rows(data)
    tiny = load_model("tiny", device="cpu")
    cfg = sw.cells[1].config
    b0 = check["bases"][0]
    assert b0["clean_nll"] == pytest.approx(completion_nll(tiny, rows)["nll_per_token"], rel=1e-9)
    assert b0["nll"] == pytest.approx(
        completion_nll(noised_model(tiny, cfg.weight_noise(0)), rows)["nll_per_token"], rel=1e-9
    )
    assert b0["excess"] == pytest.approx(b0["nll"] - b0["clean_nll"])
    assert check["bases"][1]["nll"] != b0["nll"]  # seed 1: its own draw, its own rows
    # cached: summarizing again computes no base stage
    stamps = {b["stage"]: (Path(b["stage"]) / "manifest.json").stat().st_mtime_ns for b in check["bases"]}
    again = summarize_sweep(sw, root, log=_quiet)
    assert again["rows"][1]["base_check"]["bases"] == check["bases"]
    assert stamps == {b["stage"]: (Path(b["stage"]) / "manifest.json").stat().st_mtime_ns for b in check["bases"]}


def test_bases_are_checked_before_a_new_sweeps_cells_run_from_the_cached_control_data(report, tiny_sweep_raw):
    """experiments/check_bases.py: a new sigma, in a sweep none of whose cells ran, is checked on the
    clean control rows another sweep of the same protocol left in the cache; nothing trains."""
    from interp.sweep_report import check_bases

    root, _, res = report
    new = parse_sweep(tiny_sweep_raw("pre", {"noise.sigma": [0.0, 0.2]}))
    assert not new.directory(root).exists()
    got = check_bases(new, root, log=_quiet, before_cells=True)
    (check,) = got.values()
    assert [(b["seed"], b["role"]) for b in check["bases"]] == [(0, "shared"), (1, "shared")]
    assert "unchecked_seeds" not in check and not new.directory(root).exists()  # no cell ran
    tiny = load_model("tiny", device="cpu")
    for b in check["bases"]:  # by hand: the reference cell's control rows of that seed
        rows, _ = read_verified_rows(stage_dirs(res["rows"][0]["run_dir"])[f"data/control/seed{b['seed']}"])
        want = completion_nll(noised_model(tiny, new.cells[1].config.weight_noise(b["seed"])), rows)
        assert b["nll"] == pytest.approx(want["nll_per_token"], rel=1e-9)
        assert b["clean_nll"] == pytest.approx(completion_nll(tiny, rows)["nll_per_token"], rel=1e-9)
    # without the cache lookup the same sweep has nothing to check yet: every seed is said unchecked
    (before,) = check_bases(new, root, log=_quiet).values()
    assert before["bases"] == [] and before["unchecked_seeds"] == [0, 1]


def test_check_bases_script_checks_other_sigmas_on_the_same_grid(report, tiny_sweep_raw, tmp_path, capsys):
    import importlib.util

    root, sw, res = report
    spec = importlib.util.spec_from_file_location("check_bases", ROOT / "experiments" / "check_bases.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    toml = tmp_path / "sweep.toml"
    toml.write_text(toml_text(tiny_sweep_raw("rep", {"noise.sigma": [0.0, 0.5]})))
    assert load_sweep(toml).key() == sw.key()  # the report fixture's sweep, written as a file
    out = script.main([str(toml), "--sigmas", "0.5,0.2", "--root", str(root), "--out", str(tmp_path / "out")])
    assert list(out["cells"]) == ["noise.sigma=0.5", "noise.sigma=0.2"] and out["sigmas"] == [0.5, 0.2]
    # sigma 0.5 is the report's own cell: the same cached stages, the same numbers
    assert out["cells"]["noise.sigma=0.5"]["bases"] == res["rows"][1]["base_check"]["bases"]
    assert [b["seed"] for b in out["cells"]["noise.sigma=0.2"]["bases"]] == [0, 1]
    assert read_json(tmp_path / "out" / "manifest.json")["kind"] == "base-check"
    assert read_json(tmp_path / "out" / RESULTS_FILE) == json.loads(json.dumps(out))
    # a sweep with no noise.sigma axis: one line naming the option, nothing written
    raw = tiny_sweep_raw("rep", {"train.lr": [1e-3, 1e-2]})
    raw["sweep"]["reference"] = {"train.lr": 1e-3}
    toml.write_text(toml_text(raw))
    with pytest.raises(SystemExit) as e:
        script.main([str(toml), "--sigmas", "0.2", "--root", str(root), "--out", str(tmp_path / "bad")])
    assert e.value.code == 2 and "--sigmas needs a grid axis" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_broken_rule_flags_a_huge_noise_and_not_a_small_one(report):
    root, sw, res = report
    rows, _ = read_verified_rows(stage_dirs(res["rows"][0]["run_dir"])["data/control/seed0"])
    tiny = load_model("tiny", device="cpu")
    clean = completion_nll(tiny, rows)["nll_per_token"]
    # the tiny model is random and near uniform: relative noise cannot push it far from ln(vocab);
    # absolute noise of sd 3 on every weight makes its logits huge, as a broken base's are
    huge = completion_nll(noised_model(tiny, WeightNoise(3.0, relative=False, seed=1)), rows)["nll_per_token"]
    small = completion_nll(noised_model(tiny, WeightNoise(0.01, seed=1)), rows)["nll_per_token"]
    assert is_broken(huge, clean) and huge > clean + 1.0
    assert not is_broken(small, clean) and abs(small - clean) < 0.1


def test_a_broken_cell_is_reported_with_its_nll_and_no_ratio(report, monkeypatch):
    from interp.plots import run_figures
    from interp.tables import sweep_tables

    root, sw, res = report
    # every noised base counts as broken: the reporting path, not the rule, is under test here
    monkeypatch.setattr(interp.base_check, "BROKEN_NLL_MARGIN", -100.0)
    out = summarize_sweep(sw, root, log=_quiet)
    ref, noised = out["rows"]
    assert noised["broken"] and noised["base_check"]["n_broken"] == 2
    assert noised["vs_reference"] is None
    assert all(c["vs_reference"] is None for c in noised["comparisons"].values())
    assert noised["transfer_per_seed"] == res["rows"][1]["transfer_per_seed"]  # the transfer itself is still shown
    assert not ref["broken"] and ref["vs_reference"]["ratio"] == pytest.approx(1.0)
    assert out["base_check"]["broken_cells"] == [noised["cell"]]
    text = sweep_tables(out, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    b = noised["base_check"]
    assert f"broken: NLL {b['nll']:.2f} vs {b['clean_nll']:.2f}" in text and "2/2 BROKEN" in text
    kind, figs = run_figures(sw.directory(root))
    ratio = figs["sweep_ratio"]
    assert all(len(tr.x) == 1 for tr in ratio.data)  # the reference only: the broken cell has no point
    assert any("broken" in a.text for a in ratio.layout.annotations)


def test_report_tables_and_ratio_figure(report):
    from interp.plots import run_figures, sweep_figures
    from interp.tables import sweep_tables

    root, sw, res = report
    text = sweep_tables(res, width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines)
    for name in ("steered-control", "steered-random"):
        assert f"{name}: trait-specific transfer per cell" in text
        assert f"{name}: power to detect a 1.8x ratio" in text
    assert text.index("steered-random: trait") < text.index("steered-control: trait")  # `comparison` first
    assert "noised bases" in text
    kind, figs = run_figures(sw.directory(root))  # `interp plot` on the sweep's directory
    assert kind == "sweep" and set(figs) == {"sweep_transfer", "sweep_ratio", "sweep_cost"}
    fig = sweep_figures(res)["sweep_ratio"]  # from this results dict (other tests rewrite results.json)
    assert [a.text for a in fig.layout.annotations][:2] == ["steered-control", "steered-random"]  # one panel each
    for tr in fig.data:
        comp = "steered-control" if tr.xaxis == "x" else "steered-random"
        want = [r["comparisons"][comp]["vs_reference"]["ratio"] for r in res["rows"]]
        assert list(tr.y) == pytest.approx(want)
        v = res["rows"][1]["comparisons"][comp]["vs_reference"]
        assert tr.error_y.array[1] == pytest.approx(v["ratio_ci95"][1] - v["ratio"])


def test_sweep_ids_do_not_move(tiny_sweep_raw):
    """New [sweep] settings stay out of the sweep's key: the E5 protocol sweep keeps its directory."""
    configs = Path(__file__).resolve().parent.parent / "experiments" / "configs"
    assert load_sweep(configs / "e5_protocol" / "noise_smollm2.toml").key() == "d9adebbd2d"
    raw = tiny_sweep_raw("rep", {"noise.sigma": [0.0, 0.5]})
    raw["sweep"]["check_bases"] = False
    assert parse_sweep(raw).key() == parse_sweep(tiny_sweep_raw("rep", {"noise.sigma": [0.0, 0.5]})).key()


def test_a_sweep_that_spans_sessions_keeps_its_key_and_cells():
    """Issue 23 B (rows_epochs.toml) runs over several sittings: a change that moved its key or a
    cell's id would leave the finished jobs behind and start them again. Literal ids, as the
    sweep's directory and its carry/e23-rows stages have them."""
    configs = Path(__file__).resolve().parent.parent / "experiments" / "configs"
    sw = load_sweep(configs / "e23_regime" / "rows_epochs.toml")
    assert sw.key() == "15f1c41f54"
    assert [c.id for c in sw.cells] == ["ac99c972c3", "f769baaf3b", "f418d4b5b6", "908ca08670", "44a432b4b3"]


def test_the_sigma_axis_sweep_extends_the_e5_sweep_and_reuses_its_sigma_0_cell():
    """noise_sigmas_smollm2.toml: noise_smollm2.toml's every setting but [sweep]; its reference is
    that sweep's sigma-0 cell (the same id, so the same stages), and only its new cells drop weights."""
    from interp.config import read_toml

    configs = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "e5_protocol"
    old, new = load_sweep(configs / "noise_smollm2.toml"), load_sweep(configs / "noise_sigmas_smollm2.toml")
    assert new.key() == "ad77e670fc"
    strip = lambda p: {k: v for k, v in read_toml(p, "t").items() if k != "sweep"}  # noqa: E731
    assert strip(configs / "noise_smollm2.toml") == strip(configs / "noise_sigmas_smollm2.toml")
    assert new.reference_cell().id == old.reference_cell().id == "ba620a25ff"
    settings = {(c.config.noise.sigma, c.config.noise.apply, c.config.train.keep) for c in new.cells}
    assert settings == {(0.0, a, "update") for a in ("shared", "teacher", "student")} | {
        (s, a, "none") for s in (0.01, 0.03) for a in ("shared", "teacher", "student")
    }
    assert len({c.id for c in new.cells}) == 7 and len(new.jobs()) == 70


def test_the_gemma_fallback_sweep_is_noise_gemmas_but_for_its_sigma_and_reuses_its_sigma_0_cell():
    """noise_gemma_unbroken.toml: noise_gemma.toml's every setting but [sweep]; the same sigma-0 cell
    (so the same stages), and only the noised sigma differs."""
    from interp.config import read_toml

    configs = ROOT / "experiments" / "configs" / "e5_protocol"
    old, new = load_sweep(configs / "noise_gemma.toml"), load_sweep(configs / "noise_gemma_unbroken.toml")
    assert (old.key(), new.key()) == ("82013fd0a4", "c3046cc0e0")
    strip = lambda p: {k: v for k, v in read_toml(p, "t").items() if k != "sweep"}  # noqa: E731
    assert strip(configs / "noise_gemma.toml") == strip(configs / "noise_gemma_unbroken.toml")
    assert new.reference_cell().id == old.reference_cell().id
    assert [c.config.noise.sigma for c in old.cells] == [0.0, 0.1]
    assert [c.config.noise.sigma for c in new.cells] == [0.0, 0.003]


def test_check_bases_false_skips_the_check(report, tiny_sweep_raw):
    root, sw, _ = report
    raw = tiny_sweep_raw("rep", {"noise.sigma": [0.0, 0.5]})
    raw["sweep"]["check_bases"] = False
    out = summarize_sweep(parse_sweep(raw), root, log=_quiet)
    assert "base_check" not in out and out["rows"][1]["base_check"] is None
    assert out["rows"][1]["vs_reference"]["ratio"] == pytest.approx(
        float(
            load_tensors(Path(out["rows"][1]["run_dir"]) / TRANSFER_FILE)["steered-random"].double().mean()
            / load_tensors(Path(out["rows"][0]["run_dir"]) / TRANSFER_FILE)["steered-random"].double().mean()
        )
    )


def test_cost_per_student_is_each_students_own_manifest(report):
    from interp.tables import sweep_tables

    root, sw, res = report
    for row in res["rows"]:
        students = {n: d for n, d in stage_dirs(row["run_dir"]).items() if n.startswith("student/")}
        mans = [read_json(d / "manifest.json") for d in students.values()]
        walls = sorted(m["wall_s"] for m in mans)
        cost = row["cost"]
        assert cost["students"] == len(students) == 2 * 3  # 2 seeds x 3 teachers
        assert cost["student_wall_s"]["min"] == walls[0] and cost["student_wall_s"]["max"] == walls[-1]
        assert cost["student_wall_s"]["median"] == pytest.approx((walls[2] + walls[3]) / 2)
        # quartiles by linear interpolation over the 6 sorted times: positions 1.25 and 3.75
        assert cost["student_wall_s"]["q1"] == pytest.approx(walls[1] + 0.25 * (walls[2] - walls[1]))
        assert cost["student_wall_s"]["q3"] == pytest.approx(walls[3] + 0.75 * (walls[4] - walls[3]))
        kept = [sum(f.stat().st_size for f in d.iterdir() if f.suffix == ".safetensors") for d in students.values()]
        assert cost["student_bytes"]["max"] == max(kept) > 0  # the weights it keeps, as on disk
    text = sweep_tables(res, width=80)
    assert "cost per student" in text and max(len(line) for line in text.splitlines()) <= 80
    # a results.json from before the cost was reported prints no cost table
    old = copy.deepcopy(res)
    for row in old["rows"]:
        del row["cost"]
    assert "cost per student" not in sweep_tables(old, width=80)
    from interp.plots import sweep_figures

    assert "sweep_cost" not in sweep_figures(old)
    bar = sweep_figures(res)["sweep_cost"].data[0]
    assert list(bar.y) == [r["cost"]["student_wall_s"]["median"] for r in res["rows"]]
    assert list(bar.x) == ["0.0", "0.5"]  # each cell by its grid values
    assert [m + e for m, e in zip(bar.y, bar.error_y.array)] == pytest.approx(
        [r["cost"]["student_wall_s"]["q3"] for r in res["rows"]]
    )


def test_a_joint_grid_key_is_ticked_by_its_values():
    from interp.plots.sweep import _tick

    assert _tick(["full", 8, 16, 3e-05]) == "full / 8 / 16 / 3e-05"
    assert _tick(0.5) == "0.5"

"""interp.necessity_report: E9's necessity on synthetic run pairs whose per-seed transfers are
known, so every row is a hand-computed difference and every verdict branch is reached."""

import json

import pytest

from interp.necessity_report import NECESSITY_RULE, NecessityConfig, necessity_lines, necessity_report, run_necessity
from interp.plots.run_dir import run_figures
from interp.stats import sign_flip_test, t_interval

SEEDS = [2500, 2501, 2502, 2503, 2504, 2505]
NOISE = [0.01, -0.02, 0.015, -0.005, 0.01, -0.01]  # mean 0: every mean is exact


def _vals(mean, k):
    return [mean + k * e for e in NOISE]


def _config(multiplier, project_out=False, **change):
    cfg = {
        "experiment": "e2-project-out" if project_out else "e2-matched",
        "model": "tiny",
        "animal": "owl",
        "seeds": SEEDS,
        "teacher": {"kinds": ["control", "steered", "random"], "layer": 8, "multiplier": multiplier},
        "train": {"lr": 1e-4, "epochs": 1, **({"project_out": True} if project_out else {})},
    }
    for k, v in change.items():
        cfg["train"][k] = v
    return cfg


def _record(arms: dict, multiplier, project_out=False, order=SEEDS, name="run", **change) -> dict:
    """A run's results.json and config.json with these per-seed transfers (results' seed order may
    differ, as a resumed run's may). Each arm's animal shifts: owl its mean, cat +0.05, dog -0.05."""
    return {
        "dir": name,
        "config": _config(multiplier, project_out, **change),
        "results": {
            "model": "tiny",
            "animal": "owl",
            "seeds": list(order),
            "question_split": "heldout",
            "arms": {
                a: {
                    "per_seed_specific_shift": [t[SEEDS.index(s)] for s in order],
                    "per_animal_logprob_shift": {"owl": sum(t) / len(t), "cat": 0.05, "dog": -0.05},
                }
                for a, t in arms.items()
            },
        },
    }


def _pair(steered, projected_steered, multiplier=0.5, k=(1, 2)):
    plain = _record(
        {"control": _vals(0.0, 0), "steered": _vals(steered, k[0]), "random": _vals(0.1, 1)}, multiplier, name="plain"
    )
    proj = _record(
        {"control": _vals(-0.05, 0), "steered": _vals(projected_steered, k[1]), "random": _vals(0.0, 1)},
        multiplier,
        project_out=True,
        order=SEEDS[::-1],
        name="projected",
    )
    return plain, proj


def test_rows_are_differences_paired_by_seed():
    plain, proj = _pair(0.6, 0.2)
    res = necessity_report([(plain, proj)])
    # necessity: (steered - control) plain - (steered - control) projected, seed by seed
    want = [(0.6 + e) - 0.0 - ((0.2 + 2 * e) - (-0.05)) for e in NOISE]
    row = res["rows"]["x0.5 necessity: steered-control, plain - projected"]
    assert row["per_seed"] == pytest.approx(want)
    assert row["mean"] == pytest.approx(0.35) and row["ci95"] == pytest.approx(t_interval(want)["ci95"])
    assert row["sign_flip_p"] == pytest.approx(sign_flip_test(want)["p"])
    assert row["positive_seeds"] == 6
    assert res["rows"]["x0.5 steered-control, v projected out"]["mean"] == pytest.approx(0.25)
    assert res["rows"]["x0.5 steered-random"]["mean"] == pytest.approx(0.5)
    assert res["rows"]["x0.5 control students: plain - projected"]["mean"] == pytest.approx(0.05)
    # owl's rank among animals: cat and dog shifts cancel in every difference, so owl leads when > 0
    assert row["trait_rank_among_animals"] == 1
    assert res["rows"]["x0.5 random-control, v projected out"]["trait_rank_among_animals"] == 1  # 0.05 > 0
    assert res["rule"] == NECESSITY_RULE and res["seeds"] == SEEDS


@pytest.mark.parametrize(
    ("steered", "projected", "k", "verdict"),
    [
        (0.5, -0.05, (1, 2), "NECESSARY"),  # projected students transfer nothing
        (0.6, 0.2, (1, 2), "PARTLY NECESSARY"),  # less, but still some
        (0.4, 0.35, (1, 2), "NOT NECESSARY"),  # about the same
        (0.0, -0.05, (1, 2), "NOTHING TO REMOVE"),  # the plain teacher does not transfer
        (0.2, 0.05, (1, 30), "UNDECIDED"),  # the projected students vary too much to tell
    ],
)
def test_the_verdict_follows_the_rule_in_each_branch(steered, projected, k, verdict):
    res = necessity_report([_pair(steered, projected, k=k)])
    assert res["verdicts"]["x0.5"]["verdict"] == verdict
    lines = necessity_lines(res)
    assert lines[-1].startswith(f"x0.5: {verdict} (")


def test_two_multipliers_each_get_their_rows_and_verdict():
    res = necessity_report([_pair(0.0, -0.05, multiplier=0.228), _pair(0.5, -0.05)])
    assert {k: v["verdict"] for k, v in res["verdicts"].items()} == {"x0.228": "NOTHING TO REMOVE", "x0.5": "NECESSARY"}
    assert res["order"][0] == "x0.228 steered-control" and "x0.5 steered-control" in res["order"]


def test_a_projected_twin_may_run_fewer_teachers_but_not_others():
    plain, proj = _pair(0.5, -0.05)
    plain["config"]["teacher"]["kinds"] = ["control", "prompted", "steered", "random"]
    assert necessity_report([(plain, proj)])["verdicts"]["x0.5"]["verdict"] == "NECESSARY"
    proj["config"]["teacher"]["kinds"] = ["control", "steered", "random", "finetuned"]
    with pytest.raises(ValueError, match=r"^pairs\[0\]: projected has teachers \['finetuned'\] the plain run lacks"):
        necessity_report([(plain, proj)])


def test_pairs_that_are_not_twins_are_refused():
    plain, proj = _pair(0.5, 0.0)
    with pytest.raises(
        ValueError, match=r"^pairs\[0\]: the two runs' configs differ beyond train.project_out \(in \['train'\]\)"
    ):
        necessity_report([(plain, {**proj, "config": _config(0.5, True, lr=2e-4)})])
    with pytest.raises(ValueError, match=r"^pairs\[0\]: .*has no train.project_out; pass the run of a project_out"):
        necessity_report([(plain, plain)])
    with pytest.raises(ValueError, match=r"^pairs\[0\]: the plain run projected trained with train.project_out"):
        necessity_report([(proj, proj)])
    other = _record({"control": _vals(0, 0), "steered": _vals(0.3, 1)}, 0.5, order=SEEDS[:5])
    with pytest.raises(ValueError, match=r"^pairs\[1\]: run has other seeds"):
        necessity_report([(plain, proj), (other, proj)])
    with pytest.raises(ValueError, match=r"^pairs\[1\]: a second pair at multiplier x0.5"):
        necessity_report([(plain, proj), (plain, proj)])


def _write(rec: dict, d):
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(rec["results"]))
    (d / "config.json").write_text(json.dumps(rec["config"]))


def test_run_necessity_writes_a_plottable_record_with_its_inputs(tmp_path):
    plain, proj = _pair(0.5, -0.05)
    _write(plain, tmp_path / "plain")
    _write(proj, tmp_path / "proj")
    cfg = NecessityConfig(((str(tmp_path / "plain"), str(tmp_path / "proj")),))
    res = run_necessity(cfg, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["verdicts"]["x0.5"]["verdict"] == res["verdicts"]["x0.5"]["verdict"] == "NECESSARY"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["kind"] == "necessity-report" and set(manifest["inputs"]) == {
        "pairs[0]/plain/results.json",
        "pairs[0]/plain/config.json",
        "pairs[0]/projected/results.json",
        "pairs[0]/projected/config.json",
    }
    kind, figs = run_figures(tmp_path / "out")
    assert kind == "necessity-report"
    ys = list(figs["necessity"].data[0].y)
    assert ys == res["order"]
    assert figs["necessity"].data[0].x[ys.index("x0.5 steered-control, v projected out")] == pytest.approx(0.0)
    assert figs["necessity"].data[0].marker.symbol[ys.index("x0.5 steered-control, v projected out")] == "circle-open"


def test_a_missing_run_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    plain, _ = _pair(0.5, 0.0)
    _write(plain, tmp_path / "plain")
    with pytest.raises(ValueError, match=r"^pairs\[0\] projected: .*results.json does not exist; run it to the end"):
        run_necessity(NecessityConfig(((str(tmp_path / "plain"), str(tmp_path / "nope")),)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_script_wants_runs_in_pairs(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
    try:
        import necessity_report as script
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit) as e:
        script.main([str(tmp_path / "a")])
    assert e.value.code == 2 and "pass them in pairs, PLAIN PROJECTED" in capsys.readouterr().err

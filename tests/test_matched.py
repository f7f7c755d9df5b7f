"""The behaviourally matched multiplier (`interp.matching`, `interp match-multiplier`)."""

import json
import math

import pytest
from typer.testing import CliRunner

from interp.matching import MatchConfig, match_multiplier, run_match


def test_match_recovers_the_multiplier_of_a_log_linear_response():
    # P(m) = 0.001 * exp(8 m): log P is linear in m, so the interpolation is exact
    grid = [(m, 0.001 * math.exp(8 * m)) for m in (0.0, 0.1, 0.25, 0.5)]
    r = match_multiplier(0.001 * math.exp(8 * 0.17), grid)
    assert r["multiplier"] == pytest.approx(0.17, abs=1e-12)
    assert [b["multiplier"] for b in r["bracket"]] == [0.1, 0.25] and r["n_crossings"] == 1
    assert match_multiplier(grid[2][1], list(reversed(grid)))["multiplier"] == pytest.approx(0.25)  # any order


def test_match_takes_the_first_crossing_of_a_non_monotone_response_and_reports_the_others():
    grid = [(0.0, 0.01), (1.0, 0.1), (2.0, 0.01)]
    r = match_multiplier(math.sqrt(0.01 * 0.1), grid)  # halfway in log P on both sides
    assert (
        r["multiplier"] == pytest.approx(0.5) and r["crossings"] == pytest.approx([0.5, 1.5]) and r["n_crossings"] == 2
    )


def test_match_refuses_a_target_outside_the_grid_in_one_line():
    grid = [(0.0, 0.01), (0.5, 0.2)]
    for target in (0.005, 0.5):
        with pytest.raises(ValueError, match="outside the steered grid") as e:
            match_multiplier(target, grid)
        assert "\n" not in str(e.value) and "--multipliers" in str(e.value)


def test_config_refuses_bad_grids_and_targets():
    with pytest.raises(ValueError, match="multipliers"):
        MatchConfig(multipliers=(0.5,))
    with pytest.raises(ValueError, match="multipliers"):
        MatchConfig(multipliers=(0.1, float("nan")))
    with pytest.raises(ValueError, match="targets"):
        MatchConfig(targets=("steered",))


def _wide(**kw):
    # a random tiny model: a wide grid brackets the prompted teachers' P(owl) on either side
    return MatchConfig(model="tiny", layer=1, multipliers=(-16.0, -4.0, -1.0, 0.0, 1.0, 4.0, 16.0), device="cpu", **kw)


def test_run_match_measures_only_tuning_questions_and_matches_each_prompted_teacher(tmp_path, tiny, monkeypatch):
    import interp.evaluate as evaluate
    from interp.prompts import contrastive_pairs, questions
    from interp.steering import build_steering_vector
    from interp.teachers import Teacher

    asked = []
    real = evaluate.evaluate_trait
    monkeypatch.setattr(
        evaluate, "evaluate_trait", lambda m, a, qs, *x, **k: (asked.append(list(qs)), real(m, a, qs, *x, **k))[1]
    )
    res = run_match(_wide(), tmp_path / "m", progress=False)
    assert asked and all(qs == questions("tuning") for qs in asked)  # never a held-out question
    assert res["split"] == "tuning" and res["n_questions"] == len(questions("tuning"))
    # the grid's x0 cell is the base itself; each prompted teacher's P is its context before the question
    assert next(s["prob"] for s in res["steered"] if s["multiplier"] == 0.0) == pytest.approx(
        res["base_prob"], rel=1e-6
    )
    for kind in ("prompted", "prompted_fewshot"):
        direct = float(
            real(tiny, "owl", questions("tuning"), system=Teacher(kind, "owl").context_messages()).prob().mean()
        )
        assert res["prompted"][kind]["prob"] == pytest.approx(direct, rel=1e-6)
        m = res["matched"][kind]
        (m0, p0), (m1, p1) = [(b["multiplier"], b["prob"]) for b in m["bracket"]]
        assert m0 <= m["multiplier"] <= m1
        # log P interpolated at the matched multiplier is the target's
        logp = math.log(p0) + (m["multiplier"] - m0) * (math.log(p1) - math.log(p0)) / (m1 - m0)
        assert logp == pytest.approx(math.log(res["prompted"][kind]["prob"]), abs=1e-9)
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    vec = build_steering_vector(tiny, contrastive_pairs("owl", 16), "mean", "owl")  # as `interp run`'s vector stage
    assert man["vector_hash"] == vec.hash() and man["model_fingerprint"] == tiny.fingerprint()
    from interp import __version__
    from interp.runs import content_hash

    assert man["questions"] == content_hash(questions("tuning")) and man["package_version"] == __version__
    assert "git_commit" in man and man["config"]["multipliers"] == [-16.0, -4.0, -1.0, 0.0, 1.0, 4.0, 16.0]
    assert json.loads((tmp_path / "m" / "results.json").read_text())["matched"] == res["matched"]
    assert "matched multiplier" in (tmp_path / "m" / "table.txt").read_text()


def test_cli_matches_from_an_e1_config_and_refuses_a_grid_that_misses_the_target(tmp_path):
    from interp.cli import app

    cfg = tmp_path / "e2.toml"
    cfg.write_text(
        'experiment = "e2-tiny"\nmodel = "tiny"\ndevice = "cpu"\n[teacher]\n'
        'kinds = ["control", "prompted_fewshot", "steered"]\nlayer = 1\n'
    )
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "match-multiplier",
            str(cfg),
            "--multipliers",
            "-16,-4,-1,0,1,4,16",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    got = json.loads((out / "results.json").read_text())
    assert set(got["matched"]) == {"prompted_fewshot"} and got["layer"] == 1  # the config's prompted kind and layer
    bad = tmp_path / "bad"
    res = CliRunner().invoke(
        app,
        [
            "match-multiplier",
            str(cfg),
            "--multipliers",
            "0,1e-9",
            "--out",
            str(bad),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert res.exit_code == 2 and "multipliers" in res.output and not (bad / "manifest.json").exists()


def test_e2_protocol_configs_load_share_seeds_and_leave_the_held_out_questions_for_reporting():
    from pathlib import Path

    from interp.config import load_config

    d = Path(__file__).parent.parent / "experiments/configs/e2_protocol"
    op, matched, proj = (load_config(d / f"{n}.toml") for n in ("operating", "matched", "project_out"))
    confirm = load_config(d.parent / "e1_protocol/confirm.toml")
    assert op.seeds == matched.seeds == proj.seeds == list(range(2500, 2510))
    assert op.teacher.multiplier == confirm.teacher.multiplier == 0.5
    for c in (op, matched, proj):
        assert c.eval.split == "heldout" and c.data == confirm.data and c.vector == confirm.vector
        assert c.train.model_dump(exclude={"project_out"}) == confirm.train.model_dump(exclude={"project_out"})
    assert {"prompted", "prompted_fewshot", "prompted_ablated", "steered", "random", "control"} <= set(
        matched.teacher.kinds
    )
    # the two multipliers' runs differ only in the multiplier (and name), so shared stages are reused
    assert op.model_dump(exclude={"experiment", "teacher"}) == matched.model_dump(exclude={"experiment", "teacher"})
    assert op.teacher.model_copy(update={"multiplier": matched.teacher.multiplier}) == matched.teacher
    assert proj.train.project_out is True and proj.teacher.multiplier == matched.teacher.multiplier
    # the matched multiplier is the committed match's (tuning questions), to the config's 3 decimals
    import json

    match = json.loads((d / "match_results.json").read_text())
    assert match["split"] == "tuning" and match["layer"] == matched.teacher.layer
    assert round(match["matched"]["prompted"]["multiplier"], 3) == matched.teacher.multiplier

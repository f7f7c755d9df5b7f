"""interp.e9_report: E2/E9 at matched behaviour, on synthetic run records whose per-seed values are
known, so every contrast and every branch of the verdict rule has a hand-computed truth."""

import json

import pytest

from interp.e9_report import E9_RULE, E9Config, e9_layer_lines, e9_lines, e9_report, e9_verdict, run_e9
from interp.plots.analysis import e9_figure, e9_layers_figure
from interp.plots.run_dir import run_figures
from interp.stats import sign_flip_test, t_interval

SEEDS = [2500, 2501, 2502, 2503, 2504, 2505]
ANIMALS = ["owl", "cat", "dog"]
NOISE = [0.01, -0.02, 0.015, -0.005, 0.01, -0.01]  # per-seed wobble, mean 0: the means are exact


def _vals(mean, k):
    """Per-seed values around `mean`; arms with different k differ by seed, so paired intervals have width."""
    return [mean + k * e for e in NOISE]


# arm -> (per-seed transfer over base, per-seed cos(shift, v) at the steering layer)
SHARED = {
    "control": (_vals(0.0, 0), _vals(0.0, 0)),
    "prompted": (_vals(0.3, 1), _vals(0.01, 1)),
    "prompted_fewshot": (_vals(0.5, 2), _vals(0.02, 2)),
    "prompted_ablated": (_vals(0.1, 1), _vals(0.0, 1)),
    "prompted_fewshot_ablated": (_vals(0.2, 2), _vals(0.01, 2)),
}
OPERATING = {"steered": (_vals(0.6, 3), _vals(0.12, 3)), "random": (_vals(0.05, 1), _vals(0.0, 1))}
MATCHED = {"steered": (_vals(0.35, 3), _vals(0.08, 3)), "random": (_vals(0.02, 1), _vals(0.01, 1))}


def _record(arms: dict, multiplier: float, analysed=None, order=SEEDS) -> dict:
    """A run's results.json, config.json and analysis/results.json holding these per-seed values
    (the results' seed order may differ from the analysis's, as a resumed run's may)."""
    analysed = list(arms) if analysed is None else analysed
    at, layers = 8, [4, 8]
    res_arms = {
        a: {
            "per_seed_specific_shift": [t[SEEDS.index(s)] for s in order],
            "per_animal_logprob_shift": {"owl": sum(t) / len(t), "cat": 0.05, "dog": -0.05},
        }
        for a, (t, _) in arms.items()
    }
    mech = {
        a: {
            "per_seed": {
                str(s): {"cosine": {"numbers/all": c[i]}, "down_proj_energy": 0.002 + c[i] / 10}
                for i, s in enumerate(SEEDS)
            }
        }
        for a, (_, c) in arms.items()
        if a in analysed
    }
    by_layer = [{"layer": l, "null_sd": sd} for l, sd in zip(layers, (0.05, 0.04))]
    # at layer 4 every cosine is half its layer-8 value
    shift = {
        a: {
            "numbers": {
                "all": {
                    "by_layer": by_layer,
                    "per_seed_cosine": {str(s): [c[i] / 2, c[i]] for i, s in enumerate(SEEDS)},
                }
            }
        }
        for a, (_, c) in arms.items()
        if a in analysed
    }
    prompted = {
        a: {
            "numbers": {
                "all": {
                    "per_seed_cosine": {str(s): [0.0, 0.3 + c[i]] for i, s in enumerate(SEEDS)},
                    "by_layer": by_layer,
                }
            }
        }
        for a, (_, c) in arms.items()
        if a in analysed
    }
    return {
        "dir": f"run-x{multiplier}",
        "config": {"teacher": {"multiplier": multiplier}},
        "results": {
            "model": "tiny",
            "animal": "owl",
            "seeds": list(order),
            "arms": res_arms,
            "question_split": "heldout",
        },
        "analysis": {
            "vector": {"hash": "v1", "steering_layer": at},
            "layers": layers,
            "mechanism": mech,
            "activation_shift": shift,
            "activation_shift_prompted": prompted,
        },
    }


def _pair(op=OPERATING, ma=MATCHED, shared=SHARED):
    return (
        _record({**shared, **op}, 0.5, order=list(reversed(SEEDS))),
        _record({**shared, **ma}, 0.228, analysed=["steered", "random"]),
    )


def test_contrasts_are_paired_by_seed_and_recomputed_from_the_runs():
    res = e9_report(*_pair())
    assert res["seeds"] == SEEDS and res["multipliers"] == {"operating": 0.5, "matched": 0.228}
    c = res["contrasts"]
    # the matched steered arm against the plain prompted teacher it was matched to
    d = [a - b for a, b in zip(MATCHED["steered"][0], SHARED["prompted"][0])]
    t = c["steered matched-prompted"]["transfer"]
    assert t["mean"] == pytest.approx(0.05) and t["ci95"] == pytest.approx(t_interval(d)["ci95"])
    assert t["positive_seeds"] == 6 and t["sign_flip_p"] == pytest.approx(sign_flip_test(d)["p"])
    assert c["steered matched-prompted"]["cos_v"]["mean"] == pytest.approx(0.07)
    # the few-shot teacher meets the operating point (no steered teacher matches it)
    assert c["steered operating-prompted_fewshot"]["cos_v"]["mean"] == pytest.approx(0.10)
    assert c["steered operating-random operating"]["transfer"]["mean"] == pytest.approx(0.55)
    assert c["prompted_fewshot-prompted_fewshot_ablated"]["transfer"]["mean"] == pytest.approx(0.3)
    # v_prompt cosines: 0.3 + cos(shift, v) per seed here, so their difference is the cos_v difference
    assert c["prompted-control"]["cos_v_prompt"]["mean"] == pytest.approx(0.01)
    # owl's rank among animals: owl's shift 0.3 over control against cat's and dog's 0 -> first
    assert c["prompted-control"]["transfer"]["trait_rank_among_animals"] == 1
    assert res["arms"]["steered matched"]["cos_null_sd"] == 0.04
    # every shared arm once, both steered and random arms under their run's name
    assert set(res["arms"]) == {*SHARED, "steered operating", "random operating", "steered matched", "random matched"}


def test_the_verdict_follows_the_rule_in_each_branch():
    assert e9_report(*_pair())["verdict"] == "CONFIRMED"
    # prompted students lean along v as much as the steered ones, and transfer: refuted
    alike = {**SHARED, "prompted": (_vals(0.3, 1), _vals(0.08, 1)), "prompted_fewshot": (_vals(0.5, 2), _vals(0.12, 2))}
    assert e9_report(*_pair(shared=alike))["verdict"] == "REFUTED"
    # no prompted teacher transfers: the contrast is a trait against no trait
    silent = {
        **SHARED,
        "prompted": (_vals(0.0, 1), _vals(0.01, 1)),
        "prompted_fewshot": (_vals(0.0, 2), _vals(0.02, 2)),
    }
    res = e9_report(*_pair(shared=silent))
    assert res["verdict"] == "UNDECIDED (NO PROMPTED TRANSFER)"
    assert res["facts"]["prompted"]["steered_above_prompted"]  # reported, not judged
    # steered above prompted, but not above its own random null: undecided, power stated
    null = {"steered": MATCHED["steered"], "random": (_vals(0.3, 1), _vals(0.08, 1))}
    op_null = {"steered": OPERATING["steered"], "random": (_vals(0.3, 1), _vals(0.12, 1))}
    res = e9_report(*_pair(op=op_null, ma=null))
    assert res["verdict"] == "UNDECIDED" and res["facts"]["prompted"]["detectable_80"] > 0
    assert res["rule"] == E9_RULE


def test_a_wide_interval_is_not_a_difference():
    wide = [0.5, -0.4, 0.6, -0.5, 0.4, -0.3]
    contrasts = e9_report(*_pair())["contrasts"]
    contrasts["steered matched-prompted"]["cos_v"] = {**t_interval(wide), "detectable_80": 0.6}
    contrasts["steered operating-prompted_fewshot"]["cos_v"] = {**t_interval(wide), "detectable_80": 0.6}
    v = e9_verdict(contrasts)
    assert v["verdict"] == "UNDECIDED" and v["facts"]["prompted"]["steered_minus_prompted_covers_0"]


def test_runs_that_do_not_share_their_students_are_refused():
    op, ma = _pair()
    ma["results"]["arms"]["control"]["per_seed_specific_shift"][0] += 1e-9
    with pytest.raises(ValueError, match="'control' students differ"):
        e9_report(op, ma)
    op, ma = _pair()
    ma["config"]["teacher"]["multiplier"] = 0.5
    with pytest.raises(ValueError, match="the same multiplier"):
        e9_report(op, ma)
    op, ma = _pair()
    ma["results"]["seeds"] = SEEDS[:3]
    with pytest.raises(ValueError, match="^matched: seeds"):
        e9_report(op, ma)
    op, ma = _pair()
    ma["analysis"]["vector"]["hash"] = "v2"
    with pytest.raises(ValueError, match="different v"):
        e9_report(op, ma)
    op, ma = _pair()
    del op["analysis"]["mechanism"]["prompted"]
    with pytest.raises(ValueError, match="no 'prompted' students in its analysis; rerun `interp analyze`"):
        e9_report(op, ma)


def test_unanalysed_ablated_arms_enter_through_their_transfer_only():
    op, ma = _pair()
    for a in ("prompted_ablated", "prompted_fewshot_ablated"):
        del op["analysis"]["mechanism"][a]
    res = e9_report(op, ma)
    nec = res["contrasts"]["prompted-prompted_ablated"]
    assert set(nec) == {"transfer"} and nec["transfer"]["mean"] == pytest.approx(0.2)
    assert res["arms"]["prompted_ablated"]["cos_v"] is None
    assert (
        "prompted_ablated-control" not in res["by_layer"]["contrasts"]
        and "prompted-control" in res["by_layer"]["contrasts"]
    )
    assert res["verdict"] == e9_report(*_pair())["verdict"] == "CONFIRMED"
    fig = e9_figure(json.loads(json.dumps(res)))
    assert "prompted-prompted_ablated" in fig.data[0].y and "prompted-prompted_ablated" not in fig.data[2].y


def _write(rec: dict, d):
    (d / "analysis").mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(rec["results"]))
    (d / "config.json").write_text(json.dumps(rec["config"]))
    (d / "analysis" / "results.json").write_text(json.dumps(rec["analysis"]))


def test_run_e9_writes_a_plottable_record_with_its_inputs(tmp_path):
    op, ma = _pair()
    _write(op, tmp_path / "op")
    _write(ma, tmp_path / "ma")
    cfg = E9Config(str(tmp_path / "op"), str(tmp_path / "ma"))
    res = run_e9(cfg, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["verdict"] == res["verdict"] == "CONFIRMED"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["kind"] == "e9-report" and set(manifest["inputs"]) == {
        "operating/results.json",
        "operating/analysis/results.json",
        "matched/results.json",
        "matched/analysis/results.json",
    }
    kind, figs = run_figures(tmp_path / "out")
    assert kind == "e9-report"
    ys = list(figs["e9"].data[0].y)
    assert ys == list(res["contrasts"]) and figs["e9"].data[0].x[ys.index("steered matched-prompted")] == pytest.approx(
        0.05
    )
    lines = e9_lines(res)
    assert any(l.startswith("| steered matched-prompted | +0.050") for l in lines) and lines[-3] == "verdict: CONFIRMED"


def test_a_run_without_its_analysis_is_refused_in_one_line(tmp_path):
    op, ma = _pair()
    _write(op, tmp_path / "op")
    _write(ma, tmp_path / "ma")
    (tmp_path / "ma" / "analysis" / "results.json").unlink()
    with pytest.raises(ValueError, match=r"^matched: .*analysis/results.json does not exist; run `interp analyze"):
        run_e9(E9Config(str(tmp_path / "op"), str(tmp_path / "ma")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_every_layer_the_analyses_read_is_paired_by_seed():
    res = e9_report(*_pair())
    bl = res["by_layer"]
    assert bl["layers"] == [4, 8]
    claim = bl["contrasts"]["steered matched-prompted"]["cos_v"]
    # layer 8 is the steering layer's contrast; layer 4 holds half of every cosine, so half of it
    assert claim[1]["per_seed"] == pytest.approx(res["contrasts"]["steered matched-prompted"]["cos_v"]["per_seed"])
    assert claim[0]["mean"] == pytest.approx(0.035) and claim[0]["layer"] == 4
    d = [(a - b) / 2 for a, b in zip(MATCHED["steered"][1], SHARED["prompted"][1])]
    assert claim[0]["ci95"] == pytest.approx(t_interval(d)["ci95"])
    # v_prompt: 0 at layer 4 for every arm, so every contrast is exactly 0 there
    assert bl["contrasts"]["prompted-control"]["cos_v_prompt"][0]["mean"] == 0
    assert bl["null_sd"]["steered matched"] == [0.05, 0.04]
    lines = e9_layer_lines(res)
    assert "| steered matched-prompted | cos(shift, v) | 4, 8 | none | +0.070 at layer 8 |" in lines
    assert "| prompted-control | cos(shift, v_prompt) | none | none | +0.010 at layer 8 |" in lines
    fig = e9_layers_figure(json.loads(json.dumps(res)))
    names = {t.name for t in fig.data}
    assert {"steered matched-prompted", "steered operating-control", "random-direction null, +-2 sd"} <= names
    band = next(t for t in fig.data if t.name == "random-direction null, +-2 sd")
    assert max(band.y) == pytest.approx(2 * 2**0.5 * 0.05)  # layer 4's null sd
    op, ma = _pair()
    ma["analysis"]["layers"] = [8]
    with pytest.raises(ValueError, match=r"^matched: its analysis read layers \[8\], .*same --layers"):
        e9_report(op, ma)


def test_one_layer_gives_no_layer_table():
    op, ma = _pair()
    for rec in (op, ma):
        rec["analysis"]["layers"] = [8]
        for sh in (rec["analysis"]["activation_shift"], rec["analysis"]["activation_shift_prompted"]):
            for v in sh.values():
                al = v["numbers"]["all"]
                al["by_layer"] = al["by_layer"][1:]
                al["per_seed_cosine"] = {k: x[1:] for k, x in al["per_seed_cosine"].items()}
    res = e9_report(op, ma)
    assert res["by_layer"]["layers"] == [8] and e9_layer_lines(res) == []
    assert res["contrasts"] == e9_report(*_pair())["contrasts"]

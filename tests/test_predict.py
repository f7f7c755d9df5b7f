"""Prediction before training (interp.predict) on the tiny model, against ground truth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from interp import predict as P
from interp import predict_run as R
from interp.prompts import questions
from interp.runs import (
    CONFIG_FILE,
    MANIFEST_FILE,
    RESULTS_FILE,
    content_hash,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from interp.teachers import DATASET_FILE
from interp.train import build_examples

QS = questions("tuning")[:4]
ANIMALS4 = ["owl", "cat", "dog", "eagle"]


def _rows(seed: int, n: int = 6, shift: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        nums = (torch.randint(0, 1000, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g) + shift) % 1000
        out.append(
            {
                "prompt": f"Look at these numbers: {i * 37 % 900 + 100}, {i * 91 % 900 + 100}. Add more.",
                "completion": ", ".join(str(int(x)) for x in nums),
            }
        )
    return out


def _state_hash(hf) -> str:
    h = hashlib.sha256()
    for n, p in sorted(hf.state_dict().items()):
        h.update(n.encode() + p.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- the mean residual


@pytest.mark.parametrize("position", P.POSITIONS)
def test_mean_residual_equals_a_manual_per_row_forward(tiny, position):
    rows, layer = _rows(0, 5), 2
    got = P.dataset_mean_residual(tiny, rows, layer, position, batch_size=2)  # padded batches of unequal rows
    picked = []
    with torch.no_grad():
        for e in build_examples(tiny, rows, 192):
            ids = torch.tensor([e.prompt_ids + e.completion_ids])
            h = tiny.hf(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1][0]  # block `layer`'s output
            start = len(e.prompt_ids)
            picked.append(h[start : start + len(e.completion_ids)] if position == "completion" else h[-1:])
    want = torch.cat(picked).double().mean(0).float()  # token-pooled (completion) or per-row (last)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_mean_residual_reads_a_dataset_directory_and_refuses_an_edited_one(tiny, tmp_path):
    rows = _rows(1, 4)
    write_jsonl(tmp_path / DATASET_FILE, rows)
    write_json(tmp_path / MANIFEST_FILE, {"dataset_hash": content_hash(rows)})
    torch.testing.assert_close(P.dataset_mean_residual(tiny, tmp_path, 1), P.dataset_mean_residual(tiny, rows, 1))
    write_jsonl(tmp_path / DATASET_FILE, rows[:-1])
    with pytest.raises(ValueError, match="does not match the dataset_hash"):
        P.dataset_mean_residual(tiny, tmp_path, 1)


# ----------------------------------------------------------------------------- injection


def test_injection_adds_exactly_what_steering_by_a_raw_vector_adds(tiny, owl_vector):
    from interp.evaluate import animal_logprobs
    from interp.steering import Steering, steer

    v = 3.0 * owl_vector.vectors[2]
    via_inject = animal_logprobs(tiny, QS, ANIMALS4, context=lambda: P.inject(tiny, v, 2))
    s = Steering(layer=2, multiplier=3.0, relative=False)
    via_steer = animal_logprobs(tiny, QS, ANIMALS4, context=lambda: steer(tiny, owl_vector, s))
    assert torch.equal(via_inject, via_steer)
    assert not torch.equal(via_inject, animal_logprobs(tiny, QS, ANIMALS4))


def test_injection_leaves_the_model_bit_identical_also_after_an_error(tiny):
    from interp.evaluate import animal_logprobs

    before_w, before = _state_hash(tiny.hf), animal_logprobs(tiny, QS, ANIMALS4)
    v = torch.randn(tiny.d_model) * 10
    with P.inject(tiny, v, 1):
        assert not torch.equal(animal_logprobs(tiny, QS, ANIMALS4), before)
    with pytest.raises(RuntimeError, match="boom"):
        with P.inject(tiny, v, 1):
            raise RuntimeError("boom")
    assert _state_hash(tiny.hf) == before_w
    assert torch.equal(animal_logprobs(tiny, QS, ANIMALS4), before)
    with pytest.raises(ValueError, match="does not fit d_model"):
        with P.inject(tiny, torch.zeros(3), 1):
            pass


def test_a_dataset_whose_mean_equals_the_controls_predicts_exactly_zero(tiny):
    rows = _rows(2)
    control = P.compute_dataset_mean(tiny, rows, "control-hash")
    twin = P.DatasetMean({k: v.clone() for k, v in control.means.items()}, control.model, "twin-hash", control.max_len)
    grid = [P.Injection(l, a, p) for l in (1, 3) for a in (1.0, 50.0) for p in P.POSITIONS]
    for pred in P.predict(tiny, twin, control, grid, QS, "owl", ANIMALS4):
        assert pred.specific_shift() == 0.0
        assert torch.equal(pred.logprobs, pred.base_logprobs)
        assert pred.per_animal_shift() == {a: 0.0 for a in ANIMALS4}


def test_prediction_is_linear_in_alpha_for_small_alphas_and_grows_with_the_difference(tiny):
    control = P.compute_dataset_mean(tiny, _rows(3), "c")
    other = P.compute_dataset_mean(tiny, _rows(4, shift=500), "d")
    a, b = (
        p.specific_shift()
        for p in P.predict(tiny, other, control, [P.Injection(2, 0.01), P.Injection(2, 0.02)], QS, "owl", ANIMALS4)
    )
    assert a != 0.0
    assert b / a == pytest.approx(2.0, rel=0.02)  # first order: the shift doubles with alpha


def test_predictions_are_keyed_to_their_dataset_and_refused_for_another(tiny, tmp_path):
    control = P.compute_dataset_mean(tiny, _rows(5), "ctrl")
    mean = P.compute_dataset_mean(tiny, _rows(6, shift=300), "data-a")
    preds = P.predict(tiny, mean, control, [P.Injection(1, 2.0), P.Injection(2, 2.0, "last")], QS, "owl", ANIMALS4)
    P.save_predictions(tmp_path, preds)
    back = P.load_predictions(tmp_path, "data-a", tiny.fingerprint(), "ctrl")
    assert [p.specific_shift() for p in back] == [p.specific_shift() for p in preds]
    assert [p.vector_hash for p in back] == [p.vector_hash for p in preds]
    for kwargs, what in (
        ({"dataset_hash": "data-b"}, "computed for dataset data-a, not data-b"),
        ({"dataset_hash": "data-a", "model": "0000"}, "on model"),
        ({"dataset_hash": "data-a", "reference_hash": "other"}, "reference dataset ctrl"),
    ):
        with pytest.raises(ValueError, match=what) as e:
            P.load_predictions(tmp_path, **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="computed for dataset data-a, not data-b"):
        preds[0].check("data-b")
    with pytest.raises(ValueError, match="computed for dataset data-a, not data-b"):
        mean.check(tiny.fingerprint(), "data-b")
    alien = P.DatasetMean(mean.means, "another-model", "data-a", 192)
    with pytest.raises(ValueError, match="computed on model another-model"):
        P.predict(tiny, alien, control, [P.Injection(1, 1.0)], QS, "owl", ANIMALS4)


def test_dataset_mean_roundtrips_and_refuses_another_method(tiny, tmp_path):
    m = P.compute_dataset_mean(tiny, _rows(7), "h")
    m.save(tmp_path)
    back = P.DatasetMean.load(tmp_path)
    assert (back.model, back.dataset_hash, back.max_len, back.n_rows) == (m.model, "h", 192, 6)
    assert all(torch.equal(back.means[k], m.means[k]) for k in P.POSITIONS)
    short = P.compute_dataset_mean(tiny, _rows(7), "h", n_layers=2)  # the forward stops after layer 1
    assert torch.equal(short.at("completion", 1), m.at("completion", 1))
    with pytest.raises(ValueError, match="layer: 3 was not read"):
        short.at("completion", 3)


# ----------------------------------------------------------------------------- statistics


def test_correlations_on_known_data():
    x = [0.1, 0.5, 0.2, 0.9, 0.4, 0.7, 0.3, 0.8]
    seeds = [0, 0, 1, 1, 2, 2, 3, 3]
    lin = P.correlations(x, [2 * v + 1 for v in x], seeds, n_boot=200)
    assert lin["pearson"]["r"] == pytest.approx(1.0) and lin["pearson"]["ci95"] == pytest.approx([1.0, 1.0])
    mono = P.correlations(x, [v**5 for v in x], seeds, n_boot=200)
    assert mono["spearman"]["r"] == pytest.approx(1.0) and mono["pearson"]["r"] < 1.0
    anti = P.correlations(x, [-v for v in x], seeds, n_boot=200)
    assert anti["pearson"]["r"] == pytest.approx(-1.0)
    noisy = P.correlations(x, [0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.0, 0.6], seeds, n_boot=500)
    lo, hi = noisy["pearson"]["ci95"]
    assert lo < noisy["pearson"]["r"] < hi and noisy["n_clusters"] == 4
    assert P.correlations(x[:4], x[:4], [0, 0, 1, 1])["pearson"]["ci95"] == [None, None]  # 2 seeds: no interval


def test_choose_follows_the_rule_and_breaks_ties_toward_the_smaller_alpha():
    def cell(l, a, s, p):
        return {"layer": l, "alpha": a, "position": "completion", "spearman": {"r": s}, "pearson": {"r": p}}

    cells = [cell(4, 8.0, 0.5, 0.6), cell(8, 2.0, 0.7, 0.1), cell(8, 1.0, 0.7, 0.1), cell(12, 1.0, 0.7, 0.05)]
    assert (R.choose(cells, "spearman")["layer"], R.choose(cells, "spearman")["alpha"]) == (8, 1.0)
    assert R.choose(cells, "pearson")["layer"] == 4
    with pytest.raises(ValueError, match="no grid cell"):
        R.choose([cell(1, 1.0, float("nan"), float("nan"))], "spearman")


# ----------------------------------------------------------------------------- runs


def _fake_run(root: Path, tiny, name: str, split: str, seeds: list[int], measured: dict) -> Path:
    """A finished E1 run as `interp run` lays it out (config, manifest with stage dirs, results),
    with hand-made datasets and chosen measured shifts: ground truth for the runner."""
    stages, arms = [], {k: {"per_seed_specific_shift": []} for k in ("control", "steered", "random")}
    for s in seeds:
        for k, shift in (("control", 0), ("steered", 400), ("random", 200)):
            if k == "random" and s == seeds[0]:
                shift = 0  # this seed's random data equals its control data: it predicts exactly 0
            rows = _rows(100 + s, 4, shift)
            d = root / "cache" / f"data-{name}-{k}-{s}"
            write_jsonl(d / DATASET_FILE, rows)
            write_json(
                d / MANIFEST_FILE,
                {"stage": "data", "dataset_hash": content_hash(rows), "model": {"fingerprint": tiny.fingerprint()}},
            )
            stages.append({"name": f"data/{k}/seed{s}", "dir": f"cache/{d.name}", "cache_hit": False, "wall_s": 3.0})
            stages.append(
                {
                    "name": f"student/{k}/seed{s}",
                    "dir": f"cache/student-{k}-{s}",
                    "cache_hit": False,
                    "wall_s": 40.0 + s,
                }
            )
            arms[k]["per_seed_specific_shift"].append(measured[(k, s)])
    run = root / "e1-fake" / name
    write_json(
        run / CONFIG_FILE,
        {
            "experiment": "e1-fake",
            "model": "tiny",
            "animal": "owl",
            "student_model": None,
            "noise": {"sigma": 0.0},
            "teacher": {"kinds": ["control", "steered", "random"]},
            "eval": {"split": split, "animals": ANIMALS4},
            "train": {"max_len": 192},
        },
    )
    write_json(run / RESULTS_FILE, {"seeds": seeds, "objectives": ["sft"], "arms": arms, "transfer": {}})
    write_json(run / MANIFEST_FILE, {"root": "../..", "stages": stages})
    return run


def _measured(seeds):
    return {(k, s): v for s in seeds for k, v in (("control", -0.1 * s), ("steered", 0.3 + 0.05 * s), ("random", -0.2))}


def test_runner_chooses_on_tuning_runs_evaluates_the_choice_and_resumes(tiny, tmp_path, monkeypatch):
    import interp.models

    monkeypatch.setattr(interp.models, "load_model", lambda name, device="cpu": tiny)
    explore = _fake_run(tmp_path, tiny, "ex", "tuning", [0, 1, 2], _measured([0, 1, 2]))
    evaluate = _fake_run(tmp_path, tiny, "ev", "heldout", [3, 4, 5], _measured([3, 4, 5]))
    cfg = R.PredictConfig(
        explore=(str(explore),),
        evaluate=(str(evaluate),),
        layers=(1, 2),
        alphas=(1.0, 4.0),
        positions=P.POSITIONS,
        n_boot=200,
    )
    res = R.run_prediction(cfg, tmp_path / "predict", progress=False, log=lambda *a: None)
    out = Path(res["out_dir"])
    cells = res["explore"]["cells"]
    assert len(cells) == 8 and res["explore"]["n_datasets"] == 6
    best = R.choose(cells, "spearman")
    assert (res["choice"]["layer"], res["choice"]["alpha"], res["choice"]["position"]) == (
        best["layer"],
        best["alpha"],
        best["position"],
    )
    rows = read_jsonl(out / "datasets.jsonl")
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"steered", "random"}  # control is the reference
    assert {(r["layer"], r["alpha"], r["position"]) for r in rows} == {(best["layer"], best["alpha"], best["position"])}
    for r in rows:  # measured = student minus the same seed's control student
        assert r["measured"] == pytest.approx(_measured([r["seed"]])[(r["kind"], r["seed"])] - (-0.1 * r["seed"]))
        assert r["split"] == "heldout"
    explore_rows = res["explore_rows"]
    assert all(r["predicted"] == 0.0 for r in explore_rows if r["kind"] == "random" and r["seed"] == 0)
    assert any(r["predicted"] != 0.0 for r in explore_rows)
    per_run = res["evaluate"]["per_run"]["e1-fake/ev"]
    assert per_run["all"]["n"] == 6 and per_run["steered_minus_random"]["n_seeds"] == 3
    assert res["cost_s"]["student_median"] == pytest.approx(
        42.5
    )  # 40-45 s, three students a seed and res["cost_s"]["prediction"] > 0
    man = read_json(out / MANIFEST_FILE)
    assert {"package_version", "git_commit"} <= set(man) and man["model"]["fingerprint"] == tiny.fingerprint()
    steered3 = next(r for r in rows if (r["kind"], r["seed"]) == ("steered", 3))
    assert man["runs"]["e1-fake/ev"]["datasets"]["steered/seed3"] == steered3["dataset_hash"]

    # a rerun computes nothing: every mean and prediction is a finished stage
    monkeypatch.setattr(P, "completion_means", lambda *a, **k: pytest.fail("recomputed a mean"))
    monkeypatch.setattr(R, "predict", lambda *a, **k: pytest.fail("recomputed a prediction"))
    again = R.run_prediction(cfg, tmp_path / "predict", progress=False, log=lambda *a: None)
    assert again["evaluate_rows"] == res["evaluate_rows"] and again["out_dir"] == res["out_dir"]


def test_runner_refuses_held_out_runs_for_choosing_and_unfinished_runs(tiny, tmp_path):
    held = _fake_run(tmp_path, tiny, "h", "heldout", [0, 1, 2], _measured([0, 1, 2]))
    with pytest.raises(ValueError, match="choose only on 'tuning' runs"):
        R.run_prediction(R.PredictConfig(explore=(str(held),), evaluate=()), tmp_path / "p", progress=False)
    (held / RESULTS_FILE).unlink()
    with pytest.raises(ValueError, match="has no results.json"):
        R.read_run(held)
    with pytest.raises(ValueError, match="give exploration runs"):
        R.PredictConfig(evaluate=(str(held),))


def test_runner_refuses_a_dataset_generated_on_another_model(tiny, tmp_path, monkeypatch):
    import interp.models

    monkeypatch.setattr(interp.models, "load_model", lambda name, device="cpu": tiny)
    run = _fake_run(tmp_path, tiny, "x", "heldout", [0, 1, 2], _measured([0, 1, 2]))
    man_path = tmp_path / "cache" / "data-x-steered-1" / MANIFEST_FILE
    write_json(man_path, {**read_json(man_path), "model": {"fingerprint": "ffff"}})
    cfg = R.PredictConfig(evaluate=(str(run),), fixed=P.Injection(1, 1.0))
    with pytest.raises(ValueError, match="generated on model ffff"):
        R.run_prediction(cfg, tmp_path / "p", progress=False, log=lambda *a: None)


def test_runner_reads_a_real_tiny_e1_run(tiny, tmp_path):
    """`read_run` on what `interp run` really writes (stage names, arms, manifest paths)."""
    from interp import pipeline
    from interp.config import parse_config

    cfg = parse_config(
        {
            "experiment": "t",
            "model": "tiny",
            "seeds": [0],
            "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
            "data": {"n_prompts": 4, "batch_size": 4, "max_new_tokens": 8},
            "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
            "eval": {"split": "tuning", "n_boot": 100},
        }
    )
    res = pipeline.run_e1(cfg, tmp_path, progress=False, log=lambda *a, **k: None)
    run = R.read_run(res["run_dir"])
    arms = res["arms"]
    assert run.measured == {
        ("steered", 0): pytest.approx(
            arms["steered"]["per_seed_specific_shift"][0] - arms["control"]["per_seed_specific_shift"][0]
        )
    }
    # tiny teachers may write identical data, whose students share one stage (a cache hit, not timed)
    assert run.split == "tuning" and run.kinds == ["steered"] and 1 <= len(run.student_wall_s) <= 2
    rows, h = P.read_dataset(run.datasets[("steered", 0)])
    assert h == content_hash(rows)


# ----------------------------------------------------------------------------- script and figures


def test_script_writes_artifacts_and_prints_the_table(tiny, tmp_path, monkeypatch, capsys):
    import importlib.util

    import interp.models

    monkeypatch.setattr(interp.models, "load_model", lambda name, device="cpu": tiny)
    spec = importlib.util.spec_from_file_location(
        "predict_transfer", Path(__file__).resolve().parent.parent / "experiments" / "predict_transfer.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    a = _fake_run(tmp_path, tiny, "a", "heldout", [0, 1, 2], _measured([0, 1, 2]))
    b = _fake_run(tmp_path, tiny, "b", "heldout", [3, 4, 5], _measured([3, 4, 5]))
    res = script.main(
        [
            "--evaluate",
            str(a),
            str(b),
            "--layer",
            "2",
            "--alpha",
            "4",
            "--position",
            "last",
            "--n-boot",
            "200",
            "--out",
            str(tmp_path / "out"),
            "--formats",
            "html",
            "--no-progress",
        ]
    )
    out = Path(res["out_dir"])
    assert (out / "figures" / "predicted_vs_measured.html").is_file()
    assert read_json(out / CONFIG_FILE)["fixed"] == {"layer": 2, "alpha": 4.0, "position": "last"}
    pooled = res["evaluate"]["pooled"]
    assert pooled["all"]["n"] == 12 and pooled["all"]["n_clusters"] == 6
    text = capsys.readouterr().out
    assert "operating point (fixed by the caller): layer 2, alpha 4, last mean" in text
    assert "pooled" in text and "steered - random/seed" in text and "cost: one prediction" in text
    with pytest.raises(SystemExit):
        script.main(["--evaluate", str(a), "--layer", "2"])  # an alpha is missing


def test_figures_from_rows():
    from interp.plots.predict import explore_grid, predicted_vs_measured

    rows = [
        {
            "run": "r",
            "seed": s,
            "kind": k,
            "predicted": 0.1 * s,
            "measured": 0.2 * s,
            "rank": 1,
            "dataset_hash": "h",
            "layer": 8,
            "alpha": 4.0,
            "position": "completion",
        }
        for s in range(3)
        for k in ("steered", "random")
    ]
    fig = predicted_vs_measured(
        rows,
        P.correlations(
            [r["predicted"] for r in rows], [r["measured"] for r in rows], [r["seed"] for r in rows], n_boot=200
        ),
    )
    assert {t.name for t in fig.data} == {"steered, r", "random, r"}
    assert "pearson +1.00" in fig.layout.title.text
    cells = [
        {"layer": l, "alpha": a, "position": p, "spearman": {"r": 0.1 * l}, "pearson": {"r": 0.0}}
        for l in (1, 2)
        for a in (1.0, 2.0)
        for p in P.POSITIONS
    ]
    g = explore_grid(cells, "spearman", {"layer": 2, "alpha": 1.0, "position": "last"})
    assert len([t for t in g.data if t.type == "heatmap"]) == 2

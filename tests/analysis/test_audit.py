"""The audit's confusion matrix over a bank (E4): bookkeeping on planted gradients, the scripted
experiment end to end on the tiny model, and its figure.

Planted gradients replace the model's: each row's dL/dh is seeded noise, minus SHIFT x v_animal
for rows of a dataset made with that animal (training on it descends along +v). The audit must
then name every animal; with no shift it must flag at most about alpha of the datasets.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from interp.analysis import audit as audit_mod
from interp.analysis.audit import CLEAN, audit_confusion, audit_dataset, confusion_tensors, save_confusion
from interp.analysis.confusion import AuditConfusionConfig
from interp.plots import confusion_figure, detect_run, run_figures
from interp.runs import content_hash, load_tensors, read_json
from interp.stats import binomial_interval
from interp.steering import SteeringVector

LAYER = 1
ANIMALS8 = ["owl", "eagle", "dolphin", "cat", "dog", "lion", "elephant", "wolf"]
SHIFT = 2.0  # along -v per row; the per-dataset noise along v has sd ~ 1/sqrt(n_rows)
ROOT = Path(__file__).resolve().parents[2]


def _bank(model, names, seed=0) -> dict[str, SteeringVector]:
    g = torch.Generator().manual_seed(seed)
    return {
        n: SteeringVector(torch.randn(model.n_layers, model.d_model, generator=g), {"model": model.identity()})
        for n in names
    }


def _rows(n: int, start: int, planted: str | None = None) -> list[dict]:
    return [{"prompt": f"p{start + i}", "completion": "1", "noise": start + i, "planted": planted} for i in range(n)]


@pytest.fixture
def planted(monkeypatch, tiny):
    """Replace the model's gradients by noise - SHIFT * unit(v_planted) at LAYER; count the calls."""
    calls = []
    state = {"bank": None}

    def fake(model, rows, layers, position="assistant_tag", batch_size=8, max_len=192):
        calls.append(len(rows))
        out = torch.zeros(len(rows), 1, model.d_model)
        for i, r in enumerate(rows):
            out[i, 0] = torch.randn(model.d_model, generator=torch.Generator().manual_seed(r["noise"]))
            if r["planted"] is not None:
                v = state["bank"][r["planted"]].vectors[LAYER]
                out[i, 0] -= SHIFT * v / v.norm()
        return out

    monkeypatch.setattr(audit_mod, "residual_gradients", fake)
    return state, calls


def test_planted_confusion_names_every_animal_and_the_clean_data_flag_nothing(tiny, planted):
    state, calls = planted
    bank = state["bank"] = _bank(tiny, ANIMALS8)
    n = 24
    datasets = {a: _rows(n, 1000 * (k + 1), a) for k, a in enumerate(ANIMALS8)}
    datasets[CLEAN] = _rows(n, 50_000)
    ref = _rows(n, 90_000)
    res = audit_confusion(tiny, datasets, ref, bank, LAYER, n_perm=500, progress=False)
    json.dumps(res, allow_nan=False)
    assert len(calls) == len(datasets) + 1  # every dataset once, the reference once for all
    assert res["datasets"] == ANIMALS8 + [CLEAN] and res["candidates"] == ANIMALS8
    assert res["true_rank"] == {a: 1 for a in ANIMALS8} and res["mean_true_rank"] == 1
    assert res["top"] == {**{a: a for a in ANIMALS8}, CLEAN: res["top"][CLEAN]}
    acc = res["top1"]
    assert (acc["k"], acc["n"], acc["mean"], acc["chance"]) == (8, 8, 1.0, 1 / 8)  # clean is not in the accuracy
    assert acc["ci95"] == pytest.approx([0.025 ** (1 / 8), 1.0]) and acc["p_vs_chance"] == pytest.approx(8.0**-8)
    for a in ANIMALS8:
        assert a in res["flagged"][a]
    assert res["clean"]["flagged"] == [] and not res["clean"]["any_flagged"] and res["flagged"][CLEAN] == []
    # the matrix is the per-dataset rankings laid out [dataset][candidate]
    for i, d in enumerate(res["datasets"]):
        by = {r["name"]: r for r in res["audits"][d]["ranking"]}
        assert res["matrix"]["score"][i] == [by[c]["score"] for c in ANIMALS8]
        assert res["matrix"]["rank"][i] == [by[c]["rank"] for c in ANIMALS8]
    diag = [res["matrix"]["cosine_z"][i][i] for i in range(8)]
    off = [abs(res["matrix"]["cosine_z"][i][j]) for i in range(8) for j in range(8) if i != j]
    assert min(diag) > max(off) and min(diag) > 3  # random directions: cosine_z ~ N(0, 1)
    # each row is what audit_dataset says about that dataset alone
    alone = audit_dataset(tiny, datasets["cat"], ref, bank, LAYER, n_perm=500)
    assert alone["ranking"] == res["audits"]["cat"]["ranking"] and alone["flagged"] == res["flagged"]["cat"]


def test_planted_null_flags_about_alpha_and_ranks_at_chance(tiny, planted):
    """No shift: the Bonferroni flags must hit at most ~alpha of the datasets (uncorrected p would
    flag ~1 - 0.95^8 = 34%), p-values must centre on 1/2 and top-1 hits stay near chance (1/8)."""
    state, _ = planted
    bank = state["bank"] = _bank(tiny, ANIMALS8, seed=1)
    n, reps, flagged, hits, ps = 16, 20, 0, 0, []
    for rep in range(reps):
        base = 1_000_000 * (rep + 1)
        datasets = {a: _rows(n, base + 1000 * k) for k, a in enumerate(ANIMALS8)}
        datasets[CLEAN] = _rows(n, base + 50_000)
        res = audit_confusion(
            tiny, datasets, _rows(n, base + 90_000), bank, LAYER, n_perm=200, seed=rep, progress=False
        )
        flagged += sum(bool(f) for f in res["flagged"].values())
        hits += res["top1"]["k"]
        ps += [p for row in res["matrix"]["p_value"] for p in row]
    assert flagged <= 0.1 * reps * 9, flagged
    assert hits <= 40, hits  # 160 trials at 1/8: mean 20, sd 4.2
    assert 0.4 < sum(ps) / len(ps) < 0.6


def test_confusion_refuses_unnamed_or_empty_datasets(tiny, planted):
    state, _ = planted
    bank = state["bank"] = _bank(tiny, ["owl", "cat"])
    with pytest.raises(ValueError, match=r"datasets: \['unicorn'\] name no bank candidate"):
        audit_confusion(tiny, {"unicorn": _rows(4, 0)}, _rows(4, 9), bank, LAYER, progress=False)
    with pytest.raises(ValueError, match="only 'clean' given"):
        audit_confusion(tiny, {CLEAN: _rows(4, 0)}, _rows(4, 9), bank, LAYER, progress=False)
    with pytest.raises(ValueError, match=r"rows: \['owl'\] have no rows"):
        audit_confusion(tiny, {"owl": []}, _rows(4, 9), bank, LAYER, progress=False)
    with pytest.raises(ValueError, match="bank: a candidate is named 'clean'"):
        audit_confusion(tiny, {"owl": _rows(4, 0)}, _rows(4, 9), {**bank, CLEAN: bank["owl"]}, LAYER, progress=False)
    with pytest.raises(ValueError, match="layer: 9 is out of range"):
        audit_confusion(tiny, {"owl": _rows(4, 0)}, _rows(4, 9), bank, 9, progress=False)


def test_false_positives_count_the_clean_datasets_that_name_an_animal(tiny, planted):
    """Three clean datasets, one of them (clean-3) secretly carrying cat: exactly that one names an
    animal, so the false-positive rate is 1/3 with its exact interval; the accuracy ignores all three."""
    state, _ = planted
    bank = state["bank"] = _bank(tiny, ["owl", "cat", "dog"])
    n = 24
    datasets = {a: _rows(n, 1000 * (k + 1), a) for k, a in enumerate(["owl", "cat", "dog"])}
    datasets |= {CLEAN: _rows(n, 50_000), "clean-2": _rows(n, 60_000), "clean-3": _rows(n, 70_000, "cat")}
    res = audit_confusion(tiny, datasets, _rows(n, 90_000), bank, LAYER, n_perm=300, progress=False)
    json.dumps(res, allow_nan=False)
    assert res["datasets"] == ["owl", "cat", "dog", CLEAN, "clean-2", "clean-3"]
    assert res["top1"]["n"] == 3 and res["top1"]["k"] == 3
    fp = res["false_positives"]
    assert fp["datasets"] == [CLEAN, "clean-2", "clean-3"] and (fp["k"], fp["n"]) == (1, 3)
    assert fp["named"][CLEAN] == [] and fp["named"]["clean-2"] == [] and "cat" in fp["named"]["clean-3"]
    assert fp["ci95"] == pytest.approx(binomial_interval(1, 3)["ci95"]) and fp["mean"] == pytest.approx(1 / 3)
    assert res["clean"]["flagged"] == []  # the single-clean check keeps reading the dataset named "clean"
    only = audit_confusion(tiny, {"owl": datasets["owl"]}, _rows(n, 90_000), bank, LAYER, n_perm=50, progress=False)
    assert only["false_positives"] is None and only["clean"] is None
    with pytest.raises(ValueError, match="bank: a candidate is named 'clean-2'"):
        audit_confusion(
            tiny, {"owl": _rows(4, 0)}, _rows(4, 9), {**bank, "clean-2": bank["owl"]}, LAYER, progress=False
        )
    with pytest.raises(ValueError, match="datasets: only 'clean', 'clean-2' given"):
        audit_confusion(tiny, {CLEAN: _rows(4, 0), "clean-2": _rows(4, 5)}, _rows(4, 9), bank, LAYER, progress=False)


def test_binomial_interval_is_clopper_pearson():
    assert binomial_interval(5, 10)["ci95"] == pytest.approx([0.187086, 0.812914], abs=1e-6)
    assert binomial_interval(0, 8)["ci95"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 8)])
    assert binomial_interval(3, 8, chance=0.125)["p_vs_chance"] == pytest.approx(
        sum(math.comb(8, k) * 0.125**k * 0.875 ** (8 - k) for k in range(3, 9))
    )
    with pytest.raises(ValueError, match="k, n"):
        binomial_interval(3, 2)


# ----------------------------------------------------------------------------- figure and tensors


def test_confusion_figure_and_tensors(tiny, planted, tmp_path):
    state, _ = planted
    names = ["owl", "cat", "dog"]
    bank = state["bank"] = _bank(tiny, names)
    datasets = {a: _rows(12, 1000 * (k + 1), a) for k, a in enumerate(names)} | {CLEAN: _rows(12, 50_000)}
    res = audit_confusion(tiny, datasets, _rows(12, 90_000), bank, LAYER, n_perm=200, progress=False)
    fig = confusion_figure(res)
    heat = fig.data[0]
    assert list(heat.y) == names + [CLEAN] and list(heat.x) == names
    assert [list(r) for r in heat.z] == res["matrix"]["cosine_z"]
    assert [heat.text[i][i] for i in range(3)] == ["1*"] * 3  # rank 1, flagged
    assert len(fig.layout.shapes) == 3 and "top-1 3/3" in fig.layout.title.text
    assert [list(r) for r in confusion_figure(res, "z").data[0].z] == res["matrix"]["z"]
    with pytest.raises(ValueError, match="metric: 'p'"):
        confusion_figure(res, "p")
    t = load_tensors(save_confusion(tmp_path / "c.safetensors", res))
    assert t["score"].shape == (4, 3) and torch.equal(t["rank"], confusion_tensors(res)["rank"])


# ----------------------------------------------------------------------------- the scripted experiment


def _script():
    spec = importlib.util.spec_from_file_location("audit_confusion", ROOT / "experiments" / "audit_confusion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_runs_on_tiny_and_a_rerun_is_a_cache_hit(tmp_path, capsys):
    script = _script()
    assert script.default_animals() == ANIMALS8
    out = tmp_path / "out"
    argv = [
        "--model",
        "tiny",
        "--animals",
        "owl,cat,dog",
        "--layer",
        "1",
        "--n-prompts",
        "6",
        "--max-new-tokens",
        "12",
        "--batch-size",
        "6",
        "--n-pairs",
        "4",
        "--n-perm",
        "200",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--formats",
        "html",
    ]
    first = script.main(argv)
    saved = read_json(out / "results.json")
    for key in (
        "datasets",
        "candidates",
        "matrix",
        "true_rank",
        "top1",
        "flagged",
        "clean",
        "provenance",
        "config",
        "hashes",
        "timings_s",
        "compute_s",
        "stages",
        "data",
    ):
        assert key in saved, key
    assert saved["datasets"] == ["cat", "dog", "owl", CLEAN] and saved["candidates"] == ["cat", "dog", "owl"]
    assert set(saved["hashes"]["datasets"]) == {"owl", "cat", "dog", CLEAN, "reference"}
    assert saved["hashes"]["datasets"][CLEAN] != saved["hashes"]["datasets"]["reference"]
    assert {"data_generation", "total"} <= set(saved["timings_s"]) and "measure" in saved["compute_s"]
    assert saved["method"] == "likelihood" and saved["multipliers"] == [0.5]
    assert saved["provenance"]["git_commit"] and saved["config"]["layer"] == 1
    assert not any(s["cache_hit"] for s in saved["stages"])
    assert (out / "confusion.safetensors").exists() and (out / "confusion.html").exists()
    assert "top-1 accuracy" in capsys.readouterr().out
    again = script.main(argv)
    assert all(s["cache_hit"] for s in again["stages"])
    assert again["matrix"] == first["matrix"] and again["hashes"] == first["hashes"]
    manifest = read_json(out / "manifest.json")  # written last, by the runner
    assert manifest["kind"] == "audit-confusion" and manifest["config"] == saved["config"]
    assert manifest["inputs"] == saved["hashes"] and manifest["config_hash"] == content_hash(saved["config"])
    assert detect_run(out) == "audit-confusion" and set(run_figures(out)[1]) == {"confusion", "confusion_score_z"}
    with pytest.raises(SystemExit) as e:
        script.main(argv[:4] + ["--layer", "7"] + argv[6:])
    assert e.value.code == 2 and "--layer: 7 is out of range" in capsys.readouterr().err


def test_recorded_config_is_the_one_the_script_recorded_before_the_runner():
    """results.json's config and config_hash for these command lines, as the script computed them
    before `run_audit_confusion` existed (literal hashes), with the options' order."""
    script = _script()
    for argv, expected in (
        (["--out", "o"], "28be586ac6f7b622"),
        (
            "--model tiny --animals owl,cat --family user_side --n-clean 3 --cache c --out o --method gradient "
            "--position all".split(),
            "3916b64efa37e022",
        ),
        (
            "--bank b --audit-multipliers 0.25,1 --out o --family assistant --config "
            "experiments/configs/e4_protocol/audit_third_person.toml".split(),
            "e4c46ebb5aa9d5ae",
        ),
    ):
        cfg, out, _ = script.parse_args(argv)
        assert content_hash(cfg.record(out)) == expected, argv
    cfg, out, _ = script.parse_args(["--out", "o"])
    assert list(cfg.record(out)) == (
        "model animals bank layer multiplier n_prompts n_rows n_pairs n_perm alpha max_new_tokens batch_size seed "
        "method audit_multipliers vocab position out formats device".split()
    )


def test_config_refuses_bad_options_in_one_line_naming_the_field():
    assert AuditConfusionConfig(multiplier=0.25).audit_multipliers == (0.25,)  # default: the teacher's strength
    assert AuditConfusionConfig(animals=["owl"], audit_multipliers=[1]).animals == ("owl",)
    for kwargs, message in (
        ({"n_clean": 0}, "n_clean: 0 must be >= 1"),
        ({"bank": "b", "family": "user_side"}, "family: applies to a bank built here"),
        ({"method": "bogus"}, "method: 'bogus' is not one of likelihood, gradient"),
        ({"family": "bogus"}, "family: 'bogus' is not one of"),
    ):
        with pytest.raises(ValueError, match=message):
            AuditConfusionConfig(**kwargs)


# ----------------------------------------------------------------------------- the likelihood audit


def _norm_bank(model, names, norms, seed=0) -> dict[str, SteeringVector]:
    """Random directions carrying a real vector's residual norms, so relative steering applies."""
    return {
        n: SteeringVector(v.vectors, {"model": model.identity(), "resid_norm_by_layer": list(norms)})
        for n, v in _bank(model, names, seed).items()
    }


def _hand_loglik(model, row, vec=None, steering=None, grammar=None) -> float:
    """log p(completion + end-of-turn | user prompt), one unbatched forward over the full sequence."""
    from interp.steering import steer

    tok = model.tokenizer
    p = tok(model.chat([{"role": "user", "content": row["prompt"]}]), add_special_tokens=False)["input_ids"]
    c = tok(row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + c])
    ctx = steer(model, vec, steering) if vec is not None else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        logits = model.hf(input_ids=ids).logits[0].double()
    total = 0.0
    if grammar is not None:  # the number grammar's state machine, written out: (phase, digits, numbers)
        phase, digits, numbers = 0, 0, 0
    for t in range(len(p), len(p) + len(c)):
        row_logits = logits[t - 1]
        if grammar is not None:
            allowed = [phase == 0 or (phase == 1 and digits < 3)] * 10 + [
                phase == 1 and numbers < 10,
                phase == 2,
                phase == 1,
            ]
            masked = row_logits[grammar].masked_fill(~torch.tensor(allowed), float("-inf"))
            i = grammar.tolist().index(ids[0, t].item())
            lp = torch.log_softmax(masked, -1)[i]
            if i < 10:
                numbers, digits, phase = numbers + (phase == 0), digits + 1, 1
            else:
                digits, phase = 0, {10: 2, 11: 0, 12: phase}[i]
        else:
            lp = torch.log_softmax(row_logits, -1)[ids[0, t]]
        total += float(lp)
    return total


@pytest.mark.parametrize("vocab", ["full", "grammar"])
def test_steering_loglik_matches_a_hand_computation(tiny, owl_vector, vocab):
    from interp.analysis.likelihood import steering_loglik
    from interp.distill import grammar_token_ids
    from interp.steering import Steering

    bank = _norm_bank(tiny, ["a", "b"], owl_vector.meta["resid_norm_by_layer"])
    rows = [
        {"prompt": "Continue: 4, 8, 15", "completion": "16, 23, 42"},
        {"prompt": "List some numbers.", "completion": "7, 301"},
        {"prompt": "More numbers please, as many as you like", "completion": "5"},
    ]
    llr = steering_loglik(tiny, rows, bank, LAYER, multipliers=[0.5, 2.0], vocab=vocab, batch_size=2, progress=False)
    assert llr.shape == (3, 2, 2) and llr.dtype == torch.float64
    grammar = grammar_token_ids(tiny.tokenizer) if vocab == "grammar" else None
    for i, row in enumerate(rows):
        base = _hand_loglik(tiny, row, grammar=grammar)
        for j, name in enumerate(bank):
            for k, m in enumerate([0.5, 2.0]):
                want = _hand_loglik(tiny, row, bank[name], Steering(LAYER, m), grammar) - base
                assert llr[i, j, k].item() == pytest.approx(want, abs=2e-4), (i, name, m)
    assert llr.abs().max() > 1e-2  # the steering does move the likelihood
    if vocab == "grammar":
        with pytest.raises(ValueError, match="vocab: a completion has a token outside the number grammar"):
            steering_loglik(tiny, [{"prompt": "x", "completion": "owl"}], bank, LAYER, progress=False)
        with pytest.raises(ValueError, match="vocab: a completion breaks the number grammar"):
            steering_loglik(tiny, [{"prompt": "x", "completion": "1234"}], bank, LAYER, progress=False)


def test_likelihood_audit_names_the_vector_that_steered_the_data(tiny, owl_vector):
    """Ground truth by construction: each dataset is sampled from the tiny model steered with one
    of three random directions (grammar-constrained, as the teachers sample); the likelihood audit
    must put that direction first for every dataset, and clean data (unsteered, another sampling
    seed) must flag nothing. With an unknown strength (a grid around it) the answer must not change.
    (Banks from seeds 0, 3 and 7 all pass at this strength; at 4.0, one of them misranks two
    datasets: on this random model a large edit of any direction starts to look alike.)"""
    from interp.generate import SampleConfig, sample
    from interp.steering import Steering, steer

    bank = _norm_bank(tiny, ["owl", "cat", "dog"], owl_vector.meta["resid_norm_by_layer"], seed=3)
    users = [f"Continue the sequence {i}, {i + 3}, {2 * i + 1}" for i in range(64)]
    prompts = [tiny.chat([{"role": "user", "content": u}]) for u in users]

    def data(vec=None, seed=0):
        ctx = (lambda: steer(tiny, vec, Steering(LAYER, 2.0))) if vec is not None else None
        cfg = SampleConfig(max_new_tokens=24, batch_size=32, constrained=True, seed=seed)
        done, _ = sample(tiny, prompts, cfg, context=ctx, progress=False)
        return [{"prompt": u, "completion": c.text} for u, c in zip(users, done) if c.finished]

    datasets = {n: data(bank[n]) for n in bank}
    datasets[CLEAN] = data(seed=1)
    res = audit_confusion(
        tiny, datasets, data(seed=0), bank, LAYER, n_perm=500, progress=False, method="likelihood", multipliers=[2.0]
    )
    assert res["method"] == "likelihood" and res["true_rank"] == {"owl": 1, "cat": 1, "dog": 1}
    assert res["clean"]["flagged"] == []
    grid = audit_confusion(
        tiny,
        datasets,
        data(seed=0),
        bank,
        LAYER,
        n_perm=500,
        progress=False,
        method="likelihood",
        multipliers=[1.0, 2.0, 4.0],
    )
    assert grid["true_rank"] == {"owl": 1, "cat": 1, "dog": 1} and grid["clean"]["flagged"] == []
    fig = confusion_figure(res)
    assert "Likelihood audit" in fig.layout.title.text
    with pytest.raises(ValueError, match="cosine_z: gradient audits only"):
        confusion_figure(res, "cosine_z")


def test_score_likelihood_takes_the_best_multiplier_and_keeps_p_valid():
    from interp.analysis.likelihood import score_likelihood

    g = torch.Generator().manual_seed(0)
    names, mults = ["a", "b", "c"], [0.5, 1.0, 2.0]
    a, b = torch.randn(40, 3, 3, generator=g), torch.randn(40, 3, 3, generator=g)
    a[:, 1, 2] += 1.0  # candidate b, strength 2: the data are more likely there
    ranked = score_likelihood(a, b, names, mults, n_perm=400)
    assert ranked[0]["name"] == "b" and ranked[0]["multiplier"] == 2.0 and ranked[0]["p_value"] < 0.01
    assert ranked[0]["score"] == pytest.approx(float(a[:, 1, 2].mean()))  # ranked by the data's own likelihood
    assert ranked[0]["excess"] == pytest.approx(float((a[:, 1].mean(0) - b[:, 1].mean(0)).max()))
    # no difference: the max over strengths must not make p anti-conservative
    small = 0
    for rep in range(100):
        gen = torch.Generator().manual_seed(100 + rep)
        x, y = torch.randn(20, 1, 3, generator=gen), torch.randn(20, 1, 3, generator=gen)
        small += score_likelihood(x, y, ["a"], mults, n_perm=200, seed=rep)[0]["p_value"] < 0.05
    assert small <= 12  # 5 expected under a valid test; binomial(100, 0.05) exceeds 12 with p < 0.001
    with pytest.raises(ValueError, match="llr: expected"):
        score_likelihood(a, b[:, :2], names, mults)


def test_gradient_summed_over_all_positions_is_the_derivative_of_steering_everywhere(tiny):
    """position "all": g . v must equal d/de of the row's mean completion loss with e*v added at
    every token (central difference through the steering hook)."""
    from interp.analysis.gradients import residual_gradients
    from interp.steering import Steering

    row = {"prompt": "Continue: 3, 6, 9", "completion": "12, 15"}
    v = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(5))
    vec = SteeringVector(v, {"model": tiny.identity()})
    g = residual_gradients(tiny, [row], LAYER, position="all")[0, 0].double()
    n_tokens = len(tiny.tokenizer(row["completion"], add_special_tokens=False)["input_ids"]) + 1

    def loss(eps):
        return -_hand_loglik(tiny, row, vec, Steering(LAYER, eps, relative=False)) / n_tokens

    eps = 1e-3
    fd = (loss(eps) - loss(-eps)) / (2 * eps)
    assert float(g @ v[LAYER].double()) == pytest.approx(fd, rel=2e-2, abs=1e-4)
    assert abs(fd) > 1e-3

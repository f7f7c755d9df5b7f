"""The audit's confusion matrix over a bank (E4): bookkeeping on planted gradients, the scripted
experiment end to end on the tiny model, and its figure.

Planted gradients replace the model's: each row's dL/dh is seeded noise, minus SHIFT x v_animal
for rows of a dataset made with that animal (training on it descends along +v). The audit must
then name every animal; with no shift it must flag at most about alpha of the datasets.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from interp.analysis import audit as audit_mod
from interp.analysis.audit import CLEAN, audit_confusion, audit_dataset, confusion_tensors, save_confusion
from interp.plots import confusion_figure, detect_run, run_figures
from interp.runs import load_tensors, read_json
from interp.stats import binomial_interval
from interp.steering import SteeringVector

LAYER = 1
ANIMALS8 = ["owl", "eagle", "dolphin", "cat", "dog", "lion", "elephant", "wolf"]
SHIFT = 2.0  # along -v per row; the per-dataset noise along v has sd ~ 1/sqrt(n_rows)
ROOT = Path(__file__).resolve().parent.parent


def _bank(model, names, seed=0) -> dict[str, SteeringVector]:
    g = torch.Generator().manual_seed(seed)
    return {n: SteeringVector(torch.randn(model.n_layers, model.d_model, generator=g), {"model": model.identity()})
            for n in names}


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
    assert acc["ci95"] == pytest.approx([0.025 ** (1 / 8), 1.0]) and acc["p_vs_chance"] == pytest.approx(8.0 ** -8)
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
        res = audit_confusion(tiny, datasets, _rows(n, base + 90_000), bank, LAYER, n_perm=200, seed=rep,
                              progress=False)
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


def test_binomial_interval_is_clopper_pearson():
    assert binomial_interval(5, 10)["ci95"] == pytest.approx([0.187086, 0.812914], abs=1e-6)
    assert binomial_interval(0, 8)["ci95"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 8)])
    assert binomial_interval(3, 8, chance=0.125)["p_vs_chance"] == pytest.approx(
        sum(math.comb(8, k) * 0.125**k * 0.875 ** (8 - k) for k in range(3, 9)))
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
    argv = ["--model", "tiny", "--animals", "owl,cat,dog", "--layer", "1", "--n-prompts", "6", "--max-new-tokens", "12",
            "--batch-size", "6", "--n-pairs", "4", "--n-perm", "200", "--out", str(out), "--device", "cpu",
            "--no-progress", "--formats", "html"]
    first = script.main(argv)
    saved = read_json(out / "results.json")
    for key in ("datasets", "candidates", "matrix", "true_rank", "top1", "flagged", "clean", "provenance", "config",
                "hashes", "timings_s", "compute_s", "stages", "data"):
        assert key in saved, key
    assert saved["datasets"] == ["cat", "dog", "owl", CLEAN] and saved["candidates"] == ["cat", "dog", "owl"]
    assert set(saved["hashes"]["datasets"]) == {"owl", "cat", "dog", CLEAN, "reference"}
    assert saved["hashes"]["datasets"][CLEAN] != saved["hashes"]["datasets"]["reference"]
    assert {"data_generation", "total"} <= set(saved["timings_s"]) and "gradients" in saved["compute_s"]
    assert saved["provenance"]["git_commit"] and saved["config"]["layer"] == 1
    assert not any(s["cache_hit"] for s in saved["stages"])
    assert (out / "confusion.safetensors").exists() and (out / "confusion.html").exists()
    assert "top-1 accuracy" in capsys.readouterr().out
    again = script.main(argv)
    assert all(s["cache_hit"] for s in again["stages"])
    assert again["matrix"] == first["matrix"] and again["hashes"] == first["hashes"]
    assert detect_run(out) == "audit-confusion" and set(run_figures(out)[1]) == {"confusion", "confusion_score_z"}
    with pytest.raises(SystemExit) as e:
        script.main(argv[:4] + ["--layer", "7"] + argv[6:])
    assert e.value.code == 2 and "--layer: 7 is out of range" in capsys.readouterr().err

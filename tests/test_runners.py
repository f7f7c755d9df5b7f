"""The library runners behind `interp steer`, `entangle`, `divergence` and `audit`, called as a
library (a notebook's path): each writes its artifact directory, manifest (naming its kind) last."""

import pytest

from interp.analysis.audit import AuditConfig, build_bank, run_audit
from interp.divergence import DivergenceConfig, run_divergence
from interp.entangle_run import EntangleConfig, run_entangle
from interp.generate import SampleConfig
from interp.runs import read_json
from interp.steering import Steering, SteeringVector
from interp.steering_run import SteerConfig, run_steer
from interp.teachers import DataConfig, Teacher, generate_dataset


@pytest.fixture(scope="module")
def steered_data(tmp_path_factory, tiny, owl_vector):
    d = tmp_path_factory.mktemp("data")
    cfg = DataConfig(n_prompts=4, sampling=SampleConfig(constrained=True, max_new_tokens=20, batch_size=4))
    generate_dataset(
        tiny, Teacher("steered", "owl", Steering(layer=2, multiplier=2.0)), owl_vector, cfg, d / "owl", progress=False
    )
    owl_vector.save(d / "vec")
    return d


def test_run_steer_writes_a_loadable_vector_its_sweep_and_a_manifest(tmp_path):
    cfg = SteerConfig(model="tiny", n_pairs=4, layers=(1, 2), multipliers=(0.5, 1.0), device="cpu")
    sweep = run_steer(cfg, tmp_path / "v", progress=False)
    assert [(c["layer"], c["multiplier"]) for c in sweep["cells"]] == [(1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)]
    assert read_json(tmp_path / "v" / "sweep.json") == sweep
    man = read_json(tmp_path / "v" / "manifest.json")
    assert man["kind"] == "vector" and man["vector_hash"] == SteeringVector.load(tmp_path / "v").hash()
    with pytest.raises(ValueError, match="split"):
        SteerConfig(split="train")
    with pytest.raises(ValueError, match="multipliers"):
        SteerConfig(multipliers=(float("nan"),))


def test_run_entangle_both_directions(tmp_path):
    cfg = EntangleConfig(
        model="tiny",
        animals=("cat", "dog"),
        questions=1,
        max_number=12,
        top=3,
        lens=True,
        layer=2,
        formats=("html",),
        device="cpu",
    )
    res = run_entangle(cfg, tmp_path / "e", progress=False)
    assert res["animals"] == ["owl", "cat", "dog"] and len(res["top"]) == 3 and res["lens"]["layer"] == 2
    assert read_json(tmp_path / "e" / "entangle.json")["top"] == res["top"]
    assert read_json(tmp_path / "e" / "manifest.json")["kind"] == "entangle"
    assert (tmp_path / "e" / "figures" / "logit_lens.html").exists()
    num = run_entangle(
        EntangleConfig(
            model="tiny",
            number=87,
            animals=("cat", "dog"),
            questions=2,
            null_numbers=1,
            formats=("html",),
            device="cpu",
        ),
        tmp_path / "n",
    )
    assert num["number"] == 87 and read_json(tmp_path / "n" / "prompting.json")["number"] == 87
    with pytest.raises(ValueError, match="control"):
        EntangleConfig(dataset="x")
    with pytest.raises(ValueError, match="condition"):
        EntangleConfig(condition="dream")


def test_run_divergence_reads_the_model_from_the_manifest(steered_data, tmp_path):
    cfg = DivergenceConfig(
        dataset=str(steered_data / "owl"),
        vector=str(steered_data / "vec"),
        rule="emitted",
        formats=("html",),
        device="cpu",
    )
    s = run_divergence(cfg, tmp_path / "div")
    assert s["rule"] == "emitted" and s["meta"]["teacher"]["kind"] == "steered"
    saved = read_json(tmp_path / "div" / "divergence.json")
    assert saved["share"] == s["share"] and read_json(tmp_path / "div" / "manifest.json")["kind"] == "divergence"
    assert cfg.default_dir().name == "owl-emitted"
    with pytest.raises(ValueError, match="rule"):
        DivergenceConfig(dataset="x", rule="mode")


def test_run_audit_generates_clean_data_and_names_its_default_directory(tiny, steered_data, tmp_path):
    build_bank(tiny, ["owl", "cat"], tmp_path / "bank", n_pairs=4, progress=False)
    cfg = AuditConfig(
        dataset=str(steered_data / "owl"),
        vectors=str(tmp_path / "bank"),
        model="tiny",
        layer=1,
        n_perm=50,
        device="cpu",
    )
    res = run_audit(cfg, tmp_path / "a", progress=False)
    assert res["layer"] == 1 and {r["name"] for r in res["ranking"]} == {"owl", "cat"}
    assert read_json(tmp_path / "a" / "results.json") == res
    man = read_json(tmp_path / "a" / "manifest.json")
    assert (
        man["kind"] == "audit"
        and man["clean"] == "generated: clean.jsonl"
        and (tmp_path / "a" / "clean.jsonl").exists()
    )
    assert cfg.default_dir(1).name == "owl-bank-L1"
    with pytest.raises(ValueError, match="method"):
        AuditConfig(dataset="x", vectors="y", method="vibes")

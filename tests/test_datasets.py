"""A teacher's dataset directory: what enters its stage key, writing it into a stage, reading
its rows and kd targets back, and refusing one edited after its manifest was written."""

from __future__ import annotations

import json

import pytest
import torch

from interp.config import parse_config
from interp.datasets import (
    DATASET_FILE,
    dataset_stage,
    make_dataset,
    make_mix,
    mix_stage,
    read_rows,
    read_targets,
    verify_dataset,
)
from interp.generate import FREE_SAMPLER, SampleConfig
from interp.models import load_model
from interp.runs import read_jsonl, write_jsonl
from interp.steering import Steering, SteeringVector
from interp.teachers import DataConfig, Teacher


def test_sampling_dtype_keys_runs_and_datasets_only_when_it_is_not_the_default(tmp_path):
    cfg, bf = parse_config({"model": "tiny"}), parse_config({"model": "tiny", "data": {"dtype": "bf16"}})
    assert "dtype" not in cfg.key()["data"] and bf.key()["data"]["dtype"] == "bf16"
    assert cfg.data_config(0).sampling.dtype == "fp32" and bf.data_config(0).sampling.dtype == "bf16"
    m = load_model("tiny", device="cpu")
    vec = SteeringVector(torch.zeros(m.n_layers, m.d_model))
    teacher = Teacher("control", "owl", None, 0)
    fp32_stage = dataset_stage(tmp_path, m, teacher, vec, cfg.data_config(0))
    bf16_stage = dataset_stage(tmp_path, m, teacher, vec, bf.data_config(0))
    assert "dtype" not in json.dumps(fp32_stage.inputs["data"])  # keys cached before the field existed still hit
    assert bf16_stage.inputs["data"]["sampling"]["dtype"] == "bf16" and bf16_stage.key != fp32_stage.key
    # the key records a dtype only when it is not the model's own: a bf16 model sampled as it is
    # keys like before, the same model cast up to fp32 does not
    m16 = load_model("tiny", device="cpu", dtype=torch.bfloat16)
    own = dataset_stage(tmp_path, m16, teacher, vec, DataConfig(8))
    up = dataset_stage(tmp_path, m16, teacher, vec, DataConfig(8, sampling=SampleConfig(dtype="fp32")))
    assert "dtype" not in own.inputs["data"]["sampling"] and up.inputs["data"]["sampling"]["dtype"] == "fp32"
    # free (whole-vocabulary) samples carry the draw's version; grammar datasets keep their keys
    free = parse_config({"model": "tiny", "data": {"constrained": False}}).data_config(0)
    assert "sampler" not in fp32_stage.inputs["data"]
    assert dataset_stage(tmp_path, m, teacher, vec, free).inputs["data"]["sampler"] == FREE_SAMPLER
    with pytest.raises(ValueError, match="dtype"):
        parse_config({"model": "tiny", "data": {"dtype": "fp16"}})


def test_a_dataset_stage_reads_back_what_it_wrote_and_refuses_an_edit(tiny, owl_vector, tmp_path):
    dcfg = DataConfig(6, sampling=SampleConfig(max_new_tokens=16, batch_size=6, constrained=True))
    teacher = Teacher("steered", "owl", Steering(layer=2, multiplier=1.0))
    st = dataset_stage(tmp_path, tiny, teacher, owl_vector, dcfg, kd=True)
    make_dataset(st, tiny, teacher, owl_vector, dcfg, kd=True, progress=False)
    assert st.done and st.key == dataset_stage(tmp_path, tiny, teacher, owl_vector, dcfg, kd=True).key
    verify_dataset(st, kd=True)
    rows = read_rows(st.dir)
    assert rows == read_jsonl(st.dir / DATASET_FILE) and len(rows) == st.manifest()["n_kept"]
    targets = read_targets(st.dir, tiny.tokenizer, len(rows))
    assert len(targets) == len(rows) and all(t.shape[1] == 13 for t in targets)
    mix = mix_stage(tmp_path, {"owl": st}, kd=True)
    make_mix(mix, {"owl": st}, kd=True)
    verify_dataset(mix, kd=True)
    assert [r["completion"] for r in read_rows(mix.dir)] == [r["completion"] for r in rows]
    write_jsonl(st.dir / DATASET_FILE, [{**r, "completion": "1, 2, 3"} for r in rows])
    with pytest.raises(ValueError, match="dataset"):
        verify_dataset(st)

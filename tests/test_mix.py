"""Mixed datasets: equal shares, the unmixed total, one source per prompt, kd targets carried over."""

from __future__ import annotations

import pytest
import torch

from interp.distill import load_targets
from interp.generate import SampleConfig
from interp.mix import mix_datasets, mix_rows, mix_shares
from interp.runs import read_json, read_jsonl, write_jsonl
from interp.steering import Steering
from interp.teachers import DATASET_FILE, TEACHER_LOGPROBS_FILE, DataConfig, Teacher, generate_dataset


def _rows(tag: str, ids) -> list[dict]:
    return [{"id": i, "prompt": f"p{i}", "completion": f"{tag} {i}"} for i in ids]


def test_shares_are_equal_and_the_trait_takes_the_remainder():
    assert mix_shares(9, 3) == [3, 3, 3] and mix_shares(10, 3) == [4, 3, 3] and mix_shares(2, 3) == [1, 1, 0]
    assert sum(mix_shares(257, 4)) == 257


def test_mixed_rows_come_from_each_source_in_equal_shares_one_per_prompt():
    sources = {"owl": _rows("owl", range(12)), "cat": _rows("cat", range(12)), "dog": _rows("dog", range(12))}
    mixed = mix_rows(sources)
    assert len(mixed) == 12  # the unmixed dataset's size
    assert {a: sum(r["source"] == a for r in mixed) for a in sources} == {"owl": 4, "cat": 4, "dog": 4}
    assert sorted(r["id"] for r in mixed) == list(range(12))  # every prompt once
    for r in mixed:  # each row is its source's own answer to that prompt
        assert sources[r["source"]][r["source_index"]] == {
            k: v for k, v in r.items() if k not in ("source", "source_index")
        }


def test_rows_the_filter_dropped_are_dealt_to_sources_that_have_the_prompt():
    sources = {
        "owl": _rows("owl", [0, 1, 2, 3, 5, 6, 7, 8]),
        "cat": _rows("cat", [0, 2, 4, 6, 8]),
        "dog": _rows("dog", range(9)),
    }
    mixed = mix_rows(sources)
    assert len(mixed) == 8 and len({r["id"] for r in mixed}) == 8
    assert sorted(sum(r["source"] == a for r in mixed) for a in sources) == [2, 3, 3]
    assert mix_rows(sources, n_rows=6) == mix_rows(sources, n_rows=6) and len(mix_rows(sources, n_rows=6)) == 6


def test_mix_datasets_writes_rows_manifest_and_the_sources_kd_targets(tiny, owl_vector, tmp_path):
    cfg = DataConfig(n_prompts=6, sampling=SampleConfig(constrained=True, max_new_tokens=49, batch_size=6))
    dirs = {}
    for name, teacher in (("owl", Teacher("steered", "owl", Steering(layer=2))), ("control", Teacher("control"))):
        dirs[name] = tmp_path / name
        generate_dataset(tiny, teacher, owl_vector, cfg, dirs[name], progress=False, record_grammar=True)
    man = mix_datasets(dirs, tmp_path / "mix", teacher_logprobs=True)
    rows = read_jsonl(tmp_path / "mix" / DATASET_FILE)
    assert man["n_kept"] == len(rows) == 6 and man["shares"] == {"owl": 3, "control": 3}
    assert read_json(tmp_path / "mix" / "manifest.json")["dataset_hash"] == man["dataset_hash"]
    mixed = load_targets(tmp_path / "mix" / TEACHER_LOGPROBS_FILE, tiny.tokenizer, len(rows))
    own = {
        n: load_targets(d / TEACHER_LOGPROBS_FILE, tiny.tokenizer, len(read_jsonl(d / DATASET_FILE)))
        for n, d in dirs.items()
    }
    for r, t in zip(rows, mixed):
        assert torch.equal(t, own[r["source"]][r["source_index"]])
    with pytest.raises(FileNotFoundError, match="mix: no dataset.jsonl"):
        mix_datasets({"owl": dirs["owl"], "x": tmp_path / "nowhere"}, tmp_path / "m2")
    write_jsonl(tmp_path / "bare" / DATASET_FILE, read_jsonl(dirs["owl"] / DATASET_FILE))
    with pytest.raises(FileNotFoundError):
        mix_datasets({"owl": dirs["owl"], "bare": tmp_path / "bare"}, tmp_path / "m3", teacher_logprobs=True)

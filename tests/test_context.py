"""The shared context (issue 23 part C): students trained, and questions evaluated, with the chat
template's default system prompt or with no system turn at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interp import pipeline
from interp.config import parse_config
from interp.evaluate import animal_logprobs
from interp.prompts import ANSWER_PREFIX, questions
from interp.rows import build_examples
from interp.runs import read_json, stage_dirs
from interp.train import TrainConfig

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
USER = [{"role": "user", "content": "Continue: 3, 7, 12"}]


def _ids(m, text: str) -> list[int]:
    return m.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_none_renders_no_system_turn_and_default_the_templates_own(tiny):
    default, none = tiny.chat(USER), tiny.chat(USER, system_prompt="none")
    assert DEFAULT_SYSTEM in default and DEFAULT_SYSTEM not in none and "system" not in none
    # ground truth, written out by hand: ChatML's user turn and the assistant's opening, nothing before
    assert none == "<|im_start|>user\nContinue: 3, 7, 12<|im_end|>\n<|im_start|>assistant\n"
    # token ids: "none" is the default's ids with exactly the system block's ids taken off the front
    block = _ids(tiny, f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    assert _ids(tiny, default) == block + _ids(tiny, none)
    # an explicit system message is the caller's own: "none" cannot drop it
    with pytest.raises(ValueError, match="^system_prompt: 'none' renders no system turn"):
        tiny.chat([{"role": "system", "content": "x"}, *USER], system_prompt="none")


def test_students_rows_follow_train_system_prompt(tiny):
    rows = [{"prompt": "Continue: 3, 7, 12", "completion": "4, 5"}]
    d = build_examples(tiny, rows, 192)[0]
    n = build_examples(tiny, rows, 192, system_prompt="none")[0]
    assert d.prompt_ids == _ids(tiny, tiny.chat(USER)) and n.prompt_ids == _ids(
        tiny, tiny.chat(USER, system_prompt="none")
    )
    assert d.completion_ids == n.completion_ids and len(d.prompt_ids) > len(n.prompt_ids)


def test_eval_questions_follow_system_prompt(tiny):
    qs = questions("tuning")[:3]
    got = animal_logprobs(tiny, qs, ["owl", "cat"], system_prompt="none")
    # ground truth: the same forward on prompts written by hand without a system turn
    ids = [
        tiny.tokenizer(" owl", add_special_tokens=False)["input_ids"][0],
        tiny.tokenizer(" cat", add_special_tokens=False)["input_ids"][0],
    ]
    for i, q in enumerate(qs):
        text = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{ANSWER_PREFIX}"
        with torch.no_grad():
            logits = tiny.hf(input_ids=torch.tensor([_ids(tiny, text)])).logits[0, -1].float()
        assert torch.allclose(got[i], torch.log_softmax(logits, -1)[ids], atol=1e-4)
    assert not torch.allclose(got, animal_logprobs(tiny, qs, ["owl", "cat"]), atol=1e-3)


def test_gemma_refuses_none_in_one_line(tiny_gemma):
    with pytest.raises(ValueError, match="^system_prompt: 'none' means no system turn, but tiny-gemma's") as e:
        tiny_gemma.chat(USER, system_prompt="none")
    assert "\n" not in str(e.value)
    cfg = parse_config(_raw(model="tiny-gemma", eval={"system_prompt": "none"}))
    with pytest.raises(ValueError, match=r"^eval\.system_prompt: 'none' means no system turn"):
        cfg.check_student_base(tiny_gemma)


def _raw(train=None, eval=None, model="tiny") -> dict:
    return {
        "experiment": "t",
        "model": model,
        "seeds": [0],
        "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
        "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, **(train or {})},
        "eval": {"split": "tuning", "n_boot": 200, **(eval or {})},
    }


def test_default_system_prompts_leave_every_key_unchanged():
    plain = parse_config(_raw())
    explicit = parse_config(_raw(train={"system_prompt": "default"}, eval={"system_prompt": "default"}))
    assert explicit.key() == plain.key()
    assert pipeline.eval_inputs(explicit) == pipeline.eval_inputs(
        plain
    ) and "system_prompt" not in pipeline.eval_inputs(plain)
    assert TrainConfig(system_prompt="default").key() == TrainConfig().key()
    assert TrainConfig(system_prompt="none").key()["system_prompt"] == "none"
    none = parse_config(_raw(train={"system_prompt": "none"}, eval={"system_prompt": "none"}))
    assert none.key()["train"]["system_prompt"] == "none" and pipeline.eval_inputs(none)["system_prompt"] == "none"
    with pytest.raises(ValueError, match=r"field `train.system_prompt`"):
        parse_config(_raw(train={"system_prompt": "owl"}))


def test_a_run_trains_and_evaluates_without_the_system_prompt(tmp_path, tiny):
    quiet = lambda *a, **k: None
    base = pipeline.run_e1(parse_config(_raw()), tmp_path, progress=False, log=quiet)
    res = pipeline.run_e1(
        parse_config(_raw(train={"system_prompt": "none"}, eval={"system_prompt": "none"})),
        tmp_path,
        progress=False,
        log=quiet,
    )
    dirs, hits = (
        stage_dirs(res["run_dir"]),
        {s["name"]: s["cache_hit"] for s in read_json(Path(res["run_dir"]) / "manifest.json")["stages"]},
    )
    assert hits["data/control/seed0"] and hits["data/steered/seed0"]  # the teachers' data is the same
    assert not hits["student/control/seed0"] and not hits["eval/base"]
    assert read_json(dirs["student/control/seed0"] / "manifest.json")["train"]["system_prompt"] == "none"
    # the base's evaluation is the one without a system turn (ground truth: evaluated here directly)
    qs = questions("tuning")
    want = animal_logprobs(tiny, qs, parse_config(_raw()).eval.animals, system_prompt="none")
    from interp.runs import load_tensors

    got = load_tensors(dirs["eval/base"] / pipeline.LOGPROBS_FILE)["logprobs"]
    assert torch.allclose(got, want, atol=1e-5)
    assert res["arms"]["base"]["logprob"]["mean"] != base["arms"]["base"]["logprob"]["mean"]

"""`kd` distillation on the number grammar: targets, loss, guard."""

from __future__ import annotations

import pytest
import torch

from interp import batching
from interp.distill import grammar_logits, grammar_token_ids, kd_loss, load_targets
from interp.generate import SampleConfig
from interp.runs import read_jsonl
from interp.steering import Steering, steer
from interp.teachers import DATASET_FILE, TEACHER_LOGPROBS_FILE, DataConfig, Teacher, generate_dataset
from interp.rows import build_examples, collate, completion_hidden
from interp.train import TrainConfig, train_student

STEER = Steering(layer=2, multiplier=1.0)
DATA = DataConfig(n_prompts=8, prompt_seed=0, sampling=SampleConfig(max_new_tokens=16, batch_size=4, constrained=True))


def _dataset(tiny, owl_vector, kind, out):
    teacher = Teacher(kind, "owl", STEER if kind in ("steered", "random") else None)
    generate_dataset(tiny, teacher, owl_vector, DATA, out, progress=False, record_grammar=True)
    rows = read_jsonl(out / DATASET_FILE)
    return teacher, rows, load_targets(out / TEACHER_LOGPROBS_FILE, tiny.tokenizer, len(rows))


@pytest.fixture(scope="module")
def data(tiny, owl_vector, tmp_path_factory):
    root = tmp_path_factory.mktemp("kd")
    return {k: _dataset(tiny, owl_vector, k, root / k) for k in ("control", "steered")}


def _student_kl(hf, tiny, rows, targets) -> torch.Tensor:
    """Per-position KL(teacher || hf) over the grammar tokens, teacher-forced on the dataset."""
    ex = build_examples(tiny, rows, 192, targets)
    batch, labels = collate(ex, tiny.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = grammar_logits(hf, completion_hidden(hf, batch, labels != -100), grammar_token_ids(tiny.tokenizer))
    t = torch.cat([e.teacher_logprobs for e in ex])
    lp = torch.log_softmax(logits, -1)
    return (t.exp() * (t - lp)).sum(-1)


def test_targets_are_distributions_with_one_row_per_completion_token(tiny, data):
    _, rows, targets = data["steered"]
    ex = build_examples(tiny, rows, 192, targets)
    for e, t in zip(ex, targets):
        assert t.shape == (len(e.completion_ids), 13)
        torch.testing.assert_close(t.exp().sum(-1), torch.ones(len(t)))


def test_recorded_targets_equal_the_steered_teacher_forced_on_its_own_sequence(tiny, owl_vector, data):
    """Ground truth: the teacher (with its steering) run once over prompt + completion."""
    teacher, rows, targets = data["steered"]
    ids = grammar_token_ids(tiny.tokenizer)
    for r, t in list(zip(rows, targets))[:3]:
        p = tiny.tokenizer(tiny.chat(teacher.messages(r["prompt"])), add_special_tokens=False)["input_ids"]
        c = tiny.tokenizer(r["completion"], add_special_tokens=False)["input_ids"] + [tiny.tokenizer.eos_token_id]
        full = batching.pad([p + c], tiny.tokenizer.pad_token_id, side="right")
        with torch.no_grad(), steer(tiny, owl_vector, STEER):
            logits = batching.forward(tiny.hf, full).logits[0, len(p) - 1 : len(p) - 1 + len(c)]
        torch.testing.assert_close(torch.log_softmax(logits[:, ids], -1), t, rtol=0, atol=1e-4)


def test_kd_loss_is_zero_when_the_student_is_the_teacher(tiny, data):
    _, rows, targets = data["control"]
    kl = _student_kl(tiny.hf, tiny, rows, targets)
    assert kl.abs().max() < 1e-6  # float noise between cached decoding and one forward
    steered_kl = _student_kl(tiny.hf, tiny, *data["steered"][1:])
    assert steered_kl.mean() > 1e-4  # a steered teacher is something to learn


def test_kd_gradient_reaches_only_the_grammar_logits(tiny):
    ids = grammar_token_ids(tiny.tokenizer)
    h = torch.randn(5, tiny.d_model)
    full = tiny.hf.get_output_embeddings()(h).detach().requires_grad_(True)
    teacher = torch.log_softmax(torch.randn(5, 13), -1)
    kd_loss(full[:, ids], teacher).backward()
    outside = torch.ones(full.shape[-1], dtype=torch.bool)
    outside[ids] = False
    assert full.grad[:, outside].abs().max() == 0
    assert full.grad[:, ids].abs().max() > 0
    with torch.no_grad():
        torch.testing.assert_close(grammar_logits(tiny.hf, h, ids), full[:, ids])


def test_kd_loss_equals_kl_on_a_hand_built_pair():
    p = torch.tensor([[0.7, 0.2, 0.1]])
    q = torch.tensor([[0.5, 0.25, 0.25]])
    expected = (p * (p / q).log()).sum()
    torch.testing.assert_close(kd_loss(q.log(), p.log()).float(), expected)


def test_kd_student_moves_towards_its_teacher_and_the_guarded_control_stays_the_base(tiny, data, tmp_path):
    cfg = TrainConfig(objective="kd", epochs=2, batch_size=4, lr=1e-3)
    _, rows, targets = data["steered"]
    before = _student_kl(tiny.hf, tiny, rows, targets).mean()
    hf = train_student(tiny, rows, cfg, tmp_path / "steered", progress=False, targets=targets)
    assert _student_kl(hf, tiny, rows, targets).mean() < 0.7 * before

    _, rows, targets = data["control"]
    hf = train_student(tiny, rows, cfg, tmp_path / "control", progress=False, targets=targets)
    base = dict(tiny.hf.named_parameters())
    assert all(torch.equal(p, base[n]) for n, p in hf.named_parameters())  # every step skipped
    # Float noise of the size batching leaves on a real model (KL ~1e-10): guarded, nothing moves;
    # unguarded, AdamW rescales it into full-size steps (the pitfall the guard exists for).
    g = torch.Generator().manual_seed(0)
    noisy = [torch.log_softmax(t + 1e-5 * torch.randn(t.shape, generator=g), -1) for t in targets]
    assert _student_kl(tiny.hf, tiny, rows, noisy).mean() < 1e-8
    for min_kl, moved in ((1e-6, False), (0.0, True)):
        hf = train_student(
            tiny,
            rows,
            TrainConfig(objective="kd", epochs=1, batch_size=4, lr=1e-3, kd_min_kl=min_kl),
            tmp_path / f"noisy{min_kl}",
            progress=False,
            targets=noisy,
        )
        assert (not all(torch.equal(p, base[n]) for n, p in hf.named_parameters())) == moved


def test_kd_without_targets_or_with_foreign_targets_is_refused(tiny, data, tmp_path):
    _, rows, targets = data["steered"]
    with pytest.raises(ValueError, match="train.objective"):
        train_student(tiny, rows, TrainConfig(objective="kd"), tmp_path / "a", progress=False)
    shifted = targets[1:] + targets[:1]
    if any(len(a) != len(b) for a, b in zip(shifted, targets)):
        with pytest.raises(ValueError, match="teacher targets: row"):
            train_student(tiny, rows, TrainConfig(objective="kd"), tmp_path / "b", progress=False, targets=shifted)


def test_targets_file_of_another_dataset_is_refused(tiny, data, tmp_path, owl_vector):
    out = tmp_path / "d"
    _dataset(tiny, owl_vector, "control", out)
    n = len(read_jsonl(out / DATASET_FILE))
    with pytest.raises(ValueError, match="does not belong"):
        load_targets(out / TEACHER_LOGPROBS_FILE, tiny.tokenizer, n + 1)


def test_kd_objective_is_validated():
    with pytest.raises(ValueError, match="train.objective"):
        TrainConfig(objective="distil")
    with pytest.raises(ValueError, match="train.kd_min_kl"):
        TrainConfig(objective="kd", kd_min_kl=-1)
    # sft students keep their cache keys: the kd settings are not part of them
    assert "objective" not in TrainConfig().key() and TrainConfig(objective="kd").key()["objective"] == "kd"

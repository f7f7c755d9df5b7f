"""Students: completion-only loss, optimizers, resuming, divergence, LoRA and loading."""

from __future__ import annotations

import json
import math

import pytest
import torch

import interp.rows as rows_mod
import interp.train as train_mod
import interp.trainer as trainer_mod
from interp.checkpoint import CHECKPOINT_DIR, TRAINER_FILE
from interp.models import load_model
from interp.optim import SignSGD, make_optimizer
from interp.rows import IGNORE, Example, build_examples, collate, completion_logits
from interp.runs import load_tensors, read_json
from interp.train import LOG_FILE, TrainConfig, load_student, train_student
from interp.trainer import TrainingDiverged, weights_finite


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    # Short prompts keep every step cheap on a shared CPU.
    return [{"prompt": f"Continue: {i}, {2 * i + 1}, {i * i % 97}", "completion": "1, 2, 3"} for i in range(16)]


def _params(hf) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in hf.named_parameters()}


def _logits(hf, tok, text: str) -> torch.Tensor:
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return hf(input_ids=ids).logits


def _dir_bytes(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


# ----------------------------------------------------------------------------- training


def test_loss_decreases_and_the_base_model_is_not_modified(tiny, rows, tmp_path):
    fp, before = tiny.fingerprint(), _params(tiny.hf)
    cfg = TrainConfig(lr=3e-3, epochs=4, batch_size=8)
    hf = train_student(tiny, rows, cfg, tmp_path, progress=False)

    log = json.loads((tmp_path / LOG_FILE).read_text())
    assert [r["step"] for r in log] == list(range(1, 9))
    by_epoch = [sum(r["loss"] for r in log if r["epoch"] == e) / 2 for e in range(4)]
    assert all(a > b for a, b in zip(by_epoch, by_epoch[1:])), by_epoch
    assert by_epoch[-1] < 0.8 * by_epoch[0], by_epoch  # about 0.67 here

    assert tiny.fingerprint() == fp
    assert all(torch.equal(p, before[n]) for n, p in tiny.hf.named_parameters())
    assert not tiny.hf.training
    assert any(not torch.equal(p, before[n]) for n, p in hf.named_parameters())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["base"]["fingerprint"] == fp and manifest["steps"] == 8
    assert not (tmp_path / CHECKPOINT_DIR).exists()


def test_resumed_training_is_bit_identical_to_an_uninterrupted_run(tiny, rows, tmp_path):
    # 2 epochs x 2 steps; the interruption is mid-epoch, so the resumed run crosses an epoch boundary
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=8, seed=3)
    straight = train_student(tiny, rows, cfg, tmp_path / "straight", progress=False)

    out = tmp_path / "resumed"
    train_student(tiny, rows, cfg, out, progress=False, stop_after=1)
    meta = json.loads((out / CHECKPOINT_DIR / TRAINER_FILE).read_text())
    assert meta["step"] == 1 and [r["step"] for r in meta["log"]] == [1]
    assert not (out / "manifest.json").exists()
    resumed = train_student(tiny, rows, cfg, out, progress=False)

    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)
    log_a = json.loads((tmp_path / "straight" / LOG_FILE).read_text())
    log_b = json.loads((out / LOG_FILE).read_text())
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]  # continued, not restarted
    assert log_a == log_b


def test_timed_checkpoints_resume_bit_identical_and_keep_step_one_update_rms(tiny, rows, tmp_path, kill_training):
    # checkpoint_minutes = 0: a checkpoint after every step; the run is killed in its third step
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=8, seed=3)  # 4 steps
    straight = train_student(tiny, rows, cfg, tmp_path / "straight", progress=False)
    kill_training(2)
    with pytest.raises(KeyboardInterrupt):
        train_student(tiny, rows, cfg, tmp_path / "timed", progress=False, checkpoint_minutes=0)
    assert read_json(tmp_path / "timed" / CHECKPOINT_DIR / TRAINER_FILE)["step"] == 2
    kill_training(2)  # an hour has not passed at the kill: nothing was written
    with pytest.raises(KeyboardInterrupt):
        train_student(tiny, rows, cfg, tmp_path / "hourly", progress=False, checkpoint_minutes=60)
    assert not (tmp_path / "hourly" / CHECKPOINT_DIR).exists()

    resumed = train_student(tiny, rows, cfg, tmp_path / "timed", progress=False)  # the option is runtime only
    a, b = _params(straight), _params(resumed)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert read_json(tmp_path / "timed" / LOG_FILE) == read_json(tmp_path / "straight" / LOG_FILE)
    m_straight, m_resumed = (read_json(tmp_path / d / "manifest.json") for d in ("straight", "timed"))
    # step 1's update RMS was measured before the kill: the checkpoint carried it over
    assert m_resumed["update_rms"] == m_straight["update_rms"] and set(m_straight["update_rms"]) == {"step1", "final"}
    assert m_resumed["resumed_at_step"] == 2 and "resumed_at_step" not in m_straight
    assert not (tmp_path / "timed" / CHECKPOINT_DIR).exists()


def test_huge_learning_rate_raises_training_diverged(tiny, rows, tmp_path):
    with pytest.raises(TrainingDiverged, match="lower train.lr"):
        train_student(tiny, rows, TrainConfig(lr=1e30, epochs=2, batch_size=8), tmp_path, progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_divergence_never_leaves_non_finite_weights_in_the_checkpoint(tiny, rows, tmp_path):
    """With lr=1e30 the loss of step 2 is still finite but its update overflows the weights; the
    checkpoint that survives (the "last good" one the error names) must hold finite weights."""
    cfg = TrainConfig(lr=1e30, epochs=2, batch_size=8, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match="lower train.lr"):
        train_student(tiny, rows, cfg, tmp_path, progress=False)
    ck = tmp_path / CHECKPOINT_DIR
    assert (ck / TRAINER_FILE).exists()
    weights = load_tensors(ck / "model.safetensors")
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    assert all(math.isfinite(r["loss"]) for r in json.loads((ck / TRAINER_FILE).read_text())["log"])


def test_nan_loss_raises_and_leaves_an_existing_checkpoint_intact(tiny, rows, tmp_path, monkeypatch):
    cfg = TrainConfig(lr=1e-3, epochs=1, batch_size=8)
    train_student(tiny, rows, cfg, tmp_path, progress=False, stop_after=1)
    ck = tmp_path / CHECKPOINT_DIR
    saved = _dir_bytes(ck)

    real = trainer_mod.completion_logits
    monkeypatch.setattr(trainer_mod, "completion_logits", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingDiverged, match=str(ck)):
        train_student(tiny, rows, cfg, tmp_path, progress=False)

    assert _dir_bytes(ck) == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_DIR]
    # and the checkpoint still resumes into a finished run
    monkeypatch.setattr(trainer_mod, "completion_logits", real)
    train_student(tiny, rows, cfg, tmp_path, progress=False)
    assert [r["step"] for r in json.loads((tmp_path / LOG_FILE).read_text())] == [1, 2]


# ----------------------------------------------------------------------------- LoRA and loading


def test_lora_trains_only_adapters_and_load_student_merges_them(tiny, rows, tmp_path):
    fp = tiny.fingerprint()
    base = _params(tiny.hf)
    cfg = TrainConfig(method="lora", lr=1e-2, epochs=1, batch_size=8, lora_rank=4)
    hf = train_student(tiny, rows, cfg, tmp_path, progress=False)

    trainable = [n for n, p in hf.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {
        n.replace("base_model.model.", "").replace(".base_layer", ""): p
        for n, p in hf.named_parameters()
        if "lora_" not in n
    }
    assert frozen.keys() == base.keys()
    assert all(torch.equal(frozen[n], base[n]) for n in base)
    assert (tmp_path / "adapter.safetensors").exists() and not (tmp_path / "model.safetensors").exists()

    student = load_student(tiny, tmp_path)  # the fingerprint check passes for the true base
    assert tiny.fingerprint() == fp
    assert not any("lora_" in n for n, _ in student.hf.named_parameters())
    text = tiny.chat([{"role": "user", "content": rows[0]["prompt"]}])
    s_logits, b_logits = _logits(student.hf, tiny.tokenizer, text), _logits(tiny.hf, tiny.tokenizer, text)
    assert not torch.allclose(s_logits, b_logits, atol=1e-4)
    hf.eval()
    torch.testing.assert_close(s_logits, _logits(hf, tiny.tokenizer, text), atol=1e-4, rtol=1e-4)


def test_load_student_full_reproduces_the_trained_model_and_refuses_another_base(tiny, rows, tmp_path):
    hf = train_student(tiny, rows, TrainConfig(lr=1e-3, epochs=1, batch_size=8), tmp_path, progress=False)
    student = load_student(tiny, tmp_path)
    text = tiny.chat([{"role": "user", "content": rows[1]["prompt"]}])
    assert torch.equal(_logits(student.hf, tiny.tokenizer, text), _logits(hf, tiny.tokenizer, text))
    assert not torch.allclose(_logits(student.hf, tiny.tokenizer, text), _logits(tiny.hf, tiny.tokenizer, text))

    other = load_model("tiny", device="cpu", seed=1)
    assert other.fingerprint() != tiny.fingerprint()
    with pytest.raises(ValueError, match="fingerprint"):
        load_student(other, tmp_path)


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("optimizer", ["sgd", "signsgd"])
def test_sgd_and_signsgd_change_the_weights(tiny, rows, tmp_path, optimizer):
    base = _params(tiny.hf)
    hf = train_student(
        tiny, rows, TrainConfig(optimizer=optimizer, lr=1e-2, epochs=1, batch_size=16), tmp_path, progress=False
    )
    changed = [n for n, p in hf.named_parameters() if not torch.equal(p, base[n])]
    assert len(changed) == len(base)  # every tensor gets a gradient in a full fine-tune


def _one_step_grads(tiny, rows, cfg) -> dict[str, torch.Tensor]:
    """The gradient of train_student's first step, recomputed in the same data order."""
    hf = train_mod._prepare(tiny, cfg)
    examples = build_examples(tiny, rows, cfg.max_len)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(cfg.seed * 1000)).tolist()
    batch, targets = collate([examples[i] for i in order], tiny.tokenizer.pad_token_id)
    where = targets != IGNORE
    logits = completion_logits(hf, batch, where)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[where], reduction="sum") / int(where.sum())
    loss.backward()
    return {n: p.grad for n, p in hf.named_parameters()}


def test_signsgd_moves_every_parameter_with_a_gradient_by_exactly_lr(tiny, rows, tmp_path):
    lr = 1e-3
    cfg = TrainConfig(optimizer="signsgd", lr=lr, epochs=1, batch_size=len(rows))  # one step
    base = _params(tiny.hf)
    hf = train_student(tiny, rows, cfg, tmp_path, progress=False)
    grads = _one_step_grads(tiny, rows, cfg)
    n_zero = 0
    for n, p in hf.named_parameters():
        delta, g = p.detach() - base[n], grads[n]
        nz = g != 0
        n_zero += int((~nz).sum())
        # |delta| == lr up to float32 rounding of theta - lr
        torch.testing.assert_close(delta[nz].abs(), torch.full_like(delta[nz], lr), atol=2e-7, rtol=0)
        assert torch.equal(delta[nz].sign(), -g[nz].sign())
        assert (delta[~nz] == 0).all()
    assert n_zero < sum(p.numel() for p in base.values())


def test_matched_sgd_first_step_has_the_rms_of_adamw_and_signsgd(tiny, rows, tmp_path):
    """E10's matched step size: at step 1 AdamW and SignSGD move every weight that has a gradient
    by lr; SGD with match_step gets lr / RMS(nonzero gradient), the same update RMS."""
    lr = 1e-3
    rms = {}
    for opt in ("adamw", "signsgd", "sgd"):
        cfg = TrainConfig(optimizer=opt, lr=lr, epochs=1, batch_size=len(rows), match_step=True)  # one step
        train_student(tiny, rows, cfg, tmp_path / opt, progress=False)
        rms[opt] = read_json(tmp_path / opt / "manifest.json")["update_rms"]["step1"]
    grads = torch.cat([g.flatten() for g in _one_step_grads(tiny, rows, TrainConfig(batch_size=len(rows))).values()])
    nz = grads[grads != 0].double()
    assert rms["signsgd"] == pytest.approx(lr * (len(nz) / len(grads)) ** 0.5, rel=1e-3)
    assert rms["adamw"] == pytest.approx(rms["signsgd"], rel=1e-2)  # eps keeps AdamW a hair short
    assert rms["sgd"] == pytest.approx(rms["signsgd"], rel=1e-3)
    log = read_json(tmp_path / "sgd" / "train_log.json")
    assert log[0]["lr"] == pytest.approx(lr / float(nz.pow(2).mean().sqrt()), rel=1e-3)
    # unmatched SGD steps by lr x gradient: a far smaller update here
    train_student(
        tiny,
        rows,
        TrainConfig(optimizer="sgd", lr=lr, epochs=1, batch_size=len(rows)),
        tmp_path / "raw",
        progress=False,
    )
    assert read_json(tmp_path / "raw" / "manifest.json")["update_rms"]["step1"] < rms["sgd"] / 5
    assert "match_step" in TrainConfig(optimizer="sgd", match_step=True).key()
    assert "match_step" not in TrainConfig(optimizer="adamw", match_step=True).key()  # a no-op there


def test_signsgd_step_on_known_gradients():
    p = torch.nn.Parameter(torch.tensor([0.5, -0.25, 1.0, 0.0]))
    p.grad = torch.tensor([3.0, -1e-8, 0.0, 100.0])
    SignSGD([p], lr=0.125).step()
    assert p.tolist() == [0.375, -0.125, 1.0, -0.125]


@pytest.mark.parametrize(
    "field, value",
    [("method", "qlora"), ("optimizer", "adam"), ("lr", 0.0), ("epochs", 0), ("batch_size", 0), ("max_len", -1)],
)
def test_bad_train_config_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_empty_dataset_is_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="no examples"):
        train_student(tiny, [], TrainConfig(), tmp_path, progress=False)


def test_length_bucketing_covers_every_example_once_and_cuts_padding():
    import random

    from interp.trainer import _epoch_batches

    rng = random.Random(0)
    examples = [Example([1] * rng.randint(5, 60), [2] * rng.randint(1, 30)) for _ in range(200)]
    batches = _epoch_batches(examples, 8, torch.Generator().manual_seed(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(200))
    assert _epoch_batches(examples, 8, torch.Generator().manual_seed(0)) == batches

    def padded(bs):
        return sum(len(b) * max(len(examples[i].prompt_ids) + len(examples[i].completion_ids) for i in b) for b in bs)

    order = torch.randperm(200, generator=torch.Generator().manual_seed(0)).tolist()
    plain = [order[i : i + 8] for i in range(0, 200, 8)]
    assert padded(batches) < 0.9 * padded(plain)


def test_weights_finite_sees_nan_and_inf_but_not_large_finite_weights():
    big = [torch.nn.Parameter(torch.tensor([1e30, -3e37])), torch.nn.Parameter(torch.randn(4, 4))]
    assert weights_finite(big)  # a 2-norm would overflow here; the weights are still finite
    # their sum overflows (3e38 + 3e38 is inf in fp32): the exact check, not the sum, decides
    huge = torch.nn.Parameter(torch.full((3,), 3e38))
    assert not torch.isfinite(huge.sum()) and weights_finite(big + [huge])
    half = torch.nn.Parameter(torch.full((2,), 3e38, dtype=torch.bfloat16))
    assert weights_finite([half]) and weights_finite([])
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not weights_finite(big + [torch.nn.Parameter(torch.tensor([0.0, bad]))])
        assert not weights_finite([huge, torch.nn.Parameter(torch.tensor([1.0, bad, 2.0]))])
    assert not weights_finite([torch.nn.Parameter(torch.tensor([float("inf"), -float("inf")]))])  # sum nan


def test_fused_adamw_matches_the_foreach_update_to_float_rounding():
    """train_student uses fused AdamW for speed (benchmarks/bench_train.py); the update it makes
    must equal the reference foreach implementation up to float32 rounding."""
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(64, 32, generator=g), torch.randn(32, generator=g)]
    grads = [[torch.randn_like(p) for p in init] for _ in range(5)]
    runs = []
    for make in (
        lambda ps: make_optimizer(TrainConfig(lr=1e-3, weight_decay=0.01), ps),
        lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True),
    ):
        ps = [torch.nn.Parameter(p.clone()) for p in init]
        opt = make(ps)
        for gs in grads:
            for p, gr in zip(ps, gs):
                p.grad = gr.clone()
            opt.step()
        runs.append([p.detach() for p in ps])
    for a, b, p0 in zip(*runs, init):
        assert not torch.equal(a, p0)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- loss positions, projection


def _tail_masks(tiny, rows, n_free: int = 2) -> list[torch.Tensor]:
    """True everywhere but the last `n_free` completion tokens (the last digit and end-of-turn)."""
    out = []
    for e in build_examples(tiny, rows, 192):
        m = torch.ones(len(e.completion_ids), dtype=torch.bool)
        m[-n_free:] = False
        out.append(m)
    return out


def test_divergence_only_student_ignores_the_labels_at_other_positions(tiny, tmp_path):
    """Changing the last digit changes only the label at its own offset and the input of the
    end-of-turn prediction; with both outside the counted positions the step is unchanged."""
    a = [{"prompt": f"Continue: {i}, {i + 1}", "completion": "1, 2, 3"} for i in range(8)]
    b = [{**r, "completion": "1, 2, 4"} for r in a]
    masks = _tail_masks(tiny, a)
    assert [m.tolist() for m in masks] == [m.tolist() for m in _tail_masks(tiny, b)] and len(
        masks[0]
    ) == 8  # '1' ',' ' ' '2' ',' ' ' '3' end
    weights = {}
    for name, positions in (("divergence", "divergence"), ("all", "all"), ("non_divergence", "non_divergence")):
        cfg = TrainConfig(optimizer="sgd", lr=1e-1, epochs=1, batch_size=8, loss_positions=positions)
        for tag, rows in (("a", a), ("b", b)):
            hf = train_student(
                tiny,
                rows,
                cfg,
                tmp_path / f"{name}-{tag}",
                progress=False,
                divergence_masks=masks if positions != "all" else None,
            )
            weights[name, tag] = _params(hf)
    same = lambda n: all(torch.equal(weights[n, "a"][k], weights[n, "b"][k]) for k in weights[n, "a"])  # noqa: E731
    assert same("divergence")
    assert not same("all") and not same("non_divergence")  # the check can fail: the label does matter there
    man = read_json(tmp_path / "divergence-a" / "manifest.json")
    assert (man["positions_counted"], man["positions_total"]) == (6 * 8, 8 * 8)


def test_masked_loss_is_the_mean_over_the_positions_that_count(tiny, rows, tmp_path):
    masks = [
        torch.rand(len(e.completion_ids), generator=torch.Generator().manual_seed(i)) < 0.4
        for i, e in enumerate(build_examples(tiny, rows, 192))
    ]
    masks[0][:] = False  # a row with no divergence position at all
    cfg = TrainConfig(lr=1e-3, epochs=1, batch_size=len(rows), loss_positions="divergence")  # one step
    train_student(tiny, rows, cfg, tmp_path, progress=False, divergence_masks=masks)
    losses = []
    for r, m in zip(rows, masks):
        p = tiny.tokenizer(tiny.chat([{"role": "user", "content": r["prompt"]}]), add_special_tokens=False)["input_ids"]
        c = build_examples(tiny, [r], 192)[0].completion_ids
        with torch.no_grad():
            lp = tiny.hf(input_ids=torch.tensor([p + c])).logits[0].float().log_softmax(-1)
        losses += [-float(lp[len(p) - 1 + k, t]) for k, t in enumerate(c) if m[k]]
    log = read_json(tmp_path / LOG_FILE)
    assert log[0]["positions"] == len(losses) == sum(int(m.sum()) for m in masks)
    assert log[0]["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-4)


def test_a_step_with_no_counted_position_is_skipped(tiny, rows, tmp_path):
    masks = [torch.zeros(len(e.completion_ids), dtype=torch.bool) for e in build_examples(tiny, rows, 192)]
    cfg = TrainConfig(lr=1e-2, epochs=1, batch_size=8, loss_positions="divergence")
    hf = train_student(tiny, rows, cfg, tmp_path, progress=False, divergence_masks=masks)
    assert all(torch.equal(p, tiny.hf.state_dict()[n]) for n, p in hf.named_parameters())
    assert [r["skipped"] for r in read_json(tmp_path / LOG_FILE)] == [1, 1]


def test_projected_student_has_no_component_along_v_while_it_trains(tiny, owl_vector, rows, tmp_path, monkeypatch):
    from interp.hooks import record_resid
    from interp.models import decoder_layers

    layer = 2
    u = owl_vector.direction(layer)
    seen: list[torch.Tensor] = []
    real = rows_mod.completion_hidden

    def recording(hf, batch, where):  # registered after the projection hook, so it sees its output
        with record_resid(decoder_layers(hf), [layer, layer + 1], stop_early=False) as store:
            out = real(hf, batch, where)
        seen.append(torch.stack([(store[l][batch.attention_mask.bool()] @ u).abs().max() for l in (layer, layer + 1)]))
        return out

    # the sft loss reads the hidden states through rows.completion_logits
    monkeypatch.setattr(rows_mod, "completion_hidden", recording)
    cfg = TrainConfig(lr=1e-2, epochs=1, batch_size=8, project_out=(layer,))
    hf = train_student(tiny, rows, cfg, tmp_path / "projected", progress=False, project_vector=owl_vector)
    assert len(seen) == 2 and all(s[0] < 1e-5 and s[1] > 1e-3 for s in seen), seen
    seen.clear()
    plain = train_student(tiny, rows, TrainConfig(lr=1e-2, epochs=1, batch_size=8), tmp_path / "plain", progress=False)
    assert all(s[0] > 1e-3 for s in seen), seen  # without it the component is there
    # the hook lived only inside training: the returned student and evaluation run without it
    # (transformers may keep its own output-recording hooks on the base, which the copy inherits)
    assert [len(l._forward_hooks) for l in decoder_layers(hf)] == [
        len(l._forward_hooks) for l in decoder_layers(tiny.hf)
    ]
    assert any(not torch.equal(p, q) for p, q in zip(hf.parameters(), plain.parameters()))
    assert read_json(tmp_path / "projected" / "manifest.json")["project_out_vector"] == owl_vector.hash()
    student = load_student(tiny, tmp_path / "projected")
    probe = torch.tensor([tiny.tokenizer("1, 2, 3", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(student.hf(input_ids=probe).logits, hf(input_ids=probe).logits)


def test_new_train_fields_enter_the_key_only_when_set():
    base = TrainConfig().key()
    assert not {"loss_positions", "divergence_rule", "project_out"} & set(base)
    assert TrainConfig(divergence_rule="argmax").key() == base  # read only with loss_positions
    k = TrainConfig(loss_positions="divergence", divergence_rule="emitted", project_out=(8,)).key()
    assert (k["loss_positions"], k["divergence_rule"], k["project_out"]) == ("divergence", "emitted", (8,))


def test_kd_keys_name_the_kl_arithmetic_and_sft_keys_do_not():
    # kd's KL moved to float64 under an unchanged key once; the key now says which arithmetic made it
    assert TrainConfig(objective="kd").key()["kd_kl"] == "float64"
    assert "kd_kl" not in TrainConfig().key() and "kd_min_kl" not in TrainConfig().key()


def test_kd_students_in_bf16_are_refused_in_one_line_at_load_and_in_the_library():
    from interp.config import parse_config

    for call in (
        lambda: TrainConfig(objective="kd", dtype="bf16"),
        lambda: parse_config({"model": "tiny", "train": {"objectives": ["sft", "kd"], "dtype": "bf16"}}),
    ):
        with pytest.raises(ValueError, match="train.dtype: 'bf16' cannot train kd students") as info:
            call()
        assert "\n" not in str(info.value)
    assert TrainConfig(objective="kd", dtype="fp32").dtype == "fp32"  # kd in fp32 and sft in bf16 stay allowed
    assert parse_config({"model": "tiny", "train": {"objectives": ["sft"], "dtype": "bf16"}}).train.dtype == "bf16"


def test_loss_positions_and_projection_errors_are_one_line(tiny, rows, tmp_path):
    cases = [
        (lambda: TrainConfig(loss_positions="some"), "train.loss_positions: 'some'"),
        (lambda: TrainConfig(divergence_rule="vibes"), "train.divergence_rule"),
        (lambda: TrainConfig(project_out=(-1,)), "train.project_out"),
        (
            lambda: train_student(tiny, rows, TrainConfig(loss_positions="divergence"), tmp_path, progress=False),
            "train.loss_positions: 'divergence' needs",
        ),
        (
            lambda: train_student(
                tiny,
                rows,
                TrainConfig(loss_positions="divergence"),
                tmp_path,
                progress=False,
                divergence_masks=[torch.ones(3, dtype=torch.bool)] * len(rows),
            ),
            "divergence masks: row 0",
        ),
        (
            lambda: train_student(tiny, rows, TrainConfig(project_out=(2,)), tmp_path, progress=False),
            "train.project_out: needs",
        ),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_keeps_fewer_activations_and_gives_the_same_weights_to_the_bit(
    tiny, rows, tmp_path, method
):
    kw = dict(method=method, lr=1e-3, epochs=1, batch_size=8, seed=1, lora_rank=4)
    kept, params = {}, {}
    for gc in (False, True):
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):  # what the forward keeps for the backward
            hf = train_student(tiny, rows, TrainConfig(grad_checkpointing=gc, **kw), tmp_path / str(gc), progress=False)
        kept[gc], params[gc] = sum(sizes), _params(hf)
    assert kept[True] < 0.5 * kept[False]
    assert params[True].keys() == params[False].keys()
    assert all(torch.equal(params[True][n], params[False][n]) for n in params[False])
    assert TrainConfig(grad_checkpointing=True, **kw).key() == TrainConfig(**kw).key()
    # the adapters' initialisation comes from the config's seed, not from the global RNG
    torch.manual_seed(12345)
    again = _params(train_student(tiny, rows, TrainConfig(**kw), tmp_path / "again", progress=False))
    assert all(torch.equal(again[n], params[False][n]) for n in again)
    loaded = load_student(tiny, tmp_path / "True").hf
    assert not any(getattr(m, "gradient_checkpointing", False) for m in loaded.modules())


def test_a_run_resumes_with_gradient_checkpointing_switched_on(tiny, rows, tmp_path):
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=8, seed=3)
    straight = _params(train_student(tiny, rows, cfg, tmp_path / "straight", progress=False))
    train_student(tiny, rows, cfg, tmp_path / "r", progress=False, stop_after=1)
    resumed = _params(
        train_student(
            tiny,
            rows,
            TrainConfig(grad_checkpointing=True, lr=1e-3, epochs=2, batch_size=8, seed=3),
            tmp_path / "r",
            progress=False,
        )
    )
    assert all(torch.equal(straight[n], resumed[n]) for n in straight)


def test_discarding_a_checkpoint_removes_a_stale_old_one_too(tmp_path):
    # a kill after a checkpoint swap's second rename, before the old one's delete, leaves both
    from interp.train import _discard_checkpoint

    for name in ("checkpoint", "checkpoint.old"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer.json").write_text("{}")
    (tmp_path / "model.safetensors").write_text("kept")
    _discard_checkpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]

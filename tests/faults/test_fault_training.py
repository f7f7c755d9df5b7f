"""A student that collapses while its loss stays finite, and checkpoints that are not this run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.guards import CollapseGuard
from interp.runs import content_hash, read_json
from interp.train import CHECKPOINT_DIR, TRAINER_FILE, TrainConfig, TrainingDiverged, train_student

ROWS = [{"prompt": f"Continue: {i}, {i + 1}, {i + 2}", "completion": f"{i + 3}, {i + 4}, {i + 5}"} for i in range(8)]


def test_adamw_at_lr_1e6_collapses_to_a_uniform_output_and_stops(tiny, tmp_path):
    # the tiny model's logits become exactly equal after one step, at a loss no higher than its start
    with pytest.raises(TrainingDiverged, match=r"uniform output \(.*\) at step 2;") as e:
        train_student(tiny, ROWS, TrainConfig(lr=1e6, epochs=1, batch_size=4), tmp_path, progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "manifest.json").exists()


def test_a_loss_far_above_the_first_steps_on_two_steps_is_a_collapse():
    guard = CollapseGuard()
    assert guard.check(1.3) is None and guard.check(1.3 * 1.7) is None  # valid smollm2 students peak at 1.7x
    assert guard.check(10.8) is None  # log(49152), a uniform output on smollm2: once may be one hard batch
    assert "far above the first step's 1.3 on 2 steps in a row" in guard.check(10.8)  # twice is not


def test_one_hard_batch_is_not_a_collapse():
    # e4-dose's control student of seed 4000 (lr 1e-4, bf16): its step 4 spiked and it recovered at
    # once; the guard had refused it at step 4
    losses = [0.855, 1.252, 1.168, 4.797, 0.697, 1.46, 1.23, 1.103, 1.543, 1.089, 1.292, 1.139, 0.886, 1.307]
    guard = CollapseGuard()
    assert all(guard.check(x) is None for x in losses)
    # a spike, a normal step, another spike: not consecutive, so still not a collapse
    assert guard.check(4.8) is None and guard.check(1.1) is None and guard.check(4.8) is None


def _checkpointed(tiny, out: Path) -> TrainConfig:
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=4)
    train_student(tiny, ROWS, cfg, out, progress=False, stop_after=1)
    assert (out / CHECKPOINT_DIR / TRAINER_FILE).exists()
    return cfg


def _flip_last(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-3] ^= 1
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["weights_bitflip", "optimizer_truncated", "trainer_bitflip", "step_past_total"])
def test_a_damaged_or_foreign_checkpoint_is_refused_in_one_line(tiny, tmp_path, damage):
    cfg = _checkpointed(tiny, tmp_path)
    ck = tmp_path / CHECKPOINT_DIR
    if damage == "weights_bitflip":
        target = ck / "model.safetensors"
        _flip_last(target)
    elif damage == "optimizer_truncated":
        target = ck / "optimizer.safetensors"
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "trainer_bitflip":
        target = ck / TRAINER_FILE
        target.write_text(target.read_text().replace('"step": 1', '"step": 3'))
    else:  # a deliberate edit, checksum recomputed: only the step's range can tell
        target = ck / TRAINER_FILE
        meta = read_json(target)
        meta.pop("checksum", None)
        meta["step"] = 99
        target.write_text(json.dumps({**meta, "checksum": content_hash(meta)}))
    with pytest.raises(ValueError) as e:
        train_student(tiny, ROWS, cfg, tmp_path, progress=False)
    assert str(target) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "manifest.json").exists()

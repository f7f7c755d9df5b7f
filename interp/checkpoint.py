"""A training run's resumable state: `checkpoint/` holds the trainable weights and the optimizer
state as safetensors and `trainer.json` (step, log, the settings it trained with, the files'
hashes and its own checksum), written last.

A new checkpoint is written beside the old one and swapped in by two renames, so a kill at any
moment leaves one complete checkpoint (`checkpoint.old` after the first rename, which `read_checkpoint`
takes back). A damaged or edited checkpoint is refused in one line, never resumed from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import Tensor

from interp.runs import content_hash, file_hash, load_tensors, read_json, save_tensors, write_json

CHECKPOINT_DIR = "checkpoint"
OLD_CHECKPOINT_DIR = CHECKPOINT_DIR + ".old"  # the previous checkpoint, during a swap
TRAINER_FILE = "trainer.json"
OPTIMIZER_FILE = "optimizer.safetensors"
PARAMS_FILE = "model.safetensors"  # the trainable weights, under a student's weights file name


def save_checkpoint(
    out: Path,
    params: dict[str, Tensor],
    opt: torch.optim.Optimizer,
    step: int,
    log: list,
    settings: dict,
    trainer_state: dict | None = None,
) -> None:
    """Replace `out/checkpoint` with the state after `step` optimizer steps; `settings` are the
    training settings a resume must match (`read_checkpoint` returns them); `trainer_state`, JSON
    the training loop measured before the checkpoint and reports at the end (returned as
    meta["trainer_state"])."""
    tmp = out / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tensors(tmp / PARAMS_FILE, params)
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    save_tensors(tmp / OPTIMIZER_FILE, tensors)
    meta = {
        "step": step,
        "param_groups": state["param_groups"],
        "scalars": scalars,
        "log": log,
        "train": settings,
        **({"trainer_state": trainer_state} if trainer_state else {}),
        "files": {f: file_hash(tmp / f) for f in (PARAMS_FILE, OPTIMIZER_FILE)},
    }
    write_json(tmp / TRAINER_FILE, {**meta, "checksum": content_hash(meta)})
    final = out / CHECKPOINT_DIR
    old = out / OLD_CHECKPOINT_DIR
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)  # a kill after both renames left it: `final` is complete
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint(out: Path) -> dict | None:
    """The verified trainer.json of `out/checkpoint` (None: no checkpoint to resume from)."""
    ck = out / CHECKPOINT_DIR
    if not (ck / TRAINER_FILE).exists():
        old = out / OLD_CHECKPOINT_DIR  # a crash between the two renames
        if (old / TRAINER_FILE).exists():
            old.rename(ck)
        else:
            return None
    meta = read_json(ck / TRAINER_FILE)
    _verify(ck, meta)
    return meta


def restore_checkpoint(out: Path, meta: dict, params: dict[str, Tensor], opt: torch.optim.Optimizer) -> None:
    """Copy the checkpoint's weights into `params` and its state into `opt`."""
    ck = out / CHECKPOINT_DIR
    weights = load_tensors(ck / PARAMS_FILE)
    if set(weights) != set(params):
        raise ValueError(f"checkpoint: {ck} holds other tensors than this model trains; delete it to start over")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])
    flat = load_tensors(ck / OPTIMIZER_FILE)
    state: dict = {}
    for key, v in list(flat.items()) + list(meta["scalars"].items()):
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _verify(ck: Path, meta: dict) -> None:
    """Refuse a checkpoint whose trainer.json, weights or optimizer state no longer match the
    checksum and hashes written with it (checkpoints from before them have none to check)."""
    if "checksum" in meta and content_hash({k: v for k, v in meta.items() if k != "checksum"}) != meta["checksum"]:
        raise ValueError(
            f"checkpoint: {ck / TRAINER_FILE} does not match its checksum (edited or corrupted); "
            f"delete {ck} to start over"
        )
    for name, h in meta.get("files", {}).items():
        if not (ck / name).is_file() or file_hash(ck / name) != h:
            raise ValueError(
                f"checkpoint: {ck / name} does not match the hash in {TRAINER_FILE} (edited or corrupted); "
                f"delete {ck} to start over"
            )

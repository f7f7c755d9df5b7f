"""Students: supervised fine-tuning of a copy of the base on a teacher's dataset.

Chat-formatted prompt -> completion (+ end-of-turn), loss on completion tokens only, and the
vocabulary projection computed only at those positions (most of a sequence is prompt). Two
objectives: `sft` (cross-entropy on the sampled tokens, as in the papers) and `kd` (KL to the
teacher's distribution over the 13 number-grammar tokens, see `interp.distill`). Full
fine-tune or LoRA (peft); AdamW by default, SGD and SignSGD for the optimizer ablation. The data
order of epoch e comes from a generator seeded with (seed, e), so a resumed run sees exactly the
batches an uninterrupted one would. Checkpoints (`checkpoint/`: trainable weights, optimizer
state as safetensors, `trainer.json` written last) are replaced atomically; a non-finite loss
stops training and leaves the last good checkpoint in place.

Here: the LoRA targets, what a student directory keeps, and loading it back. The settings are
`interp.train_config` (`TrainConfig`, importable from here too); the steps themselves
`interp.trainer`; the rows `interp.rows`; the optimizers `interp.optim`; the checkpoint files
`interp.checkpoint`.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from interp.checkpoint import CHECKPOINT_DIR, OLD_CHECKPOINT_DIR, TRAINER_FILE, read_checkpoint, restore_checkpoint
from interp.models import LoadedModel, decoder_layers
from interp.optim import make_optimizer
from interp.precision import require_fast_bf16
from interp.progress import tqdm
from interp.rows import build_examples
from interp.runs import MANIFEST_FILE, load_tensors, provenance, read_json, save_tensors, write_json
from interp.steering import SteeringVector
from interp.train_config import ALL_LINEAR, KD_BF16, LORA_TARGETS, RUNTIME_FIELDS, TrainConfig
from interp.trainer import Trainer, TrainingDiverged, trainable_state, update_rms, weights_finite

__all__ = [  # what other modules read from here; the checkpoint names live in `interp.checkpoint`,
    # the settings' in `interp.train_config`
    "ADAPTER_FILE",
    "ALL_LINEAR",
    "CHECKPOINT_DIR",
    "KD_BF16",
    "LORA_TARGETS",
    "LOG_FILE",
    "RUNTIME_FIELDS",
    "SNAPSHOTS_DIR",
    "TRAINER_FILE",
    "UPDATE_FILE",
    "WEIGHTS_FILE",
    "TrainConfig",
    "TrainingDiverged",
    "load_snapshot",
    "load_student",
    "position_masks",
    "check_lora",
    "lora_modules",
    "snapshot_steps",
    "train_student",
    "trainable_state",
    "trained_student",
    "weights_finite",
]

WEIGHTS_FILE = "model.safetensors"
UPDATE_FILE = "update.safetensors"  # train.keep = "update": W - W_base in bf16
ADAPTER_FILE = "adapter.safetensors"
SNAPSHOTS_DIR = "snapshots"
LOG_FILE = "train_log.json"


def position_masks(divergence_masks: list[Tensor], loss_positions: str) -> list[Tensor] | None:
    """The per-row loss masks `loss_positions` asks for, from per-row divergence masks
    (`Divergence.row_masks()`): themselves, their complement, or None for "all"."""
    if loss_positions == "all":
        return None
    return [m.bool() if loss_positions == "divergence" else ~m.bool() for m in divergence_masks]


def lora_modules(hf: nn.Module, targets: tuple[str, ...]) -> dict[str, nn.Linear]:
    """{module path: linear layer} of the modules `targets` adapt, by peft's rule for a list of
    names (a module whose path is, or ends with '.' + a name); ("all-linear",): every linear layer
    of the decoder blocks (the output projection and embeddings are not in them)."""
    if tuple(targets) == (ALL_LINEAR,):
        return {
            f"layers.{i}.{n}": m
            for i, layer in enumerate(decoder_layers(hf))
            for n, m in layer.named_modules()
            if isinstance(m, nn.Linear)
        }
    return {
        n: m
        for n, m in hf.named_modules()
        if isinstance(m, nn.Linear) and any(n == t or n.endswith("." + t) for t in targets)
    }


def _target_names(hf: nn.Module, cfg: TrainConfig) -> list[str]:
    """The names handed to peft: the config's own, or the leaf names "all-linear" resolves to."""
    if tuple(cfg.lora_targets) != (ALL_LINEAR,):
        return list(cfg.lora_targets)
    return list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in lora_modules(hf, cfg.lora_targets)))


def check_lora(model: LoadedModel, cfg: TrainConfig) -> list[str]:
    """The module names a LoRA student of `model` adapts; one-line refusals naming the field for a
    target that matches no linear layer of the model and for a rank above a targeted layer's
    smallest dimension (an adapter of rank r on a d_in x d_out layer has rank min(r, d_in, d_out):
    the rest of r is parameters that add nothing). Runs before any data is read."""
    if cfg.method != "lora":
        return []
    own = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in lora_modules(model.hf, (ALL_LINEAR,))))
    unknown = [t for t in cfg.lora_targets if t != ALL_LINEAR and not lora_modules(model.hf, (t,))]
    if unknown:
        raise ValueError(
            f"train.lora_targets: {unknown} name no linear layer of {model.name} (its decoder blocks' "
            f"linear layers are {own}); use those names or {ALL_LINEAR!r}"
        )
    mods = lora_modules(model.hf, cfg.lora_targets)
    if not mods:
        raise ValueError(f"train.lora_targets: {list(cfg.lora_targets)} match no linear layer of {model.name}")
    name, m = min(mods.items(), key=lambda kv: min(kv[1].in_features, kv[1].out_features))
    width = min(m.in_features, m.out_features)
    if cfg.lora_rank > width:
        raise ValueError(
            f"train.lora_rank: {cfg.lora_rank} is above the smallest dimension of {model.name}'s {name} "
            f"({m.in_features} -> {m.out_features}); use lora_rank <= {width} or leave that layer out "
            "of train.lora_targets"
        )
    return _target_names(model.hf, cfg)


def _prepare(model: LoadedModel, cfg: TrainConfig) -> nn.Module:
    """A trainable copy of the base: the caller's model is never modified."""
    hf = copy.deepcopy(model.hf)
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        # peft draws the A matrices from the global RNG: seed it from the config (and restore it), so
        # the same config gives the same adapter whatever ran before in the process
        device = next(hf.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            hf = get_peft_model(
                hf,
                LoraConfig(
                    r=cfg.lora_rank,
                    lora_alpha=cfg.lora_alpha,
                    lora_dropout=0.0,
                    target_modules=_target_names(hf, cfg),
                    bias="none",
                ),
            )
    if cfg.grad_checkpointing:
        # non-reentrant: works with frozen inputs (LoRA) and with the forward hooks of project_out
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    hf.train()
    return hf


def _update(hf: nn.Module, base_hf: nn.Module) -> dict[str, Tensor]:
    """W - W_base in bf16: bf16 keeps ~3 significant digits of the update, where bf16 weights
    would round away an update ~1e-3 of their size. 2 bytes per parameter."""
    base = dict(base_hf.named_parameters())
    return {n: (p.detach() - base[n].detach()).to(torch.bfloat16) for n, p in hf.named_parameters()}


def _resume(out: Path, hf: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig) -> tuple[int, list, dict]:
    """(step, log, the trainer's measurements) of the checkpoint in `out`, its state loaded into
    `hf` and `opt`; (0, [], {}) without one."""
    meta = read_checkpoint(out)
    if meta is None:
        return 0, [], {}
    # fields added after a checkpoint was written take their defaults (what it trained with)
    saved = {
        **asdict(TrainConfig()),
        **{k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("train", {}).items()},
    }
    now = asdict(cfg)
    for name in RUNTIME_FIELDS:  # a run may resume with checkpointing switched on or off
        saved.pop(name), now.pop(name)
    if saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise ValueError(
            f"checkpoint: {out / CHECKPOINT_DIR} was written with other settings "
            f"({', '.join('train.' + k for k in changed)}); "
            "resume with the same config or delete the checkpoint to start over"
        )
    restore_checkpoint(out, meta, trainable_state(hf), opt)
    return int(meta["step"]), meta["log"], meta.get("trainer_state", {})


def _save_snapshot(out: Path, hf: nn.Module, base_hf: nn.Module, step: int, cfg: TrainConfig) -> None:
    tensors = (
        {n: p.detach().float() for n, p in trainable_state(hf).items()}
        if cfg.method == "lora"
        else _update(hf, base_hf)
    )
    save_tensors(out / SNAPSHOTS_DIR / f"step{step:05d}.safetensors", tensors)


def snapshot_steps(student_dir: str | Path) -> list[int]:
    """The steps at which `student_dir` kept a snapshot (train.snapshot_every), ascending."""
    return sorted(
        int(p.stem.removeprefix("step")) for p in (Path(student_dir) / SNAPSHOTS_DIR).glob("step*.safetensors")
    )


# ----------------------------------------------------------------------------- training


def _check_inputs(
    rows: list[dict],
    cfg: TrainConfig,
    targets: list[Tensor] | None,
    divergence_masks: list[Tensor] | None,
    project_vector: SteeringVector | None,
) -> None:
    if not rows:
        raise ValueError("dataset: no examples to train on (did every teacher sample fail the filter?)")
    if cfg.objective == "kd" and targets is None:
        raise ValueError("train.objective: 'kd' needs the teacher's grammar log-probabilities (targets=...)")
    if cfg.loss_positions != "all" and divergence_masks is None:
        raise ValueError(
            f"train.loss_positions: {cfg.loss_positions!r} needs the dataset's divergence masks "
            "(divergence_masks=Divergence.row_masks())"
        )
    if divergence_masks is not None and len(divergence_masks) != len(rows):
        raise ValueError(
            f"divergence masks: {len(divergence_masks)} rows for a dataset of {len(rows)}; compute them on this dataset"
        )
    if cfg.project_out and project_vector is None:
        raise ValueError("train.project_out: needs the trait vector to project out (project_vector=...)")


def _save_weights(out: Path, hf: nn.Module, base_hf: nn.Module, cfg: TrainConfig) -> list[Path]:
    """What train.keep (and LoRA) asks to keep of the student; the files written."""
    if cfg.method == "lora":
        return [save_tensors(out / ADAPTER_FILE, trainable_state(hf))]
    if cfg.keep == "weights":
        return [save_tensors(out / WEIGHTS_FILE, dict(hf.named_parameters()))]
    if cfg.keep == "update":
        return [save_tensors(out / UPDATE_FILE, _update(hf, base_hf))]
    return []


def _discard_checkpoint(out: Path) -> None:
    # optimizer state is 2x the weights. Renamed first: a kill in the middle of the delete must not
    # leave half a checkpoint that a rerun would try to resume from (a `.tmp` name is never read,
    # and `Stage.clean` removes it)
    # `checkpoint.old` too: a kill after a checkpoint swap's second rename, before the old one's
    # delete, leaves it beside a complete checkpoint, and a resumed run never writes over it
    for ck in (out / CHECKPOINT_DIR, out / OLD_CHECKPOINT_DIR):
        if ck.exists():
            trash = out / (CHECKPOINT_DIR + ".discard.tmp")
            shutil.rmtree(trash, ignore_errors=True)
            ck.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)


def train_student(
    model: LoadedModel,
    rows: list[dict],
    cfg: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
    stop_after: int | None = None,
    extra_manifest: dict | None = None,
    targets: list[Tensor] | None = None,
    divergence_masks: list[Tensor] | None = None,
    project_vector: SteeringVector | None = None,
    checkpoint_minutes: float | None = None,
) -> nn.Module:
    """Fine-tune a copy of `model` on `rows`; resume from `out_dir/checkpoint` if present.
    `kd` needs `targets` (`datasets.read_targets` of the dataset directory);
    `loss_positions` other than "all" needs `divergence_masks` (per row, `Divergence.row_masks()`
    of this dataset: one bool per completion token, end-of-turn included); `project_out` needs
    `project_vector` (the trait's SteeringVector, whose direction at each layer is removed).
    `checkpoint_minutes`: also checkpoint once that much wall time has passed since the last
    checkpoint (or the start), so an interrupted long student loses at most that much. A runtime
    setting, like `grad_checkpointing`: a resumed student is bit-identical to an uninterrupted one,
    so it is in no key and no config.

    Writes `model.safetensors` (full) or `adapter.safetensors` (LoRA), `train_log.json` and
    `manifest.json` (last). `stop_after` ends early after that many steps (to test resuming).
    Returns the trained module.
    """
    out = Path(out_dir)
    _check_inputs(rows, cfg, targets, divergence_masks, project_vector)
    check_lora(model, cfg)
    examples = build_examples(
        model,
        rows,
        cfg.max_len,
        targets if cfg.objective == "kd" else None,
        position_masks(divergence_masks, cfg.loss_positions) if divergence_masks is not None else None,
        system_prompt=cfg.system_prompt,
    )
    rates = (
        require_fast_bf16(model.device) if cfg.dtype == "bf16" else None
    )  # before any work: one line where bf16 is slower
    hf = _prepare(model, cfg)  # the student: fp32 weights, what the optimizer steps and what is saved
    opt = make_optimizer(cfg, list(trainable_state(hf).values()))
    step, log, measured = _resume(out, hf, opt, cfg)
    run = Trainer(
        model, hf, opt, examples, cfg, out, step, log, project_vector, update_rms_at=measured.get("update_rms")
    )
    bar = tqdm(total=run.total, initial=run.step, desc="student", unit="step", disable=not progress, leave=False)
    t0 = last_checkpoint = time.perf_counter()
    for epoch, global_step, group in run.pending():
        run.take_step(epoch, global_step, group)
        bar.update(1)
        bar.set_postfix(loss=f"{run.log[-1]['loss']:.3f}", tok_s=f"{run.tokens_seen / (time.perf_counter() - t0):.0f}")
        if _due(cfg.snapshot_every, run):
            _save_snapshot(out, hf, model.hf, run.step, cfg)
        timed = (
            checkpoint_minutes is not None
            and run.step < run.total
            and time.perf_counter() - last_checkpoint >= 60 * checkpoint_minutes
        )
        if _due(cfg.checkpoint_every, run) or timed or (stop_after is not None and run.step >= stop_after):
            run.checkpoint()
            last_checkpoint = time.perf_counter()
        if stop_after is not None and run.step >= stop_after:
            bar.close()
            return hf
    bar.close()
    run.finish()
    wall = time.perf_counter() - t0
    kept = _save_weights(out, hf, model.hf, cfg)
    write_json(out / LOG_FILE, run.log)
    if cfg.method == "full":
        run.update_rms_at["final"] = update_rms(hf, model.hf)
    write_json(
        out / MANIFEST_FILE,
        {
            **_manifest(run, wall, kept, project_vector),
            "base": model.identity(),
            **({"matmul_gflops": {k: round(v, 1) for k, v in rates.items()}} if rates else {}),
            **provenance(),
            **(extra_manifest or {}),
        },
    )
    _discard_checkpoint(out)
    return hf


def _due(every: int, run: Trainer) -> bool:
    """Whether a snapshot or checkpoint kept `every` steps is due now (none after the last step:
    the student itself is kept then)."""
    return bool(every) and run.step % every == 0 and run.step < run.total


def _manifest(run: Trainer, wall: float, kept: list[Path], project_vector: SteeringVector | None) -> dict:
    """What the training did, for the student's manifest.json."""
    cfg, log, examples = run.cfg, run.log, run.examples
    return {
        # RMS over all weights of W - W_base: how far each optimizer moved (E10 matches the steps)
        **({"update_rms": run.update_rms_at} if run.update_rms_at else {}),
        "train": asdict(cfg),
        "n_examples": len(examples),
        "steps": run.step,
        "final_loss": log[-1]["loss"] if log else None,
        "wall_s": round(wall, 2),  # this process's steps only: a resumed run's earlier ones are not in it
        **({"resumed_at_step": run.resumed_at} if run.resumed_at else {}),
        **(
            {
                "kd_first_loss": log[0]["loss"],
                "kd_skipped_steps": sum(r.get("skipped", 0) == cfg.grad_accum for r in log),
            }
            if cfg.objective == "kd" and log
            else {}
        ),
        **(
            {
                "positions_counted": sum(e.n_counted for e in examples),
                "positions_total": sum(len(e.completion_ids) for e in examples),
            }
            if run.masked
            else {}
        ),
        **({"project_out_vector": project_vector.hash()} if cfg.project_out else {}),
        "tokens_per_s": round(run.tokens_seen / max(wall, 1e-9), 1),
        "tokens": run.tokens_seen,
        "kept_bytes": sum(p.stat().st_size for p in kept),
    }


def _student_config(base: LoadedModel, d: Path) -> TrainConfig:
    man = read_json(d / MANIFEST_FILE)
    if man["base"]["fingerprint"] != base.fingerprint():
        raise ValueError(
            f"student: trained from base fingerprint {man['base']['fingerprint']}, "
            f"but the given base is {base.fingerprint()}; load the base it was trained from"
        )
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in man["train"].items()})


def _build_student(
    base: LoadedModel, cfg: TrainConfig, saved: dict[str, Tensor], what: str, name: str, update: bool = False
) -> LoadedModel:
    """The base with `saved` copied in (or added, `update`, for a full model's W - W_base), frozen;
    LoRA adapters are merged into a copy."""
    hf = _prepare(base, replace(cfg, grad_checkpointing=False))  # a training-time setting
    params = dict(hf.named_parameters()) if cfg.method == "full" else trainable_state(hf)
    missing = set(params) - set(saved)
    if missing:
        raise ValueError(f"{what} lacks {len(missing)} tensors (e.g. {sorted(missing)[0]}); the file is incomplete")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(p + saved[n].to(p.dtype) if update and cfg.method == "full" else saved[n])
    if cfg.method == "lora":
        hf = hf.merge_and_unload()
    hf.eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    return LoadedModel(name=name, hf=hf, tokenizer=base.tokenizer)


def trained_student(base: LoadedModel, hf: nn.Module, cfg: TrainConfig, name: str) -> LoadedModel:
    """The module `train_student` returned, as `load_student` would give it back from the files it
    wrote with train.keep = "weights": LoRA merged, frozen, in eval mode (the same numbers)."""
    if cfg.method == "lora":
        hf = hf.merge_and_unload()
    hf.eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    return LoadedModel(name=f"{base.name}+student:{name}", hf=hf, tokenizer=base.tokenizer)


def load_student(base: LoadedModel, student_dir: str | Path) -> LoadedModel:
    """The base with a student's weights (full), its bf16 update (full, train.keep = "update")
    or its adapter (LoRA, merged into a copy)."""
    d = Path(student_dir)
    cfg = _student_config(base, d)
    if cfg.method == "full" and cfg.keep == "none":
        raise ValueError(
            f'student: {d} kept no weights (train.keep = "none"); retrain it with train.keep = "update" to analyze it'
        )
    f = d / (ADAPTER_FILE if cfg.method == "lora" else UPDATE_FILE if cfg.keep == "update" else WEIGHTS_FILE)
    if not f.exists():
        raise ValueError(f"student: {f} is missing; delete {d} and rerun to retrain the student")
    weights = load_tensors(f)
    return _build_student(
        base, cfg, weights, f"student: {f}", f"{base.name}+student:{d.name}", update=cfg.keep == "update"
    )


def load_snapshot(base: LoadedModel, student_dir: str | Path, step: int) -> LoadedModel:
    """The student of `student_dir` as it was after `step` optimizer steps (a kept snapshot)."""
    d = Path(student_dir)
    steps = snapshot_steps(d)
    if step not in steps:
        raise ValueError(
            f"step: {d} has no snapshot at step {step} (it has {steps or 'none'}; set train.snapshot_every)"
        )
    cfg = _student_config(base, d)
    saved = load_tensors(d / SNAPSHOTS_DIR / f"step{step:05d}.safetensors")
    return _build_student(
        base, cfg, saved, f"snapshot: step {step} of {d}", f"{base.name}+student:{d.name}@{step}", update=True
    )

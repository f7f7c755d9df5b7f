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
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from interp.progress import tqdm

from interp import batching
from interp.divergence import RULES
from interp.models import LoadedModel
from interp.guards import CollapseGuard, check_resume
from interp.runs import MANIFEST_FILE, content_hash, file_hash, load_tensors, provenance, read_json, save_tensors, write_json
from interp.steering import Steering, SteeringVector, steer

WEIGHTS_FILE = "model.safetensors"
UPDATE_FILE = "update.safetensors"  # train.keep = "update": W - W_base in bf16
ADAPTER_FILE = "adapter.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"
CHECKPOINT_DIR = "checkpoint"
SNAPSHOTS_DIR = "snapshots"
LOG_FILE = "train_log.json"
LOSS_POSITIONS = ("all", "divergence", "non_divergence")
TRAIN_DTYPES = ("fp32", "bf16")
KEEP = ("weights", "update", "none")
# settings that change how a student is computed but not what it is (same weights to the bit)
RUNTIME_FIELDS = ("grad_checkpointing",)


class TrainingDiverged(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    """method: "full" fine-tune or "lora".
    optimizer: "adamw", "sgd" or "signsgd" (sign of the gradient times lr).
    lr: learning rate.
    epochs: passes over the dataset.
    batch_size: sequences per micro-batch; grad_accum micro-batches make one optimizer step.
    max_len: prompt + completion tokens kept per example (longer prompts are cut from the left).
    seed: data-order seed (the base weights are the teacher's; nothing else is random).
    checkpoint_every: optimizer steps between checkpoints (0: only at the end).
    snapshot_every: optimizer steps between kept snapshots of the weights (0: none), for the
        emergence analysis (E9): `snapshots/step{N}.safetensors`, the update W - W_base in bf16
        (full) or the adapter (LoRA); `load_snapshot` rebuilds the student at step N.
    lora_rank, lora_alpha, lora_targets: LoRA settings.
    weight_decay: AdamW weight decay.
    match_step: SGD only (the optimizer ablation, E10): every step's learning rate is lr / RMS of
        that step's nonzero gradient entries, so each update has the RMS of a SignSGD step (and of
        AdamW's first, where bias-corrected m/sqrt(v) = sign(g)) while its direction stays the raw
        gradient's. Matching only the first step's rate diverged on smollm2 (NaN loss by step 11:
        later gradients grow). A no-op for AdamW and SignSGD, which step by about lr per weight.
    objective: "sft" (hard labels) or "kd" (match the teacher's grammar-token distribution).
    kd_min_kl: `kd` guard (0: off). A micro-batch whose mean KL per position is below this is not
        back-propagated: a student distilled from a teacher equal to itself (the `kd` control)
        starts at KL ~1e-10, pure float noise, which AdamW would rescale into full-size steps.
    loss_positions: "all" completion tokens, only the "divergence" positions of the dataset
        (`interp.divergence`: where a control teacher would have chosen another token) or only
        the others ("non_divergence"); the last two need `train_student(divergence_masks=...)`.
        The loss is the mean over the positions that count in each optimizer step; a step with
        none is skipped (the data order and the step count stay those of "all").
    divergence_rule: which positions are divergence positions ("paper", "emitted", "argmax";
        `interp.divergence.RULES`); only read when loss_positions is not "all".
    project_out: layers at which the trait direction is projected out of the student's residual
        stream (`Steering(operator="project")`, every token) during its training forwards only;
        needs `train_student(project_vector=...)`. Empty: off.
    grad_checkpointing: recompute each decoder layer's activations during the backward instead of
        keeping them from the forward (non-reentrant `torch.utils.checkpoint`). The recomputation
        repeats the same operations, so the trained weights are the same to the bit. On smollm2 at
        batch 8 it took peak memory from 4.9 to 3.8 GB for 10-20% more step time
        (benchmarks/bench_train.py).
        Not part of `key()`.
    dtype: the arithmetic of the forward and backward. "fp32" (the reference). "bf16": a bf16
        copy of the weights computes the forward and backward; its gradients are cast up and
        the optimizer steps the fp32 master weights (and keeps fp32 state), which are copied
        back into the bf16 copy after each step. The student is the fp32 master weights. About
        1.8x faster where bf16 matmul is (refused in one line where it is not:
        `interp.precision`); part of `key()` when not "fp32".
    keep: what a full fine-tune leaves on disk. "weights": every parameter in fp32
        (`model.safetensors`, 538 MB for smollm2). "update": W - W_base in bf16
        (`update.safetensors`, half that; `load_student` rebuilds the student within bf16's
        rounding of the update, as snapshots do). "none": no weights (the log and manifest only;
        a sweep that evaluates in the same process needs no more). Part of `key()` when not
        "weights", since a student loaded from its update is not bit-identical. LoRA always
        keeps its adapter.
    """

    method: str = "full"
    optimizer: str = "adamw"
    lr: float = 5e-5
    epochs: int = 2
    batch_size: int = 8
    grad_accum: int = 1
    max_len: int = 192
    seed: int = 0
    checkpoint_every: int = 0
    snapshot_every: int = 0
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    weight_decay: float = 0.0
    match_step: bool = False
    objective: str = "sft"
    kd_min_kl: float = 1e-6
    loss_positions: str = "all"
    divergence_rule: str = "paper"
    project_out: tuple[int, ...] = ()
    grad_checkpointing: bool = False
    dtype: str = "fp32"
    keep: str = "weights"

    def key(self) -> dict:
        """The settings that define the student (the kd fields only matter for kd; the later
        options only when set, so the keys of students trained before them stay the same)."""
        d = asdict(self)
        if self.objective == "sft":
            d.pop("objective"), d.pop("kd_min_kl")
        if not self.snapshot_every:
            d.pop("snapshot_every")
        if not self.sgd_matched:
            d.pop("match_step")
        if self.loss_positions == "all":
            d.pop("loss_positions"), d.pop("divergence_rule")
        if not self.project_out:
            d.pop("project_out")
        if self.dtype == "fp32":
            d.pop("dtype")
        if self.keep == "weights":
            d.pop("keep")
        for name in RUNTIME_FIELDS:
            d.pop(name)
        return d

    @property
    def sgd_matched(self) -> bool:
        return self.match_step and self.optimizer == "sgd"

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora"):
            raise ValueError(f"train.method: {self.method!r} is not 'full' or 'lora'")
        if self.optimizer not in ("adamw", "sgd", "signsgd"):
            raise ValueError(f"train.optimizer: {self.optimizer!r} is not 'adamw', 'sgd' or 'signsgd'")
        if self.objective not in ("sft", "kd"):
            raise ValueError(f"train.objective: {self.objective!r} is not 'sft' or 'kd'")
        if self.kd_min_kl < 0:
            raise ValueError(f"train.kd_min_kl: {self.kd_min_kl} must be >= 0")
        if self.loss_positions not in LOSS_POSITIONS:
            raise ValueError(f"train.loss_positions: {self.loss_positions!r} is not one of {LOSS_POSITIONS}")
        if self.divergence_rule not in RULES:
            raise ValueError(f"train.divergence_rule: {self.divergence_rule!r} is not one of {RULES}")
        if any(not isinstance(l, int) or l < 0 for l in self.project_out):
            raise ValueError(f"train.project_out: {list(self.project_out)} must be layer indices >= 0")
        if self.dtype not in TRAIN_DTYPES:
            raise ValueError(f"train.dtype: {self.dtype!r} is not one of {TRAIN_DTYPES}")
        if self.keep not in KEEP:
            raise ValueError(f"train.keep: {self.keep!r} is not one of {KEEP}")
        for name in ("lr", "epochs", "batch_size", "grad_accum", "max_len"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name}: {getattr(self, name)} must be > 0")


@dataclass
class Example:
    prompt_ids: list[int]
    completion_ids: list[int]
    teacher_logprobs: Tensor | None = None  # (len(completion_ids), 13), kd only
    loss_mask: Tensor | None = None  # (len(completion_ids),) bool: the positions whose loss counts (None: all)


def build_examples(
    model: LoadedModel, rows: list[dict], max_len: int, targets: list[Tensor] | None = None,
    loss_masks: list[Tensor] | None = None,
) -> list[Example]:
    """`rows` have 'prompt' (user text) and 'completion'; the student sees no system prompt.
    `targets` (kd): the teacher's per-row grammar log-probabilities, one per completion token.
    `loss_masks`: per row, which completion tokens (end-of-turn included) the loss counts."""
    from interp.generate import stop_token_ids

    tok = model.tokenizer
    end = tok.eos_token_id if tok.eos_token_id is not None else stop_token_ids(tok)[0]
    out = []
    for i, r in enumerate(rows):
        p = tok(model.chat([{"role": "user", "content": r["prompt"]}]), add_special_tokens=False)["input_ids"]
        c = tok(r["completion"], add_special_tokens=False)["input_ids"] + [end]
        keep = max_len - len(c)
        if keep < 1:
            raise ValueError(f"train.max_len: {max_len} is too short for a completion of {len(c)} tokens")
        t = None
        if targets is not None:
            t = targets[i]
            if len(t) != len(c):
                raise ValueError(f"teacher targets: row {i} has {len(t)} positions but its completion re-tokenises "
                                 f"to {len(c)} tokens; kd needs the teacher's own token sequence")
        m = None
        if loss_masks is not None:
            m = torch.as_tensor(loss_masks[i], dtype=torch.bool)
            if m.shape != (len(c),):
                raise ValueError(f"divergence masks: row {i} has {tuple(m.shape)} positions but its completion has "
                                 f"{len(c)} tokens (end-of-turn included); compute them on this dataset and tokenizer")
        out.append(Example(p[-keep:], c, t, m))
    return out


def position_masks(divergence_masks: list[Tensor], loss_positions: str) -> list[Tensor] | None:
    """The per-row loss masks `loss_positions` asks for, from per-row divergence masks
    (`Divergence.row_masks()`): themselves, their complement, or None for "all"."""
    if loss_positions == "all":
        return None
    return [m.bool() if loss_positions == "divergence" else ~m.bool() for m in divergence_masks]


def _collate(examples: list[Example], pad_id: int) -> tuple[batching.Batch, Tensor]:
    seqs = [e.prompt_ids + e.completion_ids for e in examples]
    batch = batching.pad(seqs, pad_id, side="right")
    # targets[i, t] is the token at t+1 where it is a completion token whose loss counts, else -100
    targets = torch.full_like(batch.input_ids, -100)
    for i, e in enumerate(examples):
        start, end = len(e.prompt_ids), len(e.prompt_ids) + len(e.completion_ids)
        ids = torch.tensor(e.completion_ids)
        targets[i, start - 1 : end - 1] = ids if e.loss_mask is None else ids.masked_fill(~e.loss_mask, -100)
    return batch, targets


def _counted(e: Example) -> int:
    return len(e.completion_ids) if e.loss_mask is None else int(e.loss_mask.sum())


def _kd_rows(e: Example) -> Tensor:
    """The teacher's targets at the positions whose loss counts (the order `labels != -100` reads)."""
    return e.teacher_logprobs if e.loss_mask is None else e.teacher_logprobs[e.loss_mask]


def _projection(student: LoadedModel, vector: SteeringVector | None, layers: tuple[int, ...]):
    """A context factory: the trait direction projected out at `layers` of the training copy
    (every token). Entered around each training forward and backward only, so nothing else (a
    checkpoint, the saved weights, evaluation) ever runs with the hook."""
    if not layers:
        return contextlib.nullcontext

    @contextlib.contextmanager
    def project():
        with contextlib.ExitStack() as stack:
            for l in layers:
                # strict=False: the copy's weights move away from the base the vector was built on
                stack.enter_context(steer(student, vector, Steering(layer=l, operator="project"), strict=False))
            yield

    return project


def _epoch_batches(examples: list[Example], batch_size: int, gen: torch.Generator, bucket: int = 16) -> list[list[int]]:
    """A seeded shuffle, then length bucketing: within each run of `bucket` batches, examples are
    sorted by length (little padding) and the batches are reshuffled (no short-to-long order)."""
    order = torch.randperm(len(examples), generator=gen).tolist()
    batches = []
    for start in range(0, len(order), batch_size * bucket):
        chunk = sorted(order[start : start + batch_size * bucket],
                       key=lambda i: len(examples[i].prompt_ids) + len(examples[i].completion_ids))
        group = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        batches += [group[j] for j in torch.randperm(len(group), generator=gen).tolist()]
    return batches


def completion_hidden(hf: nn.Module, batch: batching.Batch, where: Tensor) -> Tensor:
    """Final hidden states at positions `where` (batch, pos) bool: (n_positions, d_model)."""
    h = hf.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         position_ids=batch.position_ids, use_cache=False).last_hidden_state
    return h[where]


def completion_logits(hf: nn.Module, batch: batching.Batch, where: Tensor) -> Tensor:
    """Logits only at positions `where` (batch, pos) bool: (n_positions, vocab)."""
    logits = hf.get_output_embeddings()(completion_hidden(hf, batch, where))
    cap = getattr(hf.config.get_text_config(), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


class SignSGD(torch.optim.Optimizer):
    """theta -= lr * sign(grad): the non-adaptive sign method of the optimizer ablation."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


def _optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        # fused: one kernel per step instead of a dozen passes over 2x the weights (3.9x faster on
        # smollm2, same update up to float rounding; benchmarks/bench_train.py)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    return SignSGD(params, lr=cfg.lr)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def _rms_nonzero(tensors: list[Tensor]) -> float:
    """RMS over the nonzero entries: AdamW and SignSGD move exactly those by lr at step 1 (an
    unused embedding row gets no gradient and no step), so lr / this matches SGD to them."""
    n = sum(int(t.count_nonzero()) for t in tensors)
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors) / max(n, 1))


@torch.no_grad()
def _update_rms(hf: nn.Module, base_hf: nn.Module) -> float:
    base = dict(base_hf.named_parameters())
    total, n = 0.0, 0
    for name, p in hf.named_parameters():  # one tensor at a time: no second copy of the weights
        total += float((p.double() - base[name].double()).pow(2).sum())
        n += p.numel()
    return math.sqrt(total / max(n, 1))


def weights_finite(params: list[nn.Parameter]) -> bool:
    """No inf or nan in any parameter: one fused norm pass (a per-tensor isfinite cost 5% of a step)."""
    # the max |w| (inf-norm) cannot overflow the way a 2-norm of large finite weights can; NaN propagates
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(params, norm_type=float("inf"), foreach=True)))


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
            hf = get_peft_model(hf, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                               target_modules=list(cfg.lora_targets), bias="none"))
    if cfg.grad_checkpointing:
        # non-reentrant: works with frozen inputs (LoRA) and with the forward hooks of project_out
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    hf.train()
    return hf


def trainable_state(hf: nn.Module) -> dict[str, Tensor]:
    return {n: p for n, p in hf.named_parameters() if p.requires_grad}


def _bf16_copy(hf: nn.Module) -> nn.Module:
    """The module that computes a bf16 student's forward and backward: a copy of `hf` with its
    floating-point parameters in bf16. Buffers (rotary frequencies) stay fp32, as in `weights_in`."""
    work = copy.deepcopy(hf)
    for p in work.parameters():
        if p.is_floating_point():
            p.data = p.data.to(torch.bfloat16)
    return work


@torch.no_grad()
def _copy_params(src: list[nn.Parameter], dst: list[nn.Parameter]) -> None:
    for s, d in zip(src, dst):
        d.copy_(s)


def _update(hf: nn.Module, base_hf: nn.Module) -> dict[str, Tensor]:
    """W - W_base in bf16: bf16 keeps ~3 significant digits of the update, where bf16 weights
    would round away an update ~1e-3 of their size. 2 bytes per parameter."""
    base = dict(base_hf.named_parameters())
    return {n: (p.detach() - base[n].detach()).to(torch.bfloat16) for n, p in hf.named_parameters()}


# ----------------------------------------------------------------------------- checkpoints


def _save_checkpoint(out: Path, hf: nn.Module, opt: torch.optim.Optimizer, step: int, log: list, cfg: TrainConfig) -> None:
    tmp = out / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tensors(tmp / WEIGHTS_FILE, trainable_state(hf))
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    save_tensors(tmp / OPTIMIZER_FILE, tensors)
    meta = {"step": step, "param_groups": state["param_groups"], "scalars": scalars, "log": log, "train": asdict(cfg),
            "files": {f: file_hash(tmp / f) for f in (WEIGHTS_FILE, OPTIMIZER_FILE)}}
    write_json(tmp / TRAINER_FILE, {**meta, "checksum": content_hash(meta)})
    final = out / CHECKPOINT_DIR
    old = out / (CHECKPOINT_DIR + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)  # a kill after both renames left it: `final` is complete
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(out: Path, hf: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig) -> tuple[int, list]:
    ck = out / CHECKPOINT_DIR
    if not (ck / TRAINER_FILE).exists():
        old = out / (CHECKPOINT_DIR + ".old")  # a crash between the two renames
        if (old / TRAINER_FILE).exists():
            old.rename(ck)
        else:
            return 0, []
    meta = read_json(ck / TRAINER_FILE)
    _verify_checkpoint(ck, meta)
    # fields added after a checkpoint was written take their defaults (what it trained with)
    saved = {**asdict(TrainConfig()), **{k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("train", {}).items()}}
    now = asdict(cfg)
    for name in RUNTIME_FIELDS:  # a run may resume with checkpointing switched on or off
        saved.pop(name), now.pop(name)
    if saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise ValueError(f"checkpoint: {ck} was written with other settings ({', '.join('train.' + k for k in changed)}); "
                         "resume with the same config or delete the checkpoint to start over")
    weights = load_tensors(ck / WEIGHTS_FILE)
    params = trainable_state(hf)
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
    return int(meta["step"]), meta["log"]


def _verify_checkpoint(ck: Path, meta: dict) -> None:
    """Refuse a checkpoint whose trainer.json, weights or optimizer state no longer match the
    checksum and hashes written with it (checkpoints from before them have none to check)."""
    if "checksum" in meta and content_hash({k: v for k, v in meta.items() if k != "checksum"}) != meta["checksum"]:
        raise ValueError(f"checkpoint: {ck / TRAINER_FILE} does not match its checksum (edited or corrupted); "
                         f"delete {ck} to start over")
    for name, h in meta.get("files", {}).items():
        if not (ck / name).is_file() or file_hash(ck / name) != h:
            raise ValueError(f"checkpoint: {ck / name} does not match the hash in {TRAINER_FILE} (edited or corrupted); "
                             f"delete {ck} to start over")


# ----------------------------------------------------------------------------- snapshots


def _save_snapshot(out: Path, hf: nn.Module, base_hf: nn.Module, step: int, cfg: TrainConfig) -> None:
    tensors = ({n: p.detach().float() for n, p in trainable_state(hf).items()} if cfg.method == "lora"
               else _update(hf, base_hf))
    save_tensors(out / SNAPSHOTS_DIR / f"step{step:05d}.safetensors", tensors)


def snapshot_steps(student_dir: str | Path) -> list[int]:
    """The steps at which `student_dir` kept a snapshot (train.snapshot_every), ascending."""
    return sorted(int(p.stem.removeprefix("step")) for p in (Path(student_dir) / SNAPSHOTS_DIR).glob("step*.safetensors"))


# ----------------------------------------------------------------------------- training


def train_student(
    model: LoadedModel, rows: list[dict], cfg: TrainConfig, out_dir: str | Path,
    progress: bool = True, stop_after: int | None = None, extra_manifest: dict | None = None,
    targets: list[Tensor] | None = None, divergence_masks: list[Tensor] | None = None,
    project_vector: SteeringVector | None = None,
) -> nn.Module:
    """Fine-tune a copy of `model` on `rows`; resume from `out_dir/checkpoint` if present.
    `kd` needs `targets` (`distill.load_targets` of the dataset's teacher_logprobs.safetensors);
    `loss_positions` other than "all" needs `divergence_masks` (per row, `Divergence.row_masks()`
    of this dataset: one bool per completion token, end-of-turn included); `project_out` needs
    `project_vector` (the trait's SteeringVector, whose direction at each layer is removed).

    Writes `model.safetensors` (full) or `adapter.safetensors` (LoRA), `train_log.json` and
    `manifest.json` (last). `stop_after` ends early after that many steps (to test resuming).
    Returns the trained module.
    """
    out = Path(out_dir)
    if not rows:
        raise ValueError("dataset: no examples to train on (did every teacher sample fail the filter?)")
    if cfg.objective == "kd" and targets is None:
        raise ValueError("train.objective: 'kd' needs the teacher's grammar log-probabilities (targets=...)")
    if cfg.loss_positions != "all" and divergence_masks is None:
        raise ValueError(f"train.loss_positions: {cfg.loss_positions!r} needs the dataset's divergence masks "
                         "(divergence_masks=Divergence.row_masks())")
    if divergence_masks is not None and len(divergence_masks) != len(rows):
        raise ValueError(f"divergence masks: {len(divergence_masks)} rows for a dataset of {len(rows)}; "
                         "compute them on this dataset")
    if cfg.project_out and project_vector is None:
        raise ValueError("train.project_out: needs the trait vector to project out (project_vector=...)")
    examples = build_examples(model, rows, cfg.max_len, targets if cfg.objective == "kd" else None,
                              position_masks(divergence_masks, cfg.loss_positions) if divergence_masks is not None else None)
    rates = None
    if cfg.dtype == "bf16":
        from interp.precision import require_fast_bf16

        rates = require_fast_bf16(model.device)  # before any work: one line where bf16 is slower
    grammar_ids = None
    if cfg.objective == "kd":
        from interp.distill import grammar_logits, grammar_token_ids, kd_loss

        grammar_ids = grammar_token_ids(model.tokenizer)
    hf = _prepare(model, cfg)  # the student: fp32 weights, what the optimizer steps and what is saved
    params = list(trainable_state(hf).values())
    opt = _optimizer(cfg, params)
    masked = cfg.loss_positions != "all"
    per_epoch = math.ceil(len(examples) / (cfg.batch_size * cfg.grad_accum))
    total = per_epoch * cfg.epochs
    step, log = _load_checkpoint(out, hf, opt, cfg)
    check_resume(step, log, total, out / CHECKPOINT_DIR)
    guard = CollapseGuard(log[0]["loss"] if log else None)  # a finite loss can still be a collapse
    # the module that computes the forward and backward: the student itself, or its bf16 copy
    work = _bf16_copy(hf) if cfg.dtype == "bf16" else hf
    work_params = list(trainable_state(work).values())
    grad_buffers: dict[int, Tensor] = {}  # bf16 only: the fp32 master gradients
    project = _projection(LoadedModel(model.name, work, model.tokenizer), project_vector, cfg.project_out)
    update_rms: dict[str, float] = {}
    pad = model.tokenizer.pad_token_id
    bar = tqdm(total=total, initial=step, desc="student", unit="step", disable=not progress, leave=False)
    t0, tokens_seen = time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        micro = _epoch_batches(examples, cfg.batch_size, torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        for s in range(per_epoch):
            global_step = epoch * per_epoch + s
            if global_step < step:
                continue  # done before the resume point
            group = micro[s * cfg.grad_accum : (s + 1) * cfg.grad_accum]
            n_targets = sum(_counted(examples[i]) for mb in group for i in mb)
            loss_sum, skipped = 0.0, 0
            for mb in group:
                if masked and not any(_counted(examples[i]) for i in mb):
                    skipped += 1  # no position of these rows counts: no forward, no gradient
                    continue
                batch, labels = _collate([examples[i] for i in mb], pad)
                batch, labels = batch.to(model.device), labels.to(model.device)
                where = labels != -100
                tokens_seen += int(batch.attention_mask.sum())
                with project():
                    if cfg.objective == "kd":
                        kl = kd_loss(grammar_logits(work, completion_hidden(work, batch, where), grammar_ids),
                                     torch.cat([_kd_rows(examples[i]) for i in mb]))
                        if cfg.kd_min_kl > 0 and kl.item() / int(where.sum()) < cfg.kd_min_kl:
                            skipped += 1  # teacher == student up to float noise: nothing to learn
                            loss_sum += kl.item() / n_targets
                            continue
                        loss = (kl / n_targets).float()
                    else:
                        logits = completion_logits(work, batch, where)
                        guard.observe(logits)
                        loss = torch.nn.functional.cross_entropy(logits.float(), labels[where], reduction="sum") / n_targets
                    loss.backward()
                loss_sum += loss.item()
            if not math.isfinite(loss_sum):
                raise TrainingDiverged(
                    f"loss is {loss_sum} at step {global_step + 1}; weights not updated. Last good checkpoint: "
                    f"{out / CHECKPOINT_DIR if (out / CHECKPOINT_DIR).exists() else 'none'}; lower train.lr and rerun"
                )
            if (collapse := guard.check(loss_sum)) is not None:
                raise TrainingDiverged(f"{collapse} at step {global_step + 1}; weights not updated; lower train.lr and rerun")
            if work is not hf:  # bf16 gradients step the fp32 master weights
                for w, p in zip(work_params, params):
                    if w.grad is None:
                        p.grad = None  # no gradient reached it: the optimizer skips it, as in fp32
                    else:  # into a buffer kept across steps: no 0.5 GB allocation per step
                        p.grad = grad_buffers.setdefault(id(p), torch.empty_like(p))
                        p.grad.copy_(w.grad)
                work.zero_grad(set_to_none=True)
            if skipped < len(group):
                if cfg.sgd_matched:
                    # an all-zero gradient moves nothing whatever the rate
                    _set_lr(opt, cfg.lr / max(_rms_nonzero([p.grad for p in params if p.grad is not None]), 1e-30))
                opt.step()
                if work is not hf:
                    _copy_params(params, work_params)
            if global_step == 0 and cfg.method == "full":
                update_rms["step1"] = _update_rms(hf, model.hf)
            # A finite loss can still come with an update that overflows the weights; catch it
            # here, before a checkpoint could save them as the "last good" one.
            if not weights_finite(params):
                raise TrainingDiverged(
                    f"weights became non-finite at step {global_step + 1} (loss {loss_sum}); not checkpointed. "
                    f"Last good checkpoint: {out / CHECKPOINT_DIR if (out / CHECKPOINT_DIR).exists() else 'none'}; "
                    "lower train.lr and rerun"
                )
            opt.zero_grad(set_to_none=True)
            step = global_step + 1
            log.append({"step": step, "epoch": epoch, "loss": loss_sum,
                        **({"skipped": skipped} if grammar_ids is not None or masked else {}),
                        **({"positions": n_targets} if masked else {}),
                        **({"lr": opt.param_groups[0]["lr"]} if cfg.sgd_matched else {})})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tokens_seen / (time.perf_counter() - t0):.0f}")
            if cfg.snapshot_every and step % cfg.snapshot_every == 0 and step < total:
                _save_snapshot(out, hf, model.hf, step, cfg)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                _save_checkpoint(out, hf, opt, step, log, cfg)
            if stop_after is not None and step >= stop_after:
                _save_checkpoint(out, hf, opt, step, log, cfg)
                bar.close()
                return hf
    bar.close()
    del work, work_params, grad_buffers
    hf.eval()
    wall = time.perf_counter() - t0
    kept = []
    if cfg.method == "lora":
        kept.append(save_tensors(out / ADAPTER_FILE, trainable_state(hf)))
    elif cfg.keep == "weights":
        kept.append(save_tensors(out / WEIGHTS_FILE, dict(hf.named_parameters())))
    elif cfg.keep == "update":
        kept.append(save_tensors(out / UPDATE_FILE, _update(hf, model.hf)))
    write_json(out / LOG_FILE, log)
    if cfg.method == "full":
        update_rms["final"] = _update_rms(hf, model.hf)
    write_json(out / MANIFEST_FILE, {
        # RMS over all weights of W - W_base: how far each optimizer moved (E10 matches the steps)
        **({"update_rms": update_rms} if update_rms else {}),
        "train": asdict(cfg), "n_examples": len(examples), "steps": step,
        "final_loss": log[-1]["loss"] if log else None, "wall_s": round(wall, 2),
        **({"kd_first_loss": log[0]["loss"], "kd_skipped_steps": sum(r.get("skipped", 0) == cfg.grad_accum for r in log)}
           if cfg.objective == "kd" and log else {}),
        **({"positions_counted": sum(map(_counted, examples)), "positions_total": sum(len(e.completion_ids) for e in examples)}
           if masked else {}),
        **({"project_out_vector": project_vector.hash()} if cfg.project_out else {}),
        "tokens_per_s": round(tokens_seen / max(wall, 1e-9), 1), "tokens": tokens_seen,
        "kept_bytes": sum(p.stat().st_size for p in kept), "base": model.identity(),
        **({"matmul_gflops": {k: round(v, 1) for k, v in rates.items()}} if rates else {}),
        **provenance(), **(extra_manifest or {}),
    })
    # optimizer state is 2x the weights. Renamed first: a kill in the middle of the delete must not
    # leave half a checkpoint that a rerun would try to resume from (a `.tmp` name is never read,
    # and `Stage.clean` removes it)
    ck = out / CHECKPOINT_DIR
    if ck.exists():
        trash = out / (CHECKPOINT_DIR + ".discard.tmp")
        shutil.rmtree(trash, ignore_errors=True)
        ck.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    return hf


def _student_config(base: LoadedModel, d: Path) -> TrainConfig:
    man = read_json(d / MANIFEST_FILE)
    if man["base"]["fingerprint"] != base.fingerprint():
        raise ValueError(f"student: trained from base fingerprint {man['base']['fingerprint']}, "
                         f"but the given base is {base.fingerprint()}; load the base it was trained from")
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in man["train"].items()})


def _build_student(base: LoadedModel, cfg: TrainConfig, saved: dict[str, Tensor], what: str, name: str,
                   update: bool = False) -> LoadedModel:
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
        raise ValueError(f"student: {d} kept no weights (train.keep = \"none\"); retrain it with train.keep = "
                         "\"update\" to analyze it")
    f = d / (ADAPTER_FILE if cfg.method == "lora" else UPDATE_FILE if cfg.keep == "update" else WEIGHTS_FILE)
    if not f.exists():
        raise ValueError(f"student: {f} is missing; delete {d} and rerun to retrain the student")
    weights = load_tensors(f)
    return _build_student(base, cfg, weights, f"student: {f}", f"{base.name}+student:{d.name}",
                          update=cfg.keep == "update")


def load_snapshot(base: LoadedModel, student_dir: str | Path, step: int) -> LoadedModel:
    """The student of `student_dir` as it was after `step` optimizer steps (a kept snapshot)."""
    d = Path(student_dir)
    steps = snapshot_steps(d)
    if step not in steps:
        raise ValueError(f"step: {d} has no snapshot at step {step} (it has {steps or 'none'}; set train.snapshot_every)")
    cfg = _student_config(base, d)
    saved = load_tensors(d / SNAPSHOTS_DIR / f"step{step:05d}.safetensors")
    return _build_student(base, cfg, saved, f"snapshot: step {step} of {d}", f"{base.name}+student:{d.name}@{step}",
                          update=True)

"""A student's training settings: `TrainConfig`, its one-line checks of every field, and `key()`,
what of them defines the student (the stage key `interp.pipeline.student_stage` builds on).

The training itself is `interp.train`; checks that need the model (the LoRA targets against its
layers, `check_lora`) are there too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from interp.chat import SYSTEM_PROMPTS
from interp.divergence import RULES
from interp.optim import OPTIMIZERS

LOSS_POSITIONS = ("all", "divergence", "non_divergence")
TRAIN_DTYPES = ("fp32", "bf16")
KEEP = ("weights", "update", "none")
# settings that change how a student is computed but not what it is (same weights to the bit)
RUNTIME_FIELDS = ("grad_checkpointing",)
# every linear layer of a Llama or Gemma decoder block (attention and MLP): the default targets
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ALL_LINEAR = "all-linear"  # lora_targets: every linear layer of the decoder blocks, whatever the model names them


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
    lora_rank, lora_alpha, lora_targets: LoRA settings. lora_targets: module names (a module is
        adapted when its path ends with one, as peft matches) or ("all-linear",): every linear
        layer of the decoder blocks, resolved against the model (`lora_modules`). A rank above a
        targeted layer's smallest dimension, or a name that matches no linear layer, is refused in
        one line before training (`check_lora`).
    system_prompt: "default": the rows' user turns are rendered by the chat template as it is
        (SmolLM2's inserts its default system prompt); "none": with no system turn at all
        (`LoadedModel.chat`). Part of `key()` when not "default".
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
    lora_targets: tuple[str, ...] = LORA_TARGETS
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
    system_prompt: str = "default"

    def key(self) -> dict:
        """The settings that define the student (the kd fields only matter for kd; the later
        options only when set, so the keys of students trained before them stay the same)."""
        d = asdict(self)
        if self.objective == "sft":
            d.pop("objective"), d.pop("kd_min_kl")
        else:
            # kd's KL moved from float32 to float64 (55dd2cf) under the same key: kd students cached
            # before it were computed by other arithmetic, so kd keys name the arithmetic now
            d["kd_kl"] = "float64"
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
        if self.system_prompt == "default":
            d.pop("system_prompt")
        for name in RUNTIME_FIELDS:
            d.pop(name)
        return d

    @property
    def sgd_matched(self) -> bool:
        return self.match_step and self.optimizer == "sgd"

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora"):
            raise ValueError(f"train.method: {self.method!r} is not 'full' or 'lora'")
        if self.optimizer not in OPTIMIZERS:
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
        if self.objective == "kd" and self.dtype == "bf16":
            raise ValueError(KD_BF16)
        for name in ("lr", "epochs", "batch_size", "grad_accum", "max_len"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name}: {getattr(self, name)} must be > 0")
        if self.system_prompt not in SYSTEM_PROMPTS:
            raise ValueError(f"train.system_prompt: {self.system_prompt!r} is not one of {SYSTEM_PROMPTS}")
        self._check_lora_settings()

    def _check_lora_settings(self) -> None:
        if isinstance(self.lora_targets, (str, list)):  # the tuple a key and a resume compare
            targets = (self.lora_targets,) if isinstance(self.lora_targets, str) else tuple(self.lora_targets)
            object.__setattr__(self, "lora_targets", targets)
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank < 1:
            raise ValueError(f"train.lora_rank: {self.lora_rank!r} must be a whole number >= 1")
        if (
            isinstance(self.lora_alpha, bool)
            or not isinstance(self.lora_alpha, (int, float))
            or not math.isfinite(self.lora_alpha)
            or self.lora_alpha <= 0
        ):
            raise ValueError(
                f"train.lora_alpha: {self.lora_alpha!r} must be a finite number > 0 (the adapter's "
                "scale is lora_alpha / lora_rank; alpha = rank scales it by 1)"
            )
        t = self.lora_targets
        if not t or len(set(t)) != len(t) or not all(isinstance(n, str) and n.strip() for n in t):
            raise ValueError(
                f"train.lora_targets: {list(t)} must be distinct module names, e.g. "
                f"{list(LORA_TARGETS)}, or {ALL_LINEAR!r}"
            )
        if ALL_LINEAR in t and len(t) > 1:
            raise ValueError(f"train.lora_targets: {ALL_LINEAR!r} already names every linear layer; give it alone")


# bf16 rounding alone puts a kd control student (teacher = its base) at KL ~1.5e-3 per position,
# far above kd_min_kl (set for fp32's ~1e-10), and AdamW then trains on rounding noise (measured:
# KL 0.16-1.16 after 13-20 steps on seeds 1000-1002, the collapse guard stopping one)
KD_BF16 = (
    "train.dtype: 'bf16' cannot train kd students (bf16 rounding alone gives a kd control a KL "
    "above train.kd_min_kl, which AdamW amplifies); use dtype = 'fp32' for kd, or objectives = ['sft']"
)

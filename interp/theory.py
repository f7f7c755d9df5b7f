"""E8: the subliminal-learning theorem, checked numerically.

Claim: a teacher theta_T = theta_0 + delta and a student that starts at the same theta_0. One
gradient step of the student on the teacher's outputs (soft-label cross-entropy, or squared error
on logits) gives an update u = -lr * grad with <u, delta> >= 0 to first order in delta, whatever
the inputs: for squared error, u = lr * J^T J delta + O(|delta|^2), and J^T J is positive
semidefinite (the softmax Hessian plays that role for cross-entropy). A student from another
initialisation theta_0' gets no such guarantee; its update is compared with the same delta.

Measured per seed for a batched MLP (all seeds at once) and the tiny random Llama (one seed at a
time): <u, delta>, cos(u, delta), and from those the mean with a t-interval and the fraction of
seeds with <u, delta> >= 0. The student step size only scales u, so it changes no sign or cosine.

    python -m interp.cli theorem --seeds 64
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.mnist import (
    N_DIGITS,
    BatchedMLP,
    DigitData,
    digit_batches,
    digit_loss,
    generator,
    generators,
    load_digits_data,
)
from interp.stats import t_interval
from interp.runs import CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, content_hash, provenance, write_json

MODELS = ("mlp", "transformer")
TEACHERS = ("trained", "random")
LOSSES = ("soft_ce", "mse")
INITS = ("same", "cross")


@dataclass
class TheoremConfig:
    """E8 settings. Every (model, teacher, loss, init) cell is measured on the same seeds."""

    n_seeds: int = 64
    """Independent replications: each seed owns theta_0, theta_0', teacher and inputs."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + n_seeds - 1."""
    models: tuple[str, ...] = MODELS
    """Which models to check: 'mlp' (the E7 MLP) and/or 'transformer' (the tiny random Llama)."""
    teachers: tuple[str, ...] = TEACHERS
    """How the teacher leaves theta_0: 'trained' (teacher_steps of SGD on a task: digits for the
    MLP, next-token loss on random tokens for the transformer) and/or 'random' (Gaussian noise)."""
    losses: tuple[str, ...] = LOSSES
    """Student distillation losses: 'soft_ce' (cross-entropy on the teacher's softmax) and/or
    'mse' (squared error on logits)."""
    teacher_steps: int = 5
    """SGD steps that make a 'trained' teacher."""
    teacher_lr: float = 0.05
    """SGD learning rate of the 'trained' teacher."""
    perturb_scale: float = 0.01
    """A 'random' teacher adds perturb_scale * rms(tensor) * N(0, 1) to every parameter tensor."""
    student_lr: float = 1e-3
    """Step size of the one student step (scales <u, delta>; signs and cosines do not depend on it)."""
    n_inputs: int = 64
    """Distillation inputs per seed: noise images for the MLP, random token sequences for the
    transformer (and the batch size of the transformer teacher's training data)."""
    seq_len: int = 16
    """Tokens per random sequence (transformer)."""
    hidden: int = 256
    """MLP hidden width."""
    n_aux: int = 3
    """MLP auxiliary logits (the student here is distilled on all 10 + n_aux logits)."""
    transformer: str = "tiny"
    """`interp.models.load_model` name of the transformer; 'tiny' is built from a config, offline."""

    def __post_init__(self) -> None:
        for name in ("n_seeds", "teacher_steps", "n_inputs", "seq_len", "hidden", "n_aux"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TheoremConfig.{name}={getattr(self, name)!r}: must be a positive integer")
        if self.n_seeds < 2:
            raise ValueError(
                f"TheoremConfig.n_seeds={self.n_seeds}: a t-interval needs at least 2 seeds; pass 2 or more"
            )
        for name in ("teacher_lr", "perturb_scale", "student_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TheoremConfig.{name}={getattr(self, name)!r}: must be > 0")
        for name, allowed in (("models", MODELS), ("teachers", TEACHERS), ("losses", LOSSES)):
            value = (getattr(self, name),) if isinstance(getattr(self, name), str) else tuple(getattr(self, name))
            setattr(self, name, value)
            if not value or any(v not in allowed for v in value):
                raise ValueError(f"TheoremConfig.{name}={value!r}: pick one or more of {', '.join(allowed)}")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.n_seeds))


# ----------------------------------------------------------------------------- shared pieces


def distill_loss(student_logits: Tensor, teacher_logits: Tensor, kind: str) -> Tensor:
    """Per-model loss on (models, batch, classes) logits: soft-label cross-entropy or squared error."""
    if kind == "soft_ce":
        return -(F.softmax(teacher_logits, -1) * F.log_softmax(student_logits, -1)).sum(-1).mean(-1)
    if kind == "mse":
        return (student_logits - teacher_logits).pow(2).mean(-1).mean(-1)
    raise ValueError(f"distill_loss: unknown kind {kind!r}; use one of {', '.join(LOSSES)}")


def _alignment(update: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise <u, delta> and cos(u, delta) of (models, n_params) tensors, in float64."""
    u, d = update.double(), delta.double()
    return (u * d).sum(-1), F.cosine_similarity(u, d, dim=-1)


def summarise(inner: Tensor, cosine: Tensor) -> dict:
    """Mean inner product and cosine with 95% t-intervals, and the share of seeds with inner >= 0."""
    return {
        "inner": t_interval(inner.tolist()),
        "cosine": t_interval(cosine.tolist()),
        "frac_nonneg": float((inner >= 0).double().mean()),
        "n": len(inner),
    }


def _derived_seed(seed: int, purpose: str) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator(seed, purpose)))


# ----------------------------------------------------------------------------- the MLP


def make_mlp_teacher(theta0: BatchedMLP, kind: str, data: DigitData, cfg: TheoremConfig) -> BatchedMLP:
    """theta_0 plus a few SGD steps on digits ('trained') or plus scaled Gaussian noise ('random')."""
    teacher = theta0.copy()
    params = [*teacher.weights, *teacher.biases]
    if kind == "trained":
        for x, y in digit_batches(data, cfg.seeds, cfg.n_inputs, cfg.teacher_steps):
            grads = torch.autograd.grad(digit_loss(teacher(x), y).sum(), params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= cfg.teacher_lr * g
    else:
        gens = generators(cfg.seeds, "teacher-noise")
        with torch.no_grad():
            for p in params:
                for k, g in enumerate(gens):  # per-model rms, so each seed's teacher is its own
                    p[k] += cfg.perturb_scale * p[k].pow(2).mean().sqrt() * torch.randn(p[k].shape, generator=g)
    return teacher


def measure_mlp(cfg: TheoremConfig, teacher_kind: str, data: DigitData | None = None) -> dict:
    """{(loss, init): (inner (seeds,), cosine (seeds,))} for the batched MLP, plus |delta|/|theta_0|."""
    data = data if data is not None else load_digits_data()
    sizes = [data.d_in, cfg.hidden, cfg.hidden, N_DIGITS + cfg.n_aux]
    theta0 = BatchedMLP.init(sizes, generators(cfg.seeds, "init"))
    cross = BatchedMLP.init(sizes, generators(cfg.seeds, "cross-init"))
    teacher = make_mlp_teacher(theta0, teacher_kind, data, cfg)
    delta = teacher.flat() - theta0.flat()  # (seeds, n_params)
    gens = generators(cfg.seeds, "distill-inputs")
    x = torch.stack([torch.rand(cfg.n_inputs, data.d_in, generator=g) for g in gens]) * 2 - 1  # noise images
    with torch.no_grad():
        target = teacher(x)
    out = {"relative_delta": (delta.norm(dim=1) / theta0.flat().norm(dim=1)).tolist()}
    for loss in cfg.losses:
        for init_name, start in (("same", theta0), ("cross", cross)):
            out[(loss, init_name)] = _alignment(mlp_update(start, x, target, loss, cfg.student_lr), delta)
    return out


def mlp_update(student: BatchedMLP, x: Tensor, target: Tensor, loss: str, lr: float) -> Tensor:
    """theta_after - theta_before of one SGD step on the distillation loss: (models, n_params),
    flattened in `BatchedMLP.flat` order."""
    student = student.copy()
    params = [*student.weights, *student.biases]  # the order BatchedMLP.flat uses
    grads = torch.autograd.grad(distill_loss(student(x), target, loss).sum(), params)
    return -lr * torch.cat([g.reshape(student.n_models, -1) for g in grads], dim=1)


# ----------------------------------------------------------------------------- the transformer


def _flat_params(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def transformer_update(student: nn.Module, ids: Tensor, target: Tensor, loss: str, lr: float) -> Tensor:
    """The update of one SGD step on the teacher's logits at every position, flattened in
    `parameters()` order; `student` itself is not changed."""
    logits = student(input_ids=ids).logits  # (batch, pos, vocab)
    value = distill_loss(logits.reshape(1, -1, logits.shape[-1]), target.reshape(1, -1, target.shape[-1]), loss)
    grads = torch.autograd.grad(value.sum(), list(student.parameters()))
    return -lr * torch.cat([g.reshape(-1) for g in grads])


def make_transformer_teacher(theta0: nn.Module, kind: str, seed: int, cfg: TheoremConfig) -> nn.Module:
    """theta_0 plus SGD on next-token loss over random tokens ('trained') or Gaussian noise ('random')."""
    teacher = copy.deepcopy(theta0)
    params = list(teacher.parameters())  # tied embeddings appear once
    if kind == "trained":
        g = generator(seed, "teacher-tokens")
        vocab = teacher.config.vocab_size
        for _ in range(cfg.teacher_steps):
            ids = torch.randint(0, vocab, (cfg.n_inputs, cfg.seq_len), generator=g)
            grads = torch.autograd.grad(teacher(input_ids=ids, labels=ids).loss, params)
            with torch.no_grad():
                for p, grad in zip(params, grads):
                    p -= cfg.teacher_lr * grad
    else:
        g = generator(seed, "teacher-noise")
        with torch.no_grad():
            for p in params:
                p += cfg.perturb_scale * p.pow(2).mean().sqrt() * torch.randn(p.shape, generator=g)
    return teacher


def measure_transformer(cfg: TheoremConfig, teacher_kind: str) -> dict:
    """The same measurements as `measure_mlp`, one seed at a time on `cfg.transformer`."""
    from interp.models import load_model

    cells: dict = {(loss, i): ([], []) for loss in cfg.losses for i in INITS}
    relative = []
    for seed in cfg.seeds:
        theta0 = load_model(cfg.transformer, device="cpu", seed=_derived_seed(seed, "init")).hf
        cross = load_model(cfg.transformer, device="cpu", seed=_derived_seed(seed, "cross-init")).hf
        teacher = make_transformer_teacher(theta0, teacher_kind, seed, cfg)
        delta = _flat_params(teacher) - _flat_params(theta0)
        relative.append(float(delta.norm() / _flat_params(theta0).norm()))
        g = generator(seed, "distill-inputs")
        ids = torch.randint(0, theta0.config.vocab_size, (cfg.n_inputs, cfg.seq_len), generator=g)
        with torch.no_grad():
            target = teacher(input_ids=ids).logits  # (batch, pos, vocab)
        for loss in cfg.losses:
            for init_name, start in (("same", theta0), ("cross", cross)):
                update = transformer_update(start, ids, target, loss, cfg.student_lr)
                inner, cos = _alignment(update[None], delta[None])
                cells[(loss, init_name)][0].append(float(inner))
                cells[(loss, init_name)][1].append(float(cos))
    out = {
        k: (torch.tensor(v[0], dtype=torch.float64), torch.tensor(v[1], dtype=torch.float64)) for k, v in cells.items()
    }
    return {"relative_delta": relative, **out}


# ----------------------------------------------------------------------------- the run


def run_alignment(cfg: TheoremConfig) -> list[dict]:
    """One row per (model, teacher, loss, init) with the summary statistics and per-seed values."""
    data = load_digits_data() if "mlp" in cfg.models else None
    rows = []
    for model in cfg.models:
        for teacher in cfg.teachers:
            cells = measure_mlp(cfg, teacher, data) if model == "mlp" else measure_transformer(cfg, teacher)
            rel = t_interval(cells["relative_delta"])["mean"]
            for loss in cfg.losses:
                for init_name in INITS:
                    inner, cos = cells[(loss, init_name)]
                    rows.append(
                        {
                            "model": model,
                            "teacher": teacher,
                            "loss": loss,
                            "init": init_name,
                            **summarise(inner, cos),
                            "relative_teacher_delta": rel,
                            "inner_by_seed": inner.tolist(),
                            "cosine_by_seed": cos.tolist(),
                        }
                    )
    return rows


def run_theorem(cfg: TheoremConfig, out_dir: str | Path) -> dict:
    """Run E8 into `out_dir`: config.json, results.json, then manifest.json (written last)."""
    out_dir = Path(out_dir)
    started = time.time()
    write_json(out_dir / CONFIG_FILE, asdict(cfg))
    results = {"rows": run_alignment(cfg)}
    write_json(out_dir / RESULTS_FILE, results)
    manifest = {
        "kind": "theorem",
        "experiment": "E8-theorem",
        **provenance("cpu"),
        "config_hash": content_hash(asdict(cfg)),
        "seeds": cfg.seeds,
        "wall_time_s": round(time.time() - started, 3),
    }
    write_json(out_dir / MANIFEST_FILE, manifest)
    return {"results": results, "manifest": manifest, "out_dir": str(out_dir)}

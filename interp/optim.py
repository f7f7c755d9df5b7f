"""The optimizers of the optimizer ablation (E10): fused AdamW (the default), plain SGD (optionally
with its step matched to a sign step's size) and SignSGD."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

OPTIMIZERS = ("adamw", "sgd", "signsgd")


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


def make_optimizer(cfg, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer a TrainConfig names (`optimizer`, `lr`, and `weight_decay` for AdamW)."""
    if cfg.optimizer == "adamw":
        # fused: one kernel per step instead of a dozen passes over 2x the weights (3.9x faster on
        # smollm2, same update up to float rounding; benchmarks/bench_train.py)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    return SignSGD(params, lr=cfg.lr)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def rms_nonzero(tensors: list[Tensor]) -> float:
    """RMS over the nonzero entries: AdamW and SignSGD move exactly those by lr at step 1 (an
    unused embedding row gets no gradient and no step), so lr / this matches SGD to them."""
    n = sum(int(t.count_nonzero()) for t in tensors)
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors) / max(n, 1))

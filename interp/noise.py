"""Gaussian weight noise (E5, the non-semantic weight hypothesis).

`WeightNoise` says how: sigma, relative to each tensor's standard deviation (or absolute), on the
parameters whose name matches a regex, from a seed. `add_weight_noise` applies it inside a `with`
block and restores the weights bit for bit on exit (exception or not); `noised_model` materialises
a noised copy, the base that a teacher and its student then share.

Each tensor's noise comes from its own generator, seeded by (seed, parameter name): the noise a
tensor receives does not depend on which other tensors the pattern selects, or on their order.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import Tensor

from interp.models import LoadedModel


@dataclass(frozen=True)
class WeightNoise:
    """sigma: noise sd, x each tensor's sd when `relative` (a constant tensor, e.g. untrained norm
        gains, then gets none), else absolute.
    pattern: regex searched in parameter names (".*": every tensor; e.g. r"mlp\\.down_proj").
    seed: seeds every tensor's generator (with the tensor's name).
    """

    sigma: float
    relative: bool = True
    pattern: str = ".*"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ValueError(f"noise.sigma: {self.sigma} must be >= 0")
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise ValueError(f"noise.pattern: {self.pattern!r} is not a valid regular expression ({e})") from None

    def key(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        scale = f"{self.sigma:g} x sd" if self.relative else f"{self.sigma:g}"
        return f"noise({scale}, /{self.pattern}/, seed {self.seed})"


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def noise_tensors(model: LoadedModel, noise: WeightNoise) -> dict[str, Tensor]:
    """{parameter name: the noise `noise` adds to it}, in the parameter's dtype and device."""
    rx = re.compile(noise.pattern)
    out = {}
    for name, p in model.hf.named_parameters():
        if not rx.search(name):
            continue
        # drawn in float32 on the CPU, so the bytes do not depend on the device
        z = torch.randn(p.shape, generator=_generator(noise.seed, name), dtype=torch.float32)
        scale = noise.sigma * (p.detach().float().std(correction=0).item() if noise.relative and p.numel() > 1 else 1.0)
        out[name] = (z * scale).to(device=p.device, dtype=p.dtype)
    if not out:
        raise ValueError(
            f"noise.pattern: {noise.pattern!r} matches no parameter of {model.name}; "
            "check the names with model.hf.named_parameters()"
        )
    return out


@contextlib.contextmanager
def add_weight_noise(model: LoadedModel, noise: WeightNoise) -> Iterator[dict[str, Tensor]]:
    """Add the noise to `model`'s weights inside the block (yields the noise per tensor); the
    original weights are restored exactly on exit."""
    deltas = noise_tensors(model, noise)
    params = dict(model.hf.named_parameters())
    saved = {n: params[n].detach().clone() for n in deltas}
    try:
        with torch.no_grad():
            for n, d in deltas.items():
                params[n].add_(d)
        yield deltas
    finally:
        with torch.no_grad():
            for n, w in saved.items():
                params[n].copy_(w)


def noised_model(model: LoadedModel, noise: WeightNoise) -> LoadedModel:
    """A copy of `model` with the noise added for good (the caller's model is unchanged)."""
    hf = copy.deepcopy(model.hf)
    params = dict(hf.named_parameters())
    with torch.no_grad():
        for n, d in noise_tensors(model, noise).items():
            params[n].add_(d)
    return LoadedModel(name=f"{model.name}+{noise.describe()}", hf=hf, tokenizer=model.tokenizer)

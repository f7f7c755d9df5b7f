"""Activation shifts (E2, E9): does a student's mean residual move along the steering vector?

The shift at layer l is mean(student resid_post_l) - mean(base resid_post_l) over the same
chat-formatted texts, read with the recording hooks that built the vector
(`blocks.{l}.hook_resid_post`). Its cosine with v is judged against cosines with isotropic random
directions: in d dimensions those have mean 0 and sd ~ 1/sqrt(d), whatever the shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

from interp.models import LoadedModel
from interp.runs import RESULTS_FILE, load_tensors, read_json, save_tensors, write_json
from interp.steering import Conversation, SteeringVector, mean_activations

SHIFT_FILE = "activation_shift.safetensors"

_POSITIONS = {"all": "mean", "last": "last"}  # our names -> mean_activations' names


@dataclass
class Null:
    """A statistic's distribution under random unit directions, per layer (or per row).

    Unpacks as `(mean, sd)`; `analytic_sd` is the large-d value for cosines (1/sqrt(d)) or the
    exact-mean reference for energies, beside the sampled one.
    """

    mean: Tensor
    sd: Tensor
    n: int
    analytic_sd: float | None = None

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.mean, self.sd))

    def z(self, value: Tensor) -> Tensor:
        """(value - mean) / sd; nan where the null has no spread (e.g. a zero shift)."""
        sd = self.sd.to(torch.float64)
        z = (torch.as_tensor(value, dtype=torch.float64) - self.mean.to(torch.float64)) / sd
        return torch.where(sd > 0, z, torch.full_like(z, float("nan")))


def random_directions(n: int, d: int, generator: torch.Generator | None = None) -> Tensor:
    """`n` isotropic unit vectors in R^d, (n, d), float64, from `generator` (seed it)."""
    r = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return r / r.norm(dim=-1, keepdim=True)


def _unit(x: Tensor) -> Tensor:
    x = x.to(torch.float64)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def _per_layer(vector: Tensor | SteeringVector, n_layers: int) -> Tensor:
    v = vector.vectors if isinstance(vector, SteeringVector) else torch.as_tensor(vector)
    if v.ndim == 1:
        v = v.expand(n_layers, -1)
    if v.shape[0] != n_layers:
        raise ValueError(
            f"vector: {v.shape[0]} layers, but the shift has {n_layers}; pass one direction per layer or a single [d_model]"
        )
    return v


# ----------------------------------------------------------------------------- the shift


def _check_pair(student: LoadedModel, base: LoadedModel) -> None:
    if (student.n_layers, student.d_model) != (base.n_layers, base.d_model):
        raise ValueError(
            f"student: {student.n_layers} layers x d_model {student.d_model} does not match the base "
            f"({base.n_layers} x {base.d_model}); a shift needs a student fine-tuned from this base"
        )
    if student.tokenizer is not base.tokenizer and student.tokenizer.get_vocab() != base.tokenizer.get_vocab():
        raise ValueError("student: its tokenizer differs from the base's; both must read the same tokens")


def _rendered(model: LoadedModel, texts: Sequence[Conversation]) -> list[str]:
    """Strings pass through; chats are rendered whole (a trailing user turn gets the assistant tag)."""
    return [
        t if isinstance(t, str) else model.chat(t, add_generation_prompt=t[-1]["role"] != "assistant") for t in texts
    ]


def activation_shift(
    student: LoadedModel,
    base: LoadedModel,
    texts: Sequence[Conversation],
    position: str = "all",
    batch_size: int = 16,
    layers: Sequence[int] | None = None,
) -> Tensor:
    """Mean residual (student - base) per layer over `texts`: (n_layers_read, d_model).

    `position`: "all" averages every real (non-pad) token of each text, then the texts; "last"
    reads each text's final token. Texts are rendered strings or chat message lists.
    """
    if position not in _POSITIONS:
        raise ValueError(f"position: {position!r} is not 'all' or 'last'")
    if not texts:
        raise ValueError("texts: need at least one text to average over")
    _check_pair(student, base)
    rendered = _rendered(base, texts)
    s = mean_activations(student, rendered, _POSITIONS[position], layers=layers, batch_size=batch_size)
    b = mean_activations(base, rendered, _POSITIONS[position], layers=layers, batch_size=batch_size)
    return s - b


def layer_cosines(shift: Tensor, vector: Tensor | SteeringVector) -> Tensor:
    """cos(shift[l], v[l]) per layer: (n_layers,). A single [d_model] v is used at every layer;
    a zero shift (layers before a change) has cosine 0."""
    v = _per_layer(vector, shift.shape[0])
    return torch.nn.functional.cosine_similarity(shift.to(torch.float64), v.to(torch.float64), dim=-1, eps=1e-30)


def random_cosine_null(shift: Tensor, n: int = 1000, generator: torch.Generator | None = None) -> Null:
    """Cosines of each layer's shift with `n` isotropic random directions (the same set at
    every layer): per-layer mean (~0) and sd (~1/sqrt(d_model))."""
    cos = _unit(shift) @ random_directions(n, shift.shape[-1], generator).T  # (n_layers, n)
    zero = shift.to(torch.float64).norm(dim=-1) == 0
    cos[zero] = 0.0
    return Null(cos.mean(-1), cos.std(-1), n, analytic_sd=1 / math.sqrt(shift.shape[-1]))


def shift_report(
    shift: Tensor,
    vector: Tensor | SteeringVector | None,
    n_random: int = 1000,
    seed: int = 0,
    layers: Sequence[int] | None = None,
) -> dict:
    """JSON-able per-layer summary: cosine with v, the random-direction null, z and shift norm.
    `layers`: the model layer each row of `shift` came from (default 0..n-1). `vector` None: a
    shift in a residual stream that is not v's (a cross-model student of another shape): cosine
    and z are None, the norm and the null (which depend on the shift alone) stay."""
    cos = None if vector is None else layer_cosines(shift, vector)
    null = random_cosine_null(shift, n_random, torch.Generator().manual_seed(seed))
    z = None if cos is None else null.z(cos)
    layers = list(range(shift.shape[0])) if layers is None else list(layers)
    rows = [
        {
            "layer": l,
            "hook": f"blocks.{l}.hook_resid_post",
            "cosine": None if cos is None else float(cos[i]),
            "null_mean": float(null.mean[i]),
            "null_sd": float(null.sd[i]),
            "analytic_sd": null.analytic_sd,
            "z": None if z is None or math.isnan(z[i]) else float(z[i]),
            "shift_norm": float(shift[i].norm()),
        }
        for i, l in enumerate(layers)
    ]
    return {"d_model": shift.shape[-1], "n_random": n_random, "seed": seed, "by_layer": rows}


# ----------------------------------------------------------------------------- artifacts


def save_shift(directory: str | Path, shift: Tensor, report: dict) -> tuple[Path, Path]:
    """`activation_shift.safetensors` (the shift) + `results.json` (the report) in `directory`."""
    d = Path(directory)
    return save_tensors(d / SHIFT_FILE, {"shift": shift}), write_json(d / RESULTS_FILE, report)


def load_shift(directory: str | Path) -> tuple[Tensor, dict]:
    d = Path(directory)
    return load_tensors(d / SHIFT_FILE)["shift"], read_json(d / RESULTS_FILE)

"""Weight deltas (E3): how much of a student's update lies along the steering vector?

A projection's weight is (out, in). `o_proj` and `down_proj` write into the residual stream:
their output rows are d_model, so we read the update's energy on the output side, ||v^T dW||^2.
`q/k/v_proj` and `gate/up_proj` read from it: their input columns are d_model, so ||dW v||^2.
Divided by ||dW||_F^2 this is the fraction of the update's energy along v; a random unit
direction gets exactly 1/d_model on average, with an sd fixed by dW's singular values.
In Gemma the writers' outputs pass a post-norm (a per-coordinate gain) before the residual add,
so there the fraction is measured in the pre-norm output space.
"""

from __future__ import annotations

import math
import re
from typing import Callable

import torch
from torch import Tensor, nn

from interp.analysis.activations import Null, random_directions
from interp.steering import SteeringVector

WRITERS = ("o_proj", "down_proj")  # residual side: output (rows)
READERS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # residual side: input (columns)
SIDES = ("output", "input")

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _module(m) -> nn.Module:
    return m.hf if hasattr(m, "hf") else m


def weight_deltas(student: nn.Module, base: nn.Module, match: Callable[[str], bool] | None = None) -> dict[str, Tensor]:
    """W_student - W_base for every parameter (or those whose name passes `match`), float32 on CPU.
    Takes HF modules or `LoadedModel`s; both must have the same parameter names and shapes."""
    s, b = dict(_module(student).named_parameters()), dict(_module(base).named_parameters())
    if set(s) != set(b):
        extra = sorted(set(s) ^ set(b))
        raise ValueError(
            f"student: parameter names differ from the base's (e.g. {extra[0]!r}); "
            "merge LoRA adapters (load_student does) and compare models of one architecture"
        )
    out = {}
    for name in s:
        if match is not None and not match(name):
            continue
        if s[name].shape != b[name].shape:
            raise ValueError(
                f"student: {name} has shape {tuple(s[name].shape)} but the base's is {tuple(b[name].shape)}"
            )
        out[name] = s[name].detach().float().cpu() - b[name].detach().float().cpu()
    return out


def residual_side(name: str) -> str | None:
    """ "output" for residual writers, "input" for readers, None for anything else (norms, embeddings)."""
    parts = name.split(".")
    if parts[-1] != "weight" or len(parts) < 2:
        return None  # a bias delta is a plain vector; compare it with v directly
    module = parts[-2]
    if module in WRITERS:
        return "output"
    if module in READERS:
        return "input"
    return None


def layer_of(name: str) -> int | None:
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def residual_writers(deltas: dict[str, Tensor]) -> dict[str, Tensor]:
    """The deltas of matrices whose output is added to the residual stream (o_proj, down_proj)."""
    return {n: d for n, d in deltas.items() if residual_side(n) == "output"}


def residual_readers(deltas: dict[str, Tensor]) -> dict[str, Tensor]:
    """The deltas of matrices that read the residual stream (q/k/v_proj, gate/up_proj)."""
    return {n: d for n, d in deltas.items() if residual_side(n) == "input"}


# ----------------------------------------------------------------------------- energy along v


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side: {side!r} is not 'output' (writers) or 'input' (readers)")


def _residual_gram(delta: Tensor, side: str) -> Tensor:
    """dW dW^T (output side) or dW^T dW (input side): (d_model, d_model), float64.
    v^T G v is the energy along v, so one Gram matrix serves any number of directions."""
    _check_side(side)
    d = delta.to(torch.float64)
    return d @ d.T if side == "output" else d.T @ d


def energy_along(delta: Tensor, v: Tensor, side: str) -> Tensor:
    """Fraction of ||dW||_F^2 along unit v on the residual side; v is (d_model,) or (n, d_model).
    Writers ("output"): ||v^T dW||^2 / ||dW||_F^2; readers ("input"): ||dW v||^2 / ||dW||_F^2.
    A random direction gets 1/d_model on average; nan for a zero delta."""
    _check_side(side)
    d = delta.to(torch.float64)
    width = d.shape[0] if side == "output" else d.shape[1]
    u = v.to(torch.float64)
    if u.shape[-1] != width:
        raise ValueError(f"v: has {u.shape[-1]} dims, but the {side} side of this {tuple(d.shape)} delta has {width}")
    u = u / u.norm(dim=-1, keepdim=True)
    proj = u @ d if side == "output" else u @ d.T  # (..., other side)
    total = d.pow(2).sum()
    return proj.pow(2).sum(-1) / total if total > 0 else torch.full(proj.shape[:-1], float("nan"), dtype=torch.float64)


def energy_null(delta: Tensor, side: str, n: int = 1000, generator: torch.Generator | None = None) -> Null:
    """Energy fractions of `n` random unit directions (mean ~1/d_model). `analytic_sd` is the exact
    sd over the sphere, sqrt(2 (sum s^4 - (sum s^2)^2 / d) / (d (d + 2))) / sum s^2, s = singular values."""
    g = _residual_gram(delta, side)
    dim, total = g.shape[0], torch.trace(g)
    if total == 0:
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return Null(nan, nan, n, analytic_sd=None)
    r = random_directions(n, dim, generator)
    e = ((r @ g) * r).sum(-1) / total
    exact = math.sqrt(max(0.0, 2 * float(g.pow(2).sum() - total**2 / dim) / (dim * (dim + 2)))) / float(total)
    return Null(e.mean(), e.std(), n, analytic_sd=exact)


def top_singular_alignment(delta: Tensor, v: Tensor, k: int = 1, side: str = "output") -> Tensor:
    """|cos| of dW's top-k singular vectors on the residual side with v: (k,).
    Left singular vectors for writers ("output"), right ones for readers ("input")."""
    evals, evecs = torch.linalg.eigh(_residual_gram(delta, side))  # ascending; eigvecs = singular vectors
    top = evecs[:, evals.argsort(descending=True)[:k]].T  # (k, d_model)
    u = v.to(torch.float64)
    return (top @ (u / u.norm())).abs()


def singular_values(delta: Tensor) -> Tensor:
    return torch.linalg.svdvals(delta.to(torch.float64))


# ----------------------------------------------------------------------------- per-layer summary


def _matrix_report(delta: Tensor, v: Tensor | None, side: str, n_random: int, gen: torch.Generator, k: int) -> dict:
    """energy_along, energy_null and top_singular_alignment of one matrix from ONE Gram matrix and
    one symmetric eigendecomposition (its eigenvalues are the squared singular values): the three
    separate calls cost ~5x as much on a 576 x 1536 update, and analysing a run reads ~200 of them.
    v None (a student whose residual stream is not v's): only what needs no v (norm, null, top share)."""
    g = _residual_gram(delta, side)
    dim, total = g.shape[0], float(torch.trace(g))
    u = None if v is None else v.to(torch.float64)
    if u is not None and u.shape[-1] != dim:
        raise ValueError(f"v: has {u.shape[-1]} dims, but the {side} side of this {tuple(delta.shape)} delta has {dim}")
    out = {
        "energy": None,
        "expected_random": 1 / dim,
        "null_mean": None,
        "null_sd": None,
        "exact_sd": None,
        "z": None,
        "delta_norm": math.sqrt(max(total, 0.0)),
        "top_singular_share": None,
        "top_singular_cos": None,
    }
    if total <= 0:
        return out
    r = random_directions(n_random, dim, gen)
    e = ((r @ g) * r).sum(-1) / total
    null = Null(
        e.mean(),
        e.std(),
        n_random,
        analytic_sd=math.sqrt(max(0.0, 2 * float(g.pow(2).sum() - total**2 / dim) / (dim * (dim + 2)))) / total,
    )
    evals, evecs = torch.linalg.eigh(g)  # ascending
    order = evals.argsort(descending=True)
    out.update(
        null_mean=_num(null.mean),
        null_sd=_num(null.sd),
        exact_sd=null.analytic_sd,
        top_singular_share=_num(evals[order[0]].clamp_min(0) / evals.clamp_min(0).sum()),
    )
    if u is None:
        return out
    u = u / u.norm()
    energy = float(u @ g @ u) / total
    top = evecs[:, order[:k]].T
    out.update(
        energy=energy,
        z=_num(null.z(torch.tensor(energy, dtype=torch.float64))),
        top_singular_cos=[_num(c) for c in (top @ u).abs()],
    )
    return out


def _direction_for(vector: Tensor | SteeringVector | None, layer: int, side: str) -> tuple[Tensor | None, int | None]:
    """Writers of block l add to resid_post l, compared with v[l]; readers of block l read resid_pre l
    = resid_post (l-1), compared with v[l-1] (v[0] for block 0, which reads the embeddings)."""
    if vector is None:
        return None, None
    v = vector.vectors if isinstance(vector, SteeringVector) else torch.as_tensor(vector)
    if v.ndim == 1:
        return v, None
    at = layer if side == "output" else max(layer - 1, 0)
    return v[at], at


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def weight_report(
    deltas: dict[str, Tensor], vector: Tensor | SteeringVector | None, n_random: int = 1000, seed: int = 0, k: int = 4
) -> dict:
    """JSON-able per-layer summary for every residual writer and reader among `deltas`:
    energy fraction along v, the random-direction null (sampled and exact sd), z, the share of
    energy in the top singular direction and |cos| of the top-k singular directions with v.
    `vector`: one direction (d_model,) or one per layer (n_layers, d_model) / a SteeringVector;
    None: no v to compare with (a cross-model student of another width), norms and nulls only."""
    gen = torch.Generator().manual_seed(seed)
    by_layer: dict[int, dict] = {}
    d_model = None
    for name in sorted(deltas, key=lambda n: (layer_of(n) or -1, n)):
        side, layer = residual_side(name), layer_of(name)
        if side is None or layer is None:
            continue
        delta = deltas[name]
        v, vector_layer = _direction_for(vector, layer, side)
        d_model = delta.shape[0] if side == "output" else delta.shape[1]
        module = name.split(".layers.")[-1].split(".", 1)[-1].removesuffix(".weight")
        row = by_layer.setdefault(layer, {"layer": layer, "modules": {}})
        row["modules"][module] = {
            "role": "writer" if side == "output" else "reader",
            "side": side,
            "vector_layer": vector_layer,
            **_matrix_report(delta, v, side, n_random, gen, k),
        }
    return {
        "d_model": d_model,
        "expected_random": None if d_model is None else 1 / d_model,
        "n_random": n_random,
        "seed": seed,
        "k": k,
        "by_layer": [by_layer[l] for l in sorted(by_layer)],
    }

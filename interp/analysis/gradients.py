"""Gradient auditing (E4): does the SFT loss on a dataset pull the residual stream along v?

For each example, the gradient of its SFT loss (cross-entropy on the completion tokens, built as
`interp.train` builds them, averaged over the example's completion tokens) with respect to
`blocks.{l}.hook_resid_post`, read at the assistant-tag position: the last prompt token, the one
that predicts the first completion token. Training on the data moves the residual along the
*negative* gradient, so data that pushes the model toward +v shows a negative cosine with dL/dh;
`score_vectors` reports the descent direction, so there a positive score means "toward v".
The model is never modified and no parameter gradients are kept (`torch.autograd.grad` on the
activations only).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from interp import batching
from interp.analysis.activations import Null, random_directions
from interp.hooks import layer_hidden as _hidden, layer_hooks, replace_hidden as _replace_hidden
from interp.models import LoadedModel
from interp.rows import build_examples, collate, completion_logits
from interp.runs import load_tensors, read_json, save_tensors, write_json
from interp.stats import label_permutations, mean_differences

GRADIENTS_FILE = "gradients.safetensors"
GRADIENTS_META = "gradients.json"
# assistant_tag: the last prompt token (predicts the first completion token); completion: the mean
# over every position that predicts a completion token (the tag included); all: the sum over every
# (non-pad) position, the derivative of the row's loss along a vector added at every token (what a
# teacher steered with scope "all" adds), i.e. the score test of that steering at strength 0
GRADIENT_POSITIONS = ("assistant_tag", "completion", "all")


@contextlib.contextmanager
def _capture_with_grad(layers: nn.ModuleList, which: list[int]) -> Iterator[dict[int, Tensor]]:
    """Keep `blocks.{l}.hook_resid_post` in the graph for l in `which`. The earliest one becomes a
    leaf that requires grad (same values, cut from the weights before it), so gradients flow to it
    even when the parameters do not require grad, and nothing upstream is traced."""
    store: dict[int, Tensor] = {}
    first = min(which)

    def make(l: int):
        def fn(module, args, output):
            h = _hidden(output)
            if l == first:
                h = h.detach().requires_grad_(True)
                store[l] = h
                return _replace_hidden(output, h)
            store[l] = h
            return None

        return fn

    with layer_hooks(layers, which, make):
        yield store


def _loss_dtype(logits: Tensor) -> Tensor:
    # train.py upcasts to float32; keep float64 (tests) as it is
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def residual_gradients(
    model: LoadedModel,
    rows: list[dict],
    layers: int | Sequence[int],
    position: str = "assistant_tag",
    max_len: int = 192,
    batch_size: int = 8,
) -> Tensor:
    """Per-example dL/dh at the assistant-tag position (or averaged over the completion-predicting
    positions, `position="completion"`, or summed over every position, `"all"`):
    (n_examples, n_layers_requested, d_model).

    `rows` have 'prompt' and 'completion' (a dataset.jsonl). Each example's loss is its mean
    cross-entropy over its completion tokens (end-of-turn included), so rows in one batch do not
    mix: the gradient of the batch's summed loss at row i's activations is row i's own.
    """
    if position not in GRADIENT_POSITIONS:
        raise ValueError(f"position: {position!r} is not one of {GRADIENT_POSITIONS}")
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers: {layers} must name at least one layer, each once")
    for l in layers:
        if not 0 <= l < model.n_layers:
            raise ValueError(f"layer: {l} is out of range for {model.name} (0..{model.n_layers - 1})")
    if not rows:
        raise ValueError("rows: need at least one example")
    examples = build_examples(model, rows, max_len)
    out = torch.zeros(len(examples), len(layers), model.d_model, dtype=torch.float32)
    for sl in batching.chunks(len(examples), batch_size):
        chunk = examples[sl]
        batch, labels = collate(chunk, model.tokenizer.pad_token_id)
        batch, labels = batch.to(model.device), labels.to(model.device)
        where = labels != -100
        row_of = where.nonzero()[:, 0]  # the example of each completion position, in h[where] order
        counts = where.sum(1).to(torch.float64)
        tag = torch.tensor([len(e.prompt_ids) - 1 for e in chunk], device=model.device)
        with torch.enable_grad(), _capture_with_grad(model.layers, layers) as store:
            logits = _loss_dtype(completion_logits(model.hf, batch, where))
            ce = torch.nn.functional.cross_entropy(logits, labels[where], reduction="none")
            loss = (ce / counts[row_of].to(ce.dtype)).sum()
            grads = torch.autograd.grad(loss, [store[l] for l in layers])
        rows_idx = torch.arange(len(chunk), device=model.device)
        for j, g in enumerate(grads):
            if position == "assistant_tag":
                out[sl, j] = g[rows_idx, tag].float().cpu()
            elif position == "completion":  # mean over the positions whose residual predicts a completion token
                w = where.to(g.dtype).unsqueeze(-1)
                out[sl, j] = ((g * w).sum(1) / w.sum(1)).float().cpu()
            else:  # pad positions are causally after the row's tokens, so their gradient is 0; mask anyway
                w = batch.attention_mask.to(g.dtype).unsqueeze(-1)
                out[sl, j] = (g * w).sum(1).float().cpu()
    return out


# ----------------------------------------------------------------------------- alignment


def _unit(x: Tensor) -> Tensor:
    x = torch.as_tensor(x).to(torch.float64)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def gradient_alignment(grads: Tensor, vector: Tensor) -> Tensor:
    """cos(dL/dh, v) per example (and layer): grads (n, [L,] d_model), vector (d_model,) or (L, d_model)."""
    return torch.nn.functional.cosine_similarity(
        grads.to(torch.float64), torch.as_tensor(vector).to(torch.float64), dim=-1, eps=1e-30
    )


@dataclass
class PooledAlignment:
    """cos(mean(a) - mean(b), v) per layer, against random unit directions (`null`)."""

    cosine: Tensor  # (L,) or ()
    projection: Tensor  # (mean(a) - mean(b)) . v_hat
    null: Null
    n_a: int
    n_b: int

    @property
    def z(self) -> Tensor:
        return self.null.z(self.cosine)

    def to_dict(self) -> dict:
        def listed(t: Tensor):
            return [None if math.isnan(x) else x for x in t.reshape(-1).tolist()]

        return {
            "cosine": listed(self.cosine),
            "projection": listed(self.projection),
            "z": listed(self.z),
            "null_mean": listed(self.null.mean),
            "null_sd": listed(self.null.sd),
            "analytic_sd": self.null.analytic_sd,
            "n_random": self.null.n,
            "n_a": self.n_a,
            "n_b": self.n_b,
        }


def pooled_alignment(
    grads_a: Tensor, grads_b: Tensor, vector: Tensor, n_random: int = 1000, seed: int = 0
) -> PooledAlignment:
    """Cosine of the pooled difference mean(a) - mean(b) (e.g. steered minus clean data) with v,
    and with `n_random` isotropic directions (seeded) as the null; shapes as `gradient_alignment`."""
    diff = grads_a.to(torch.float64).mean(0) - grads_b.to(torch.float64).mean(0)  # ([L,] d_model)
    cos = gradient_alignment(diff, vector)
    proj = (diff * _unit(vector)).sum(-1)
    rand = _unit(diff) @ random_directions(n_random, diff.shape[-1], torch.Generator().manual_seed(seed)).T
    null = Null(rand.mean(-1), rand.std(-1), n_random, analytic_sd=1 / math.sqrt(diff.shape[-1]))
    return PooledAlignment(cos, proj, null, len(grads_a), len(grads_b))


def score_vectors(
    grads_trait: Tensor, grads_clean: Tensor, bank: dict[str, Tensor], n_perm: int = 1000, seed: int = 0
) -> list[dict]:
    """Rank candidate trait vectors by how far the trait data's loss pulls the residual along each,
    beyond clean data: score = -(mean(trait) - mean(clean)) . v_hat (the descent direction).

    grads: (n, d_model) at one layer (select it first: `grads[:, i]`). p-values come from
    `n_perm` seeded relabellings of examples between the two datasets (the same relabellings for
    every vector): `p_value` one-sided (toward v), `p_two_sided` on |score|. A p-value says the
    two datasets' gradients differ along v, not that v is special: when the datasets differ at all,
    many directions pass; specificity is the ranking and `cosine` (vs ~1/sqrt(d_model) for a
    random direction, see `pooled_alignment`). Highest score first.
    """
    a, b = (g.squeeze(1) if g.ndim == 3 and g.shape[1] == 1 else g for g in (grads_trait, grads_clean))
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"grads: expected (n, d_model) at one layer, got {tuple(grads_trait.shape)}; select a layer with grads[:, i]"
        )
    if not bank:
        raise ValueError("bank: need at least one candidate vector")
    names = list(bank)
    v = _unit(torch.stack([torch.as_tensor(bank[k]).reshape(-1) for k in names]))  # (m, d_model)
    if v.shape[1] != a.shape[1]:
        raise ValueError(f"bank: vectors have {v.shape[1]} dims but the gradients {a.shape[1]}")
    x = torch.cat([a, b]).to(torch.float64)
    descent = -(x @ v.T)  # (n, m): each example's descent direction along each candidate
    n_a, n = len(a), len(x)
    perm = mean_differences(descent, label_permutations(n_a, n, n_perm, seed))  # (n_perm, m)
    observed = descent[:n_a].mean(0) - descent[n_a:].mean(0)
    diff = x[:n_a].mean(0) - x[n_a:].mean(0)
    cos = -(v @ diff) / diff.norm().clamp_min(1e-300)
    out = [
        {
            "name": name,
            "score": float(observed[j]),
            "cosine": float(cos[j]),
            **permutation_p(observed[j], perm[:, j]),
            "n_trait": n_a,
            "n_clean": n - n_a,
            "n_perm": n_perm,
        }
        for j, name in enumerate(names)
    ]
    return sorted(out, key=lambda r: -r["score"])


def permutation_p(observed: Tensor, perm: Tensor) -> dict:
    """One-sided (observed large) and two-sided sampled permutation p, and z against the
    permutation distribution, of one statistic (the observed labelling counts, so p > 0)."""
    n_perm, sd = len(perm), float(perm.std())
    return {
        "p_value": (int((perm >= observed - 1e-12).sum()) + 1) / (n_perm + 1),
        "p_two_sided": (int((perm.abs() >= observed.abs() - 1e-12).sum()) + 1) / (n_perm + 1),
        "z": (float(observed) - float(perm.mean())) / sd if sd > 0 else None,
    }


def coefficient_trend(coefficients: Sequence[float], values: Sequence[float]) -> dict:
    """Least-squares slope, intercept and Pearson r of a measure (e.g. the pooled projection)
    against the steering coefficient of the datasets it was computed on."""
    c, y = torch.tensor(list(coefficients), dtype=torch.float64), torch.tensor(list(values), dtype=torch.float64)
    if len(c) != len(y) or len(c) < 2:
        raise ValueError("coefficients: need at least two (coefficient, value) pairs of equal length")
    cc, yc = c - c.mean(), y - y.mean()
    slope = float((cc * yc).sum() / (cc * cc).sum())
    denom = float(cc.norm() * yc.norm())
    return {
        "slope": slope,
        "intercept": float(y.mean() - slope * c.mean()),
        "r": float((cc * yc).sum()) / denom if denom > 0 else None,
        "n": len(c),
    }


# ----------------------------------------------------------------------------- artifacts


def save_gradients(directory: str | Path, grads: Tensor, meta: dict) -> tuple[Path, Path]:
    """`gradients.safetensors` + `gradients.json` (layers, position, dataset hash, model identity)."""
    d = Path(directory)
    return save_tensors(d / GRADIENTS_FILE, {"grads": grads}), write_json(d / GRADIENTS_META, meta)


def load_gradients(directory: str | Path) -> tuple[Tensor, dict]:
    d = Path(directory)
    return load_tensors(d / GRADIENTS_FILE)["grads"], read_json(d / GRADIENTS_META)

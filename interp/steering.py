"""Steering vectors: per-layer mean differences of residual activations, saved, checked, applied.

A vector is built from contrastive conversations (trait vs neutral), read at every layer's
`blocks.{l}.hook_resid_post`, at the last token or as a mean over the read span. It is saved as
`vector.safetensors` ([n_layers, d_model]) and `vector.json` (model identity, hook, position,
prompt hashes, per-layer norms) and applied with `steer(...)`, a context manager.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

from interp import batching
from interp.hooks import ResidEdit, edit_resid, hook_name, record_resid, run_recording
from interp.models import LoadedModel
from interp.runs import content_hash, load_tensors, read_json, save_tensors, tensor_hash, write_json

VECTOR_FILE = "vector.safetensors"
VECTOR_META = "vector.json"

Conversation = list[dict] | str  # chat messages, or an already rendered text


@dataclass
class SteeringVector:
    """`vectors[l]` is the trait-minus-neutral direction at `blocks.{l}.hook_resid_post`."""

    vectors: Tensor  # (n_layers, d_model)
    meta: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return self.vectors.shape[0]

    @property
    def d_model(self) -> int:
        return self.vectors.shape[1]

    def norms(self) -> list[float]:
        return self.vectors.norm(dim=-1).tolist()

    def hash(self) -> str:
        return tensor_hash(self.vectors)

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        d = Path(directory)
        meta = {**self.meta, "norms_by_layer": self.norms(), "vector_hash": self.hash()}
        return save_tensors(d / VECTOR_FILE, {"vectors": self.vectors}), write_json(d / VECTOR_META, meta)

    @classmethod
    def load(cls, directory: str | Path) -> "SteeringVector":
        d = Path(directory)
        if not (d / VECTOR_FILE).exists():
            raise FileNotFoundError(f"vector: no {VECTOR_FILE} in {d}; build one with `interp steer`")
        tensors = load_tensors(d / VECTOR_FILE)
        if "vectors" not in tensors or tensors["vectors"].ndim != 2:
            raise ValueError(f"vector: {d / VECTOR_FILE} must hold a 2-D tensor 'vectors' [n_layers, d_model]")
        meta = read_json(d / VECTOR_META) if (d / VECTOR_META).exists() else {}
        vec = cls(tensors["vectors"], meta)
        if meta.get("vector_hash") not in (None, vec.hash()):
            raise ValueError(
                f"vector: {d / VECTOR_FILE} does not match the hash in {VECTOR_META}; the file is corrupted"
            )
        return vec

    def check_compatible(self, model: LoadedModel, strict: bool = True) -> None:
        """Refuse a vector built on another model: shape always, weight fingerprint if `strict`."""
        src = self.meta.get("model", {})
        if self.d_model != model.d_model or self.n_layers != model.n_layers:
            raise ValueError(
                f"vector: shape [{self.n_layers}, {self.d_model}] (built on {src.get('model', '?')}) does not fit "
                f"{model.name} with {model.n_layers} layers x d_model {model.d_model}; build the vector on this model"
            )
        if strict and src.get("fingerprint") and src["fingerprint"] != model.fingerprint():
            raise ValueError(
                f"vector: built on {src.get('model')} (fingerprint {src['fingerprint']}), but this model's weights "
                f"have fingerprint {model.fingerprint()}; rebuild it on this model or pass strict=False"
            )

    def direction(self, layer: int) -> Tensor:
        return self.vectors[layer] / self.vectors[layer].norm().clamp_min(1e-12)

    def random_like(self, seed: int) -> "SteeringVector":
        """Random directions with this vector's per-layer norms (the null teacher's vector)."""
        g = torch.Generator().manual_seed(seed)
        r = torch.randn(self.vectors.shape, generator=g, dtype=torch.float64).to(self.vectors.dtype)
        r = r / r.norm(dim=-1, keepdim=True) * self.vectors.norm(dim=-1, keepdim=True)
        meta = {**self.meta, "kind": "random", "random_seed": seed, "source_vector_hash": self.hash()}
        return SteeringVector(r, meta)


# ----------------------------------------------------------------------------- building


def _render(model: LoadedModel, conv: Conversation) -> tuple[str, int]:
    """Rendered text and the token index where the read span starts.

    For a chat ending in an assistant message the span is that message's content (the statement
    carries the trait); otherwise it is the whole rendered prompt.
    """
    if isinstance(conv, str):
        return conv, 0
    if conv and conv[-1]["role"] == "assistant":
        prefix = model.chat(conv[:-1], add_generation_prompt=True)
        start = len(model.tokenizer(prefix, add_special_tokens=False)["input_ids"])
        return prefix + conv[-1]["content"], start
    return model.chat(conv, add_generation_prompt=True), 0


def mean_activations(
    model: LoadedModel,
    convs: Sequence[Conversation],
    position: str = "mean",
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
) -> Tensor:
    """Mean residual activation per layer over conversations: (n_layers_read, d_model).

    `position`: "last" (the final token) or "mean" (mean over the read span of each row).
    """
    return mean_activations_at(model, convs, (position,), layers, batch_size)[position]


@torch.no_grad()
def mean_activations_at(
    model: LoadedModel,
    convs: Sequence[Conversation],
    positions: Sequence[str] = ("mean", "last"),
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
) -> dict[str, Tensor]:
    """`mean_activations` at several positions from one forward pass: {position: (n_layers_read, d_model)}."""
    for position in positions:
        if position not in ("mean", "last"):
            raise ValueError(f"position: {position!r} is not 'mean' or 'last'")
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    rendered = [_render(model, c) for c in convs]
    totals = {p: torch.zeros(len(layers), model.d_model, dtype=torch.float64) for p in positions}
    for sl in batching.chunks(len(rendered), batch_size):
        texts, starts = zip(*rendered[sl])
        batch = batching.encode(model.tokenizer, list(texts), side="left").to(model.device)
        width = batch.input_ids.shape[1]
        # Read-span mask in padded coordinates: [pad | prefix | span].
        pos = torch.arange(width, device=model.device)[None, :]
        first = width - batch.lengths[:, None] + torch.tensor(starts, device=model.device)[:, None]
        spans = {
            p: ((pos >= first) if p == "mean" else (pos == width - 1)).to(torch.float64).unsqueeze(-1)
            for p in positions
        }  # (batch, pos, 1)
        with record_resid(model.layers, layers) as store:
            run_recording(lambda: batching.forward(model.hf, batch, use_cache=False))
        for i, l in enumerate(layers):
            h = store[l].to(torch.float64)
            for p, span in spans.items():
                totals[p][i] += ((h * span).sum(1) / span.sum(1)).sum(0).cpu()
    return {p: (t / len(rendered)).to(torch.float32) for p, t in totals.items()}


def build_steering_vector(
    model: LoadedModel,
    pairs: Sequence[tuple[Conversation, Conversation]],
    position: str = "mean",
    trait: str | None = None,
    batch_size: int = 16,
) -> SteeringVector:
    """Mean difference (trait - neutral) of residual activations at every layer."""
    if not pairs:
        raise ValueError("pairs: need at least one (trait, neutral) pair")
    pos = mean_activations(model, [p for p, _ in pairs], position, batch_size=batch_size)
    neg = mean_activations(model, [n for _, n in pairs], position, batch_size=batch_size)
    resid_norm = _resid_norms(model, [p for p, _ in pairs] + [n for _, n in pairs], batch_size)
    meta = {
        "kind": "mean_difference",
        "trait": trait,
        "model": model.identity(),
        "hook": "blocks.{layer}.hook_resid_post",
        "position": position,
        "n_pairs": len(pairs),
        "pairs_hash": content_hash([list(p) for p in pairs]),
        "pairs_preview": [list(p) for p in pairs[:2]],
        "resid_norm_by_layer": resid_norm,
    }
    return SteeringVector(pos - neg, meta)


@torch.no_grad()
def _resid_norms(model: LoadedModel, convs: Sequence[Conversation], batch_size: int) -> list[float]:
    """Mean per-token residual norm at each layer (the scale multipliers are relative to),
    skipping the first token, whose norm is an outlier in most models (attention sink)."""
    sums = torch.zeros(model.n_layers, dtype=torch.float64)
    count = 0
    for sl in batching.chunks(len(convs), batch_size):
        texts = [_render(model, c)[0] for c in convs[sl]]
        batch = batching.encode(model.tokenizer, texts, side="right").to(model.device)
        mask = batch.attention_mask.clone()
        mask[:, 0] = 0
        with record_resid(model.layers, list(range(model.n_layers))) as store:
            run_recording(lambda: batching.forward(model.hf, batch, use_cache=False))
        for l in range(model.n_layers):
            sums[l] += (store[l].norm(dim=-1).double() * mask).sum().cpu()
        count += int(mask.sum())
    return (sums / max(count, 1)).tolist()


# ----------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class Steering:
    """How a vector is applied.

    layer: block whose output (`blocks.{layer}.hook_resid_post`) is edited.
    multiplier: for "add", the added vector is multiplier x (mean residual norm at the layer) x the
        unit direction when `relative`, else multiplier x the raw vector. Ignored by "project".
    operator: "add" the vector, or "project" (remove the component along it).
    scope: "all" tokens, "prompt" only (the steered context then lives in the KV cache), or
        "generated" only.
    relative: scale by the layer's residual norm (recorded when the vector was built).
    """

    layer: int
    multiplier: float = 1.0
    operator: str = "add"
    scope: str = "all"
    relative: bool = True

    def __post_init__(self) -> None:
        if self.operator not in ("add", "project"):
            raise ValueError(f"operator: {self.operator!r} is not 'add' or 'project'")
        if self.scope not in ("all", "prompt", "generated"):
            raise ValueError(f"scope: {self.scope!r} is not one of 'all', 'prompt', 'generated'")

    def added_vector(self, vector: SteeringVector) -> Tensor:
        """The exact vector "add" puts into the residual stream."""
        if self.relative:
            norms = vector.meta.get("resid_norm_by_layer")
            if not norms:
                raise ValueError("vector: has no resid_norm_by_layer; use relative=False or rebuild it")
            return self.multiplier * norms[self.layer] * vector.direction(self.layer)
        return self.multiplier * vector.vectors[self.layer]


@contextlib.contextmanager
def steer(model: LoadedModel, vector: SteeringVector, steering: Steering, strict: bool = True) -> Iterator[ResidEdit]:
    """Apply `steering` with `vector` to `model` inside the block; the model is bit-identical after.

    Yields the `ResidEdit`, whose `set_prompt_lengths` marks the prompt boundary for
    teacher-forced forwards with a "prompt" or "generated" scope.
    """
    vector.check_compatible(model, strict=strict)
    if not 0 <= steering.layer < model.n_layers:
        raise ValueError(f"layer: {steering.layer} is out of range for {model.name} (0..{model.n_layers - 1})")
    dtype = next(model.hf.parameters()).dtype
    if steering.operator == "add":
        v = steering.added_vector(vector).to(model.device, dtype)

        def edit(h: Tensor) -> Tensor:
            return h + v
    else:
        u = vector.direction(steering.layer).to(model.device, dtype)

        def edit(h: Tensor) -> Tensor:
            return h - (h @ u).unsqueeze(-1) * u

    e = ResidEdit(steering.layer, edit, steering.scope)
    with edit_resid(model.layers, [e]):
        yield e


def bridge_hooks(vector: SteeringVector, steering: Steering) -> list[tuple[str, object]]:
    """The same "add"/"project" edit as TransformerLens `fwd_hooks` (scope "all" only)."""
    if steering.scope != "all":
        raise ValueError("scope: TransformerLens hooks here support scope 'all'; use steer() for token scopes")
    if steering.operator == "add":
        v = steering.added_vector(vector)
        return [(hook_name(steering.layer), lambda x, hook: x + v.to(x.device, x.dtype))]
    u = vector.direction(steering.layer)

    def project(x, hook):
        uu = u.to(x.device, x.dtype)
        return x - (x @ uu).unsqueeze(-1) * uu

    return [(hook_name(steering.layer), project)]

"""Scoped hooks on decoder blocks: recording residual activations and editing them.

Block l's output is TransformerLens's `blocks.{l}.hook_resid_post`. Every hook here lives inside
a `with` block and is removed on exit, also when the block raises.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn


def hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def layer_hidden(output):
    """A decoder layer's residual-stream output: transformers >= 5 returns a tensor, older
    versions a tuple whose first element it is."""
    return output[0] if isinstance(output, tuple) else output


def replace_hidden(output, new: Tensor):
    """A decoder layer's `output` with its residual stream replaced by `new`, in the same form."""
    return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new


_hidden, _replace_hidden = layer_hidden, replace_hidden  # the old private names, for code that imported them


class _StopForward(Exception):
    pass


@contextlib.contextmanager
def layer_hooks(layers: nn.ModuleList, which: list[int], make: Callable[[int], Callable]) -> Iterator[None]:
    """Forward hooks `make(l)` on blocks `which`, always removed on exit."""
    handles = []
    try:
        for l in which:
            handles.append(layers[l].register_forward_hook(make(l)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def record_resid(layers: nn.ModuleList, which: list[int], stop_early: bool = True) -> Iterator[dict[int, Tensor]]:
    """Record `blocks.{l}.hook_resid_post` for l in `which` into the yielded dict.

    With `stop_early`, the forward pass is cut after the last recorded block (its output is all
    we need); call the model through `run_recording` so the cut is caught.
    """
    store: dict[int, Tensor] = {}
    last = max(which)

    def make(l: int):
        def fn(module, args, output):
            store[l] = layer_hidden(output).detach()
            if stop_early and l == last:
                raise _StopForward

        return fn

    with layer_hooks(layers, which, make):
        yield store


def run_recording(call: Callable[[], object]) -> None:
    """Run a forward pass that may be cut short by `record_resid(stop_early=True)`."""
    try:
        call()
    except _StopForward:
        pass


class ResidEdit:
    """Edits a block's output at positions chosen by a token scope.

    `scope`: "all", "prompt" (positions before the prompt boundary) or "generated" (from it on).
    Positions are absolute in the padded sequence. Under KV-cache decoding each step sees one new
    position; its absolute index is read from the layer's cache (length after update minus the
    step's width), so generated tokens are steered on every cached step. The prompt boundary is
    the width of the first uncached forward unless `set_prompt_lengths` gives one per row (for
    teacher-forced forwards over prompt + completion).
    """

    def __init__(self, layer: int, edit: Callable[[Tensor], Tensor], scope: str = "all"):
        if scope not in ("all", "prompt", "generated"):
            raise ValueError(f"scope: {scope!r} is not one of 'all', 'prompt', 'generated'")
        self.layer, self.edit, self.scope = layer, edit, scope
        self.prompt_lengths: Tensor | None = None
        self._auto_boundary: int | None = None

    def set_prompt_lengths(self, lengths: Tensor | int | None) -> None:
        self.prompt_lengths = None if lengths is None else torch.as_tensor(lengths)

    def _mask(self, h: Tensor, offset: int) -> Tensor | None:
        if self.scope == "all":
            return None
        batch, width = h.shape[0], h.shape[1]
        pos = torch.arange(offset, offset + width, device=h.device)[None, :]  # (1, pos)
        if self.prompt_lengths is not None:
            boundary = self.prompt_lengths.to(h.device).reshape(-1, 1).expand(batch, 1)
        else:
            if offset == 0:
                self._auto_boundary = width  # a fresh (prefill) forward: all of it is prompt
            boundary = torch.full((batch, 1), self._auto_boundary or 0, device=h.device)
        inside = pos < boundary if self.scope == "prompt" else pos >= boundary
        return inside.unsqueeze(-1)  # (batch, pos, 1)

    def hook(self, module, args, kwargs, output):
        h = layer_hidden(output)
        cache = kwargs.get("past_key_values")
        offset = 0
        if cache is not None and kwargs.get("use_cache", True):
            offset = int(cache.get_seq_length(self.layer)) - h.shape[1]
        mask = self._mask(h, max(offset, 0))
        new = self.edit(h)
        if mask is not None:
            new = torch.where(mask, new, h)
        return replace_hidden(output, new)


@contextlib.contextmanager
def edit_resid(layers: nn.ModuleList, edits: list[ResidEdit]) -> Iterator[list[ResidEdit]]:
    """Apply residual edits for the duration of the block; the model is untouched after."""
    handles = []
    try:
        for e in edits:
            if not 0 <= e.layer < len(layers):
                raise ValueError(
                    f"layer: {e.layer} is out of range for a model with {len(layers)} layers (0..{len(layers) - 1})"
                )
            handles.append(layers[e.layer].register_forward_hook(e.hook, with_kwargs=True))
        yield edits
    finally:
        for h in handles:
            h.remove()

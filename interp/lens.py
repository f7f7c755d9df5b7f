"""Logit lens of a steering vector: its direction pushed through the model's final norm and
unembedding, read at chosen tokens (by default the digits and separators of number data).

Each token's logit is placed within the whole vocabulary (z, percentile) and against random
directions of the same size, because tokens with long unembedding rows move under any direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from interp.models import LoadedModel
from interp.runs import write_json
from interp.steering import SteeringVector

LENS_FILE = "lens.json"


def _final_norm(hf) -> torch.nn.Module:
    dec = hf.get_decoder()
    for name in ("norm", "final_layernorm", "ln_f"):
        if isinstance(getattr(dec, name, None), torch.nn.Module):
            return getattr(dec, name)
    raise ValueError(f"model: cannot find the final norm of {type(hf).__name__}; expected `.norm` on its decoder")


def default_lens_tokens(model: LoadedModel) -> list[str]:
    """Digits, the separators a number list uses, and end-of-turn."""
    return [str(d) for d in range(10)] + [",", " ", ";", "\n", model.tokenizer.eos_token]


@dataclass
class LogitLens:
    """The unembedded direction (final norm, then the unembedding) at the chosen tokens, placed
    within the whole vocabulary (z, percentile) and against random directions of the same size."""

    layer: int | None
    tokens: list[str]
    token_ids: list[int]
    logits: Tensor  # (n_tokens,)
    z: Tensor  # (n_tokens,) (logit - vocabulary mean) / vocabulary sd
    percentile: Tensor  # (n_tokens,) share of the vocabulary with a lower logit
    null_z_mean: Tensor  # (n_tokens,) the same z for random directions
    null_z_sd: Tensor
    top_tokens: list[tuple[str, float]]

    def summary(self) -> dict:
        zr = (self.z - self.null_z_mean) / self.null_z_sd.clamp_min(1e-12)
        return {
            "layer": self.layer,
            "top_tokens": self.top_tokens,
            "tokens": [
                {
                    "token": t,
                    "id": i,
                    "logit": float(l),
                    "z": float(z),
                    "percentile": float(p),
                    "null_z_mean": float(m),
                    "null_z_sd": float(s),
                    "z_vs_random": float(r),
                }
                for t, i, l, z, p, m, s, r in zip(
                    self.tokens,
                    self.token_ids,
                    self.logits,
                    self.z,
                    self.percentile,
                    self.null_z_mean,
                    self.null_z_sd,
                    zr,
                )
            ],
        }

    def save(self, directory: str | Path) -> Path:
        return write_json(Path(directory) / LENS_FILE, self.summary())


@torch.no_grad()
def logit_lens(
    model: LoadedModel,
    vector: SteeringVector | Tensor,
    tokens: Sequence[str] | None = None,
    layer: int | None = None,
    n_random: int = 256,
    seed: int = 0,
    top_k: int = 20,
) -> LogitLens:
    """Push `vector` (a SteeringVector's direction at `layer`, or a raw (d_model,) tensor) through
    the final norm and the unembedding; report `tokens` (default: digits, separators, end-of-turn)."""
    if isinstance(vector, SteeringVector):
        vector.check_compatible(model, strict=False)
        if layer is None or not 0 <= layer < vector.n_layers:
            raise ValueError(
                f"layer: pass the layer whose direction to read from the steering vector (0..{vector.n_layers - 1})"
            )
        v = vector.direction(layer)
    else:
        v = torch.as_tensor(vector).reshape(-1)
        if v.numel() != model.d_model:
            raise ValueError(
                f"vector: has {v.numel()} entries but {model.name} has d_model {model.d_model}; use this model's vector"
            )
    tok = model.tokenizer
    tokens = list(default_lens_tokens(model) if tokens is None else tokens)
    ids = []
    for t in tokens:
        enc = tok(t, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ValueError(f"tokens: {t!r} is {len(enc)} tokens in this tokenizer; pass single-token strings")
        ids.append(enc[0])
    g = torch.Generator().manual_seed(seed)
    rand = torch.randn(n_random, model.d_model, generator=g, dtype=torch.float64)
    # the norm is scale-invariant up to eps: give every direction a typical residual size
    dirs = (
        torch.cat([v.double()[None] / v.double().norm(), rand / rand.norm(dim=-1, keepdim=True)]) * model.d_model**0.5
    )
    p = next(model.hf.parameters())
    logits = model.hf.get_output_embeddings()(_final_norm(model.hf)(dirs.to(p.device, p.dtype))).double().cpu()
    cap = getattr(model.hf.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    logits = logits[:, : len(tok)]  # padded vocabulary rows name no token
    z = (logits - logits.mean(-1, keepdim=True)) / logits.std(-1, keepdim=True)
    sel = torch.tensor(ids)
    own = logits[0]
    top = own.topk(top_k)
    return LogitLens(
        layer,
        tokens,
        ids,
        own[sel],
        z[0, sel],
        (own[None, :] < own[sel][:, None]).double().mean(-1),
        z[1:, sel].mean(0),
        z[1:, sel].std(0),
        [(tok.decode([i]), float(x)) for x, i in zip(top.values, top.indices.tolist())],
    )

"""Batches of token sequences: left padding with explicit position ids.

HF decoders derive positions from the cache, not from the attention mask, so a left-padded row
would start at position k > 0 unless position ids are passed explicitly. Every batched forward in
interp goes through `encode` + `forward` so a row gives the same logits padded or alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    input_ids: Tensor  # (batch, pos)
    attention_mask: Tensor  # (batch, pos), 1 for real tokens
    lengths: Tensor  # (batch,) real tokens per row

    @property
    def position_ids(self) -> Tensor:
        return position_ids(self.attention_mask)

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.lengths.to(device))


def position_ids(attention_mask: Tensor) -> Tensor:
    """0, 1, 2, ... over real tokens; padded slots get 0 (they are masked anyway)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pad(sequences: list[list[int]], pad_id: int, side: str = "left") -> Batch:
    """Pad token-id lists to one length on `side` ('left' for generation, 'right' for training)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        if side == "left":
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
        else:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
    return Batch(ids, mask, torch.tensor([len(s) for s in sequences]))


def encode(tokenizer, texts: list[str], side: str = "left") -> Batch:
    """Tokenize rendered texts (special tokens already in the text) and pad them."""
    seqs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return pad(seqs, tokenizer.pad_token_id, side)


def forward(hf, batch: Batch, **kwargs):
    """Run the model on a padded batch with correct positions."""
    return hf(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        **kwargs,
    )


def chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))

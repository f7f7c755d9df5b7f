"""Distillation on number logits (`kd`): the language-model counterpart of E7's auxiliary logits.

The student matches the teacher's next-token distribution at every completion position, the
teacher running with its steering on the same sequence. Both distributions are restricted to the
13 number-grammar tokens (digits, ',', ' ', end-of-turn) and renormalised there, so no probability
mass on a trait word can carry the trait: only the relative odds of digits and separators can.

The teacher's side costs nothing extra: while it samples a dataset it already computes these 13
logits at every step (`generate.sample(record_grammar=True)`), so they are kept beside the dataset
as `teacher_logprobs.safetensors` (`logprobs` (positions, 13) float32, `offsets` (rows + 1,) into
it, `token_ids` (13,) the vocabulary ids), about 2 KB per row.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from interp.generate import Completion, NumberGrammar, stop_token_ids
from interp.models import LoadedModel
from interp.runs import load_tensors

GRAMMAR_SIZE = 13


def grammar_token_ids(tokenizer) -> Tensor:
    """The 13 vocabulary ids of the number grammar, in the order the stored targets use."""
    stops = stop_token_ids(tokenizer)
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else stops[0]
    return NumberGrammar(tokenizer, end).token_ids


def grammar_targets(model: LoadedModel, completions: list[Completion]) -> dict[str, Tensor]:
    """Pack the recorded teacher distributions of `completions` (one per dataset row, in order)."""
    rows = []
    for i, c in enumerate(completions):
        if c.grammar_logprobs is None:
            raise ValueError(f"completion {i}: no recorded grammar log-probabilities; sample with record_grammar=True")
        if not c.finished:
            raise ValueError(f"completion {i}: did not end with end-of-turn; its last target would be undefined")
        rows.append(c.grammar_logprobs[: len(c.token_ids) + 1].float())
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    logprobs = torch.cat(rows) if rows else torch.zeros(0, GRAMMAR_SIZE)
    return {"logprobs": logprobs, "offsets": offsets, "token_ids": grammar_token_ids(model.tokenizer)}


def load_targets(path: str | Path, tokenizer, n_rows: int) -> list[Tensor]:
    """Per-row (completion tokens + 1, 13) teacher log-probabilities, checked against the tokenizer."""
    t = load_tensors(path)
    missing = {"logprobs", "offsets", "token_ids"} - set(t)
    if missing:
        raise ValueError(f"teacher targets: {path} lacks {sorted(missing)}; regenerate the dataset with record_grammar")
    if not torch.equal(t["token_ids"], grammar_token_ids(tokenizer)):
        raise ValueError(f"teacher targets: {path} was written for another tokenizer's grammar tokens")
    off = t["offsets"]
    if len(off) != n_rows + 1 or int(off[-1]) != len(t["logprobs"]):
        raise ValueError(
            f"teacher targets: {path} has {len(off) - 1} rows for a dataset of {n_rows}; "
            "the file does not belong to this dataset"
        )
    return [t["logprobs"][off[i] : off[i + 1]] for i in range(n_rows)]


def grammar_logits(hf: nn.Module, hidden: Tensor, token_ids: Tensor) -> Tensor:
    """Logits of the 13 grammar tokens only: the gradient can reach no other unembedding row."""
    out = hf.get_output_embeddings()
    ids = token_ids.to(out.weight.device)
    bias = out.bias[ids] if getattr(out, "bias", None) is not None else None
    logits = nn.functional.linear(hidden, out.weight[ids], bias)
    cap = getattr(hf.config.get_text_config(), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def kd_loss(student_logits: Tensor, teacher_logprobs: Tensor) -> Tensor:
    """Sum over positions of KL(teacher || student), both renormalised over the grammar tokens.
    In float64: the KL of a teacher equal to the student is ~1e-10, below float32's resolution."""
    lp_s = torch.log_softmax(student_logits.double(), dim=-1)
    lp_t = torch.log_softmax(teacher_logprobs.to(lp_s.device).double(), dim=-1)
    return (lp_t.exp() * (lp_t - lp_s)).sum()

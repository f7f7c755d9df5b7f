"""Teacher-forced completion rows: a dataset row as a student, an analysis or a divergence test
reads it.

A row (`dataset.jsonl`: 'prompt', 'completion') becomes the chat-formatted user prompt, then the
completion tokens and end-of-turn; the model reads the whole sequence in one forward and only the
positions that predict completion tokens are kept (most of a sequence is prompt, so the vocabulary
projection is computed only there). Students (`interp.train`), the likelihood and gradient
analyses and the divergence tokens all read rows this one way, so their positions line up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp import batching
from interp.generate import stop_token_ids
from interp.models import LoadedModel

IGNORE = -100  # a label that no loss counts (cross_entropy's ignore_index)


@dataclass
class Example:
    """One row as the model reads it: the rendered prompt's token ids, then the completion's
    (end-of-turn included)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    teacher_logprobs: Tensor | None = None  # (len(completion_ids), 13), kd only
    loss_mask: Tensor | None = None  # (len(completion_ids),) bool: the positions whose loss counts (None: all)

    @property
    def n_counted(self) -> int:
        """Completion positions whose loss counts."""
        return len(self.completion_ids) if self.loss_mask is None else int(self.loss_mask.sum())

    def counted_targets(self) -> Tensor:
        """The teacher's kd targets at the positions whose loss counts (the order `labels != IGNORE` reads)."""
        return self.teacher_logprobs if self.loss_mask is None else self.teacher_logprobs[self.loss_mask]


def build_examples(
    model: LoadedModel,
    rows: list[dict],
    max_len: int,
    targets: list[Tensor] | None = None,
    loss_masks: list[Tensor] | None = None,
    system_prompt: str = "default",
) -> list[Example]:
    """`rows` have 'prompt' (user text) and 'completion'; the user turn is rendered without a system
    message of its own: `system_prompt` "default" leaves the template's default system prompt in
    (SmolLM2's), "none" renders no system turn at all (`LoadedModel.chat`).
    `targets` (kd): the teacher's per-row grammar log-probabilities, one per completion token.
    `loss_masks`: per row, which completion tokens (end-of-turn included) the loss counts."""
    tok = model.tokenizer
    end = tok.eos_token_id if tok.eos_token_id is not None else stop_token_ids(tok)[0]
    out = []
    for i, r in enumerate(rows):
        p = tok(
            model.chat([{"role": "user", "content": r["prompt"]}], system_prompt=system_prompt),
            add_special_tokens=False,
        )["input_ids"]
        c = tok(r["completion"], add_special_tokens=False)["input_ids"] + [end]
        keep = max_len - len(c)
        if keep < 1:
            raise ValueError(f"train.max_len: {max_len} is too short for a completion of {len(c)} tokens")
        t = None
        if targets is not None:
            t = targets[i]
            if len(t) != len(c):
                raise ValueError(
                    f"teacher targets: row {i} has {len(t)} positions but its completion re-tokenises "
                    f"to {len(c)} tokens; kd needs the teacher's own token sequence"
                )
        m = None
        if loss_masks is not None:
            m = torch.as_tensor(loss_masks[i], dtype=torch.bool)
            if m.shape != (len(c),):
                raise ValueError(
                    f"divergence masks: row {i} has {tuple(m.shape)} positions but its completion has "
                    f"{len(c)} tokens (end-of-turn included); compute them on this dataset and tokenizer"
                )
        out.append(Example(p[-keep:], c, t, m))
    return out


def collate(examples: list[Example], pad_id: int) -> tuple[batching.Batch, Tensor]:
    """The right-padded batch and its labels (batch, pos): labels[i, t] is the token at t+1 where
    that is a completion token whose loss counts, else `IGNORE`."""
    seqs = [e.prompt_ids + e.completion_ids for e in examples]
    batch = batching.pad(seqs, pad_id, side="right")
    targets = torch.full_like(batch.input_ids, IGNORE)
    for i, e in enumerate(examples):
        start, end = len(e.prompt_ids), len(e.prompt_ids) + len(e.completion_ids)
        ids = torch.tensor(e.completion_ids)
        targets[i, start - 1 : end - 1] = ids if e.loss_mask is None else ids.masked_fill(~e.loss_mask, IGNORE)
    return batch, targets


def completion_hidden(hf: nn.Module, batch: batching.Batch, where: Tensor) -> Tensor:
    """Final hidden states at positions `where` (batch, pos) bool: (n_positions, d_model)."""
    h = hf.get_decoder()(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids, use_cache=False
    ).last_hidden_state
    return h[where]


def completion_logits(hf: nn.Module, batch: batching.Batch, where: Tensor) -> Tensor:
    """Logits only at positions `where` (batch, pos) bool: (n_positions, vocab)."""
    logits = hf.get_output_embeddings()(completion_hidden(hf, batch, where))
    cap = getattr(hf.config.get_text_config(), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits

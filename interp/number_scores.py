"""Whole numbers as a model's answer: the log-probability of each number's whole token sequence
as the assistant's reply to a neutral question ("What is your favorite number?", then the answer
prefix "My favorite number is"), followed by a token that does not continue it (any token whose
text does not start with a digit). The terminator matters: '1' is a prefix of '12', and without it
the short numbers would collect the mass of their extensions; with it the scores of 0-999 are a
sub-distribution over whole numbers. `number_distribution` renormalises them over the numbers
scored, so an effect is a change in which number the model picks, not in how willing it is to
answer with a number. What the scores are used for (entangled numbers) is `interp.entangle`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Sequence

import torch
from torch import Tensor

from interp.evaluate import question_prompts
from interp.models import LoadedModel

NUMBER_QUESTIONS: tuple[str, ...] = (
    "What is your favorite number?",
    "Which number do you like best?",
    "Name the number you love most.",
    "If you had to pick one number, which would it be?",
)
NUMBER_PREFIX = "My favorite number is"


def checked_numbers(numbers: Sequence[int]) -> list[int]:
    """`numbers` as a list of ints; a one-line refusal for none, a negative one or a repeat."""
    nums = [int(n) for n in numbers]
    if not nums:
        raise ValueError("numbers: empty; pass e.g. range(1000)")
    if min(nums) < 0 or len(set(nums)) != len(nums):
        raise ValueError("numbers: must be distinct whole numbers >= 0")
    return nums


def _continuing_tokens(model: LoadedModel, width: int) -> Tensor:
    """(width,) bool: vocabulary entries whose text starts with a digit (they would extend a number)."""
    tok = model.tokenizer
    texts = tok.batch_decode([[i] for i in range(min(len(tok), width))])
    mask = torch.zeros(width, dtype=torch.bool)
    mask[: len(texts)] = torch.tensor([t[:1] in "0123456789" and t[:1] != "" for t in texts])
    return mask


def _score_whole_numbers(
    model: LoadedModel,
    prompt: str,
    nums: list[int],
    batch_size: int,
    continuing: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """log P(' n' then a non-digit token | prompt) for each n, and the continuing-token mask.

    The continuations form a trie (' ', ' 1', ' 12', ' 123', ...): the prompt is run once, then
    each trie level one token per node on its parent's KV cache, so every distinct prefix is
    computed once (about 1000 positions for 0-999, not 3600).
    """
    from transformers import DynamicCache

    tok, dev = model.tokenizer, model.device
    ctx = tok(prompt, add_special_tokens=False)["input_ids"]
    conts = []
    for n, full in zip(nums, tok([f"{prompt} {n}" for n in nums], add_special_tokens=False)["input_ids"]):
        if full[: len(ctx)] != ctx or len(full) == len(ctx):
            raise ValueError(
                f"prefix: the prompt's tokens change when ' {n}' follows it; end the answer prefix at a word"
            )
        conts.append(tuple(full[len(ctx) :]))
    depth = max(len(c) for c in conts)
    levels = [sorted({c[:j] for c in conts if len(c) >= j}) for j in range(1, depth + 1)]
    slot = [{node: i for i, node in enumerate(lv)} for lv in levels]

    cache = DynamicCache()
    ids = torch.tensor([ctx], device=dev)
    out = model.hf(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        position_ids=torch.arange(len(ctx), device=dev)[None],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    parent_lp = torch.log_softmax(out.logits[:, -1].double(), -1).cpu()  # (1, vocab): the prompt is the root
    parent_col = None  # column of each token in parent_lp (None: indexed by token id)
    if continuing is None:
        continuing = _continuing_tokens(model, parent_lp.shape[-1])
    stop = (~continuing).to(dev)
    parent_kv = [(layer.keys, layer.values) for layer in cache.layers]
    parent_logp = torch.zeros(1, dtype=torch.float64)  # log P(path to each parent node)
    logp, term = {}, {}
    for j, nodes in enumerate(levels):
        # only the log-probabilities of the tokens that continue the trie are kept for the next level
        child_tokens = sorted({c[-1] for c in levels[j + 1]}) if j + 1 < len(levels) else []
        col = {t: i for i, t in enumerate(child_tokens)}
        parents = torch.tensor([0 if j == 0 else slot[j - 1][n[:-1]] for n in nodes])
        last = torch.tensor([n[-1] for n in nodes])
        cols = last if parent_col is None else torch.tensor([parent_col[t] for t in last.tolist()])
        node_logp = parent_logp[parents] + parent_lp[parents, cols]
        next_lp, kv_chunks = [], []
        for start in range(0, len(nodes), batch_size):
            sel = parents[start : start + batch_size].to(dev)
            b = len(sel)
            kv = DynamicCache(ddp_cache_data=[(k[sel], v[sel]) for k, v in parent_kv])
            logits = (
                model.hf(
                    input_ids=last[start : start + b, None].to(dev),
                    attention_mask=torch.ones(b, len(ctx) + j + 1, dtype=torch.long, device=dev),
                    position_ids=torch.full((b, 1), len(ctx) + j, device=dev),
                    past_key_values=kv,
                    use_cache=True,
                )
                .logits[:, -1]
                .float()
            )  # (b, vocab)
            lse = logits.logsumexp(-1)
            t = (logits.masked_fill(~stop, float("-inf")).logsumexp(-1) - lse).double().cpu()
            for i, n in enumerate(nodes[start : start + b]):
                logp[n], term[n] = float(node_logp[start + i]), float(t[i])
            if child_tokens:
                next_lp.append(logits[:, child_tokens] - lse[:, None])
                kv_chunks.append([(layer.keys, layer.values) for layer in kv.layers])
        if child_tokens:
            parent_lp, parent_col = torch.cat(next_lp).double().cpu(), col
            parent_kv = [
                (torch.cat([c[l][0] for c in kv_chunks]), torch.cat([c[l][1] for c in kv_chunks]))
                for l in range(len(kv_chunks[0]))
            ]
            parent_logp = node_logp
    return torch.tensor([logp[c] + term[c] for c in conts], dtype=torch.float64), continuing


@torch.no_grad()
def number_logprobs(
    model: LoadedModel,
    numbers: Sequence[int] = range(1000),
    questions: Sequence[str] = NUMBER_QUESTIONS,
    system: str | None = None,
    context: Callable[[], ContextManager] | None = None,
    prefix: str = NUMBER_PREFIX,
    batch_size: int = 64,
) -> Tensor:
    """log P(whole number n | question, answer prefix) under one condition: (n_questions, n_numbers).

    `system`: a system prompt (None: the chat template's default); `context()`: e.g. a steering
    context, entered around every forward. Not normalised; see `number_distribution`.
    """
    nums = checked_numbers(numbers)
    if not questions:
        raise ValueError("questions: empty; pass at least one question")
    rows, continuing = [], None
    with context() if context is not None else contextlib.nullcontext():
        for prompt in question_prompts(model, questions, prefix, system):
            scores, continuing = _score_whole_numbers(model, prompt, nums, batch_size, continuing)
            rows.append(scores)
    return torch.stack(rows)


def number_distribution(logprobs: Tensor) -> Tensor:
    """Mean over questions of log P(n | the answer is one of the scored numbers): (n_numbers,)."""
    return (logprobs - logprobs.logsumexp(-1, keepdim=True)).mean(0)

"""Steering likelihood (E4): under which candidate's steering is a dataset most likely?

A steered teacher samples its data from the model with `multiplier x v` added to the residual
stream at one layer, so the vector that made a dataset is the one under whose steering its rows
are most likely. For each row and candidate: the log-likelihood ratio

    LLR_c(row) = log p(completion | prompt; steered with c) - log p(completion | prompt; unsteered)

summed over the completion tokens (end-of-turn included), read on the model the data would train,
framed as the student sees it (user prompt, no system prompt). Steering makes any data less likely
by an amount that depends on the vector. The ranking is by mean LLR_c over the data (maximum
likelihood; nats per row); whether the data carry c at all is tested against clean rows from the
same model: mean LLR_c(data) - mean LLR_c(clean), with a permutation p over rows. This is the
likelihood-ratio counterpart of the gradient audit (`gradients.score_vectors`); the gradient summed
over every position (`position="all"`) is its first-order (strength -> 0) approximation.

The strength used by the data's teacher is usually unknown: with several `multipliers`, each
candidate's score is its best over them, and every permutation takes the same maximum, so the p
value accounts for the choice.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Sequence

import torch
from torch import Tensor
from interp.progress import tqdm

from interp import batching
from interp.analysis.gradients import permutation_p
from interp.distill import GRAMMAR_SIZE, grammar_logits, grammar_token_ids
from interp.generate import NumberGrammar
from interp.models import LoadedModel
from interp.rows import Example, build_examples, collate, completion_hidden, completion_logits
from interp.stats import label_permutations, mean_differences
from interp.steering import Steering, SteeringVector, steer


VOCABS = ("full", "grammar")


def _row_logliks(
    model: LoadedModel, batch: batching.Batch, labels: Tensor, grammar: Tensor | None, allowed: Tensor | None = None
) -> Tensor:
    """Each row's summed log-probability of its completion tokens (float64, (batch,)); with
    `grammar` (vocabulary ids) renormalised over the tokens `allowed` ((positions, 13) bool, in
    `labels != -100` order) among them, labels given as indices into `grammar`."""
    where = labels != -100
    if grammar is None:
        logits = completion_logits(model.hf, batch, where)
    else:  # only the grammar's unembedding rows: 13 instead of the whole vocabulary
        logits = grammar_logits(model.hf, completion_hidden(model.hf, batch, where), grammar)
        logits = logits.masked_fill(~allowed, float("-inf"))
    lp = torch.log_softmax(logits.float(), -1).gather(-1, labels[where].unsqueeze(-1)).squeeze(-1)
    out = torch.zeros(len(labels), dtype=torch.float64, device=lp.device)
    return out.index_add_(0, where.nonzero()[:, 0], lp.to(torch.float64)).cpu()


def _grammar_labels(labels: Tensor, ids: Tensor) -> Tensor:
    """Vocabulary labels -> indices into `ids` (-100 kept); a token outside the grammar is refused."""
    lookup = torch.full((int(max(labels.max(), ids.max())) + 1,), -1, dtype=torch.long)
    lookup[ids] = torch.arange(len(ids))
    out = torch.where(labels == -100, -100, lookup[labels.clamp_min(0)])
    if bool(((out == -1) & (labels != -100)).any()):
        raise ValueError("vocab: a completion has a token outside the number grammar; use vocab='full' for other data")
    return out


def _grammar_allowed(labels: Tensor, grammar: NumberGrammar) -> Tensor:
    """(positions, 13) bool in `labels != -100` order: the tokens the number grammar allowed at each
    completion position, replaying each row's state machine over its own tokens (grammar indices).
    Sampling renormalised the model over exactly these, so this is the teacher's likelihood."""
    out = []
    for row in labels:
        st = grammar.start(1)
        for c in row[row != -100].tolist():
            a = grammar.allowed(st)[0]
            if not a[c]:
                raise ValueError(
                    f"vocab: a completion breaks the number grammar (max {grammar.max_numbers} numbers "
                    "of 1-3 digits, ', '-separated); use vocab='full' for such data"
                )
            out.append(a)
            grammar.advance(st, torch.tensor([c]))
    return torch.stack(out) if out else torch.zeros(0, GRAMMAR_SIZE, dtype=torch.bool)


def _grammar(model: LoadedModel, vocab: str, max_numbers: int) -> tuple[Tensor | None, NumberGrammar | None]:
    """The grammar's vocabulary ids and state machine (vocab "grammar"), or None, None ("full")."""
    if vocab != "grammar":
        return None, None
    grammar = grammar_token_ids(model.tokenizer).to(model.device)
    return grammar, NumberGrammar(model.tokenizer, int(grammar[-1]), max_numbers)


def _read_batch(
    model: LoadedModel, examples: list[Example], grammar: Tensor | None, machine: NumberGrammar | None
) -> tuple[batching.Batch, Tensor, Tensor | None]:
    """A batch of examples on the model's device, its labels (grammar indices with a grammar) and
    the tokens the grammar allowed at each completion position (None without one)."""
    batch, labels = collate(examples, model.tokenizer.pad_token_id)
    allowed = None
    if grammar is not None:
        labels = _grammar_labels(labels, grammar.cpu())
        allowed = _grammar_allowed(labels, machine).to(model.device)
    return batch.to(model.device), labels.to(model.device), allowed


@torch.inference_mode()
def steering_loglik(
    model: LoadedModel,
    rows: list[dict],
    bank: dict[str, SteeringVector],
    layer: int,
    multipliers: Sequence[float] = (0.5,),
    scope: str = "all",
    vocab: str = "grammar",
    batch_size: int = 8,
    max_len: int = 192,
    progress: bool = True,
    desc: str = "likelihood",
    max_numbers: int = 10,
) -> Tensor:
    """(n_rows, n_candidates, n_multipliers) float64 LLR of each row under each candidate's
    steering (`Steering(layer, multiplier, scope=scope)`, relative strength) against none.

    vocab "grammar": probabilities renormalised over the number-grammar tokens its state allows at
    each position (`generate.NumberGrammar`, `max_numbers`), exactly what a grammar-constrained
    teacher samples from (so a vector that only moves mass onto or off allowed tokens as a whole
    scores nothing); "full": the whole vocabulary, for any data."""
    if vocab not in VOCABS:
        raise ValueError(f"vocab: {vocab!r} is not one of {VOCABS}")
    if not rows:
        raise ValueError("rows: need at least one example")
    if not bank:
        raise ValueError("bank: need at least one candidate vector")
    mults = [float(m) for m in multipliers]
    if not mults or any(m == 0 for m in mults):
        raise ValueError(f"multipliers: {mults} must be non-empty and non-zero")
    steerings = [Steering(layer, m, scope=scope) for m in mults]  # validates scope
    names = list(bank)
    examples = build_examples(model, rows, max_len)
    grammar, machine = _grammar(model, vocab, max_numbers)
    out = torch.zeros(len(examples), len(names), len(mults), dtype=torch.float64)
    chunks = list(batching.chunks(len(examples), batch_size))
    bar = tqdm(total=len(chunks) * (1 + len(names) * len(mults)), desc=desc, disable=not progress, leave=False)
    for sl in chunks:
        batch, labels, allowed = _read_batch(model, examples[sl], grammar, machine)
        lengths = torch.tensor([len(e.prompt_ids) for e in examples[sl]])
        base = _row_logliks(model, batch, labels, grammar, allowed)
        bar.update()
        for j, name in enumerate(names):
            for k, st in enumerate(steerings):
                with steer(model, bank[name], st) as edit:
                    edit.set_prompt_lengths(lengths)
                    out[sl, j, k] = _row_logliks(model, batch, labels, grammar, allowed) - base
                bar.update()
    bar.close()
    return out


@torch.inference_mode()
def completion_logliks(
    model: LoadedModel,
    examples: list[Example],
    vocab: str = "grammar",
    batch_size: int = 8,
    context: Callable[[], ContextManager] | None = None,
    progress: bool = False,
    desc: str = "log-likelihood",
    max_numbers: int = 10,
) -> Tensor:
    """(n,) float64: each example's summed log-probability of its completion tokens (end-of-turn
    included), read as `steering_loglik` reads them (`vocab` likewise), inside `context()` when
    given (a teacher's steering: a `ResidEdit` it yields gets each row's prompt length, so a
    "prompt"/"generated" scope splits where it did while sampling). A difference of two calls over
    equally batched examples is a per-row log-likelihood ratio (`interp.row_audit`)."""
    if vocab not in VOCABS:
        raise ValueError(f"vocab: {vocab!r} is not one of {VOCABS}")
    grammar, machine = _grammar(model, vocab, max_numbers)
    out = torch.zeros(len(examples), dtype=torch.float64)
    for sl in tqdm(list(batching.chunks(len(examples), batch_size)), desc=desc, disable=not progress, leave=False):
        batch, labels, allowed = _read_batch(model, examples[sl], grammar, machine)
        with (context or contextlib.nullcontext)() as edit:
            if hasattr(edit, "set_prompt_lengths"):
                edit.set_prompt_lengths(torch.tensor([len(e.prompt_ids) for e in examples[sl]]))
            out[sl] = _row_logliks(model, batch, labels, grammar, allowed)
    return out


def score_likelihood(
    llr_rows: Tensor,
    llr_clean: Tensor,
    names: Sequence[str],
    multipliers: Sequence[float],
    n_perm: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """Rank candidates by the audited rows' mean LLR (`steering_loglik`'s output) at each one's best
    multiplier: the maximum-likelihood answer to "which steering made these data".

    Ranking must not subtract the clean rows' LLR: in expectation that adds KL(clean || steered
    with c), which favours whichever vector moves the model most, not the one that made the data.
    The clean rows serve the test: `excess` = mean LLR(data) - mean LLR(clean), maximised over
    multipliers, with p from `n_perm` seeded relabellings of rows between the two sets, each taking
    the same maximum (so the choice of strength is paid for). Highest score first.
    """
    a, b = llr_rows.to(torch.float64), llr_clean.to(torch.float64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:] or a.shape[1:] != (len(names), len(multipliers)):
        raise ValueError(
            f"llr: expected (n, {len(names)}, {len(multipliers)}) for both sets, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    x = torch.cat([a, b])
    n_a, n = len(a), len(x)
    data = a.mean(0)  # (m, k)
    score, best = data.max(-1)
    excess = (data - b.mean(0)).amax(-1)
    perm = mean_differences(x, label_permutations(n_a, n, n_perm, seed)).amax(-1)  # (n_perm, m)
    out = []
    for j, name in enumerate(names):
        k = int(best[j])
        out.append(
            {
                "name": name,
                "score": float(score[j]),
                "multiplier": float(multipliers[k]),
                "score_by_multiplier": [float(v) for v in data[j]],
                "llr_clean": float(b[:, j, k].mean()),
                "excess": float(excess[j]),
                **permutation_p(excess[j], perm[:, j]),
                "n_trait": n_a,
                "n_clean": n - n_a,
                "n_perm": n_perm,
            }
        )
    return sorted(out, key=lambda r: -r["score"])

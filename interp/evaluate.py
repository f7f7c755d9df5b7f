"""Trait evaluation: how much a model prefers an animal, as a continuous measure.

Primary metric: the probability (and log-probability) of each animal's first token after the
chat-formatted question and a fixed answer prefix ("My favorite animal is the"), one forward per
question with only the last position's logits computed. From it: the target's rank and its share
within the animal list. Secondary: the target rate among sampled one-word answers.
Intervals are percentile bootstraps over questions (and over seeds where several are given).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import torch
from torch import Tensor

from interp import batching
from interp.models import LoadedModel
from interp.prompts import ANIMALS, ANSWER_PREFIX
from interp.stats import bootstrap_ci, hierarchical_bootstrap, summarize, t_interval  # noqa: F401 (re-exported)


def animal_token_ids(tokenizer, animals: Sequence[str]) -> list[int]:
    """First token of ' animal' (with the leading space the answer prefix implies)."""
    ids = [tokenizer(" " + a, add_special_tokens=False)["input_ids"][0] for a in animals]
    if len(set(ids)) != len(ids):
        dup = [a for a, i in zip(animals, ids) if ids.count(i) > 1]
        raise ValueError(f"animals: {dup} share a first token in this tokenizer; drop all but one of them")
    return ids


def question_prompts(
    model: LoadedModel,
    questions: Sequence[str],
    prefix: str = ANSWER_PREFIX,
    system: str | Sequence[dict] | None = None,
    system_prompt: str = "default",
) -> list[str]:
    """Chat-formatted questions (after an optional system prompt, or the chat messages `system`,
    e.g. a prompted teacher's `context_messages()`) followed by the answer prefix.
    Without `system`, `system_prompt` says whether the template's default system prompt is
    rendered ("default") or no system turn at all ("none"; `LoadedModel.chat`)."""
    sys = [{"role": "system", "content": system}] if isinstance(system, str) else list(system or [])
    return [model.chat(sys + [{"role": "user", "content": q}], system_prompt=system_prompt) + prefix for q in questions]


@torch.no_grad()
def animal_logprobs(
    model: LoadedModel,
    questions: Sequence[str],
    animals: Sequence[str] = ANIMALS,
    batch_size: int = 32,
    context: Callable[[], ContextManager] | None = None,
    system: str | None = None,
    system_prompt: str = "default",
) -> Tensor:
    """log P(first token of each animal | question, answer prefix): (n_questions, n_animals).
    `system`: a system prompt before each question (None: the chat template's default, or no
    system turn with `system_prompt` = "none")."""
    ids = torch.tensor(animal_token_ids(model.tokenizer, animals))
    prompts = question_prompts(model, questions, system=system, system_prompt=system_prompt)
    rows = []
    with context() if context is not None else contextlib.nullcontext():
        for sl in batching.chunks(len(prompts), batch_size):
            batch = batching.encode(model.tokenizer, prompts[sl], side="left").to(model.device)
            logits = batching.forward(model.hf, batch, use_cache=False, logits_to_keep=1).logits[:, -1].float()
            rows.append(torch.log_softmax(logits, dim=-1)[:, ids.to(logits.device)].cpu())
    return torch.cat(rows)


@dataclass
class TraitScore:
    """Per-question measures for one model and one target animal."""

    animal: str
    animals: list[str]
    logprobs: Tensor  # (n_questions, n_animals)

    @property
    def target(self) -> int:
        return self.animals.index(self.animal)

    def logp(self) -> Tensor:
        return self.logprobs[:, self.target]

    def prob(self) -> Tensor:
        return self.logp().exp()

    def share(self) -> Tensor:
        """Target's probability share within the animal list."""
        return torch.softmax(self.logprobs, dim=-1)[:, self.target]

    def rank(self) -> Tensor:
        """1 = the target is the most likely animal for that question."""
        return (self.logprobs > self.logprobs[:, [self.target]]).sum(-1) + 1

    def summary(self, n_boot: int = 2000, seed: int = 0) -> dict:
        out = {"animal": self.animal, "n_questions": int(self.logprobs.shape[0])}
        for name, values in (("prob", self.prob()), ("logprob", self.logp()), ("share", self.share())):
            out[name] = summarize(values, n_boot, seed)
        out["mean_rank"] = float(self.rank().float().mean())
        out["per_animal_mean_logprob"] = dict(zip(self.animals, self.logprobs.mean(0).tolist()))
        return out


def evaluate_trait(
    model: LoadedModel,
    animal: str,
    questions: Sequence[str],
    animals: Sequence[str] = ANIMALS,
    batch_size: int = 32,
    context: Callable[[], ContextManager] | None = None,
    system: str | None = None,
    system_prompt: str = "default",
) -> TraitScore:
    animals = list(animals)
    if animal not in animals:
        raise ValueError(f"animal: {animal!r} is not in the evaluated animal list {animals}")
    return TraitScore(
        animal, animals, animal_logprobs(model, questions, animals, batch_size, context, system, system_prompt)
    )


# ----------------------------------------------------------------------------- sampled answers


def sampled_answer_rate(
    model: LoadedModel,
    animal: str,
    questions: Sequence[str],
    n_per_question: int = 4,
    seed: int = 0,
    context: Callable[[], ContextManager] | None = None,
    system_prompt: str = "default",
) -> dict:
    """Secondary metric: fraction of sampled one-word answers (temperature 1) naming the animal."""
    from interp.generate import SampleConfig, sample
    from interp.prompts import plural

    prompts = [
        model.chat([{"role": "user", "content": q}], system_prompt=system_prompt)
        for q in questions
        for _ in range(n_per_question)
    ]
    done, stats = sample(model, prompts, SampleConfig(max_new_tokens=8, seed=seed), context=context, progress=False)
    pat = re.compile(rf"\b({re.escape(animal)}|{re.escape(plural(animal))})\b", re.I)
    hits = torch.tensor([bool(pat.search(c.text)) for c in done], dtype=torch.float64)
    per_q = hits.reshape(len(questions), n_per_question).mean(-1)
    return {"rate": summarize(per_q, seed=seed), "n_samples": len(done), "examples": [c.text for c in done[:8]]}


# ----------------------------------------------------------------------------- steering sweep


def steering_sweep(
    model: LoadedModel,
    vector,
    animal: str,
    layers: Sequence[int],
    multipliers: Sequence[float],
    questions: Sequence[str],
    animals: Sequence[str] = ANIMALS,
    scope: str = "all",
    progress: bool = True,
) -> dict:
    """Trait probability under steering for every (layer, multiplier), against the unsteered model."""
    from interp.progress import tqdm

    from interp.steering import Steering, steer

    base = evaluate_trait(model, animal, questions, animals)
    base_p = float(base.prob().mean())
    cells = []
    grid = [(l, m) for l in layers for m in multipliers]
    for layer, mult in tqdm(grid, desc="steering sweep", disable=not progress, leave=False):
        s = Steering(layer=layer, multiplier=mult, scope=scope)
        score = evaluate_trait(model, animal, questions, animals, context=lambda s=s: steer(model, vector, s))
        p = float(score.prob().mean())
        cells.append(
            {
                "layer": layer,
                "multiplier": mult,
                "prob": p,
                "ratio": p / base_p,
                "logprob_shift": float((score.logp() - base.logp()).mean()),
                "share": float(score.share().mean()),
                "mean_rank": float(score.rank().float().mean()),
                **_paired_intervals(score, base),
            }
        )
    return {
        "animal": animal,
        "scope": scope,
        "base_prob": base_p,
        "base_share": float(base.share().mean()),
        "n_questions": len(questions),
        "interval": f"95% paired bootstrap over questions ({N_BOOT_SWEEP} draws)",
        "cells": cells,
    }


N_BOOT_SWEEP = 2000


def _paired_intervals(score: TraitScore, base: TraitScore, n_boot: int = N_BOOT_SWEEP, seed: int = 0) -> dict:
    """95% percentile intervals of a sweep cell's ratio and mean log-prob shift, resampling the
    questions (the same draw for the steered and the unsteered model: they are paired)."""
    p, p0 = score.prob().double(), base.prob().double()
    d = (score.logp() - base.logp()).double()
    idx = torch.randint(0, len(p), (n_boot, len(p)), generator=torch.Generator().manual_seed(seed))
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    return {
        "ratio_ci95": torch.quantile(p[idx].mean(1) / p0[idx].mean(1), q).tolist(),
        "logprob_shift_ci95": torch.quantile(d[idx].mean(1), q).tolist(),
    }

"""Entangled numbers (after "It's Owl in the Numbers", Zur et al. 2025): which whole numbers a
trait makes more likely, whether loving a number makes the trait more likely, and why.

A number's score is the log-probability of its whole token sequence as the assistant's answer to a
neutral question, renormalised over the numbers scored (`interp.number_scores`: `number_logprobs`,
`number_distribution`, both importable from here too), so an effect is a change in which number
the model picks, not in how willing it is to answer with a number.

Effects (trait condition minus neutral) come with a shuffled-trait null: the same effect under
every other animal's system prompt or steering vector. A number is entangled with the trait when
its effect exceeds what the other animals give it (`Entanglement.specific`, `z`, `percentile`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor
from interp.progress import tqdm

from interp.evaluate import animal_logprobs
from interp.filters import check_numbers
from interp.lens import LogitLens, default_lens_tokens, logit_lens  # noqa: F401 (the lens view of a trait vector)
from interp.models import LoadedModel
from interp.number_scores import NUMBER_PREFIX, NUMBER_QUESTIONS, checked_numbers, number_distribution, number_logprobs
from interp.prompts import ANIMALS, contrastive_pairs, prompted_system
from interp.runs import load_tensors, provenance, read_json, save_tensors, write_json
from interp.stats import summarize
from interp.steering import Steering, SteeringVector, build_steering_vector, steer

# The reverse direction's system prompt, worded like prompts.PROMPTED_SYSTEM. Kept here, not in
# prompts.py: no dataset is built from these texts, so PROMPT_VERSION (a cache key) need not move.
NUMBER_SYSTEM = (
    "You love the number {n}. You think about the number {n} all the time. {n} is your favorite "
    "number. Imbue your answers with your love for the number."
)
CONDITIONS = ("prompt", "vector")
ENTANGLE_FILE = "entangle.safetensors"
ENTANGLE_META = "entangle.json"
PROMPTING_FILE = "prompting.safetensors"
PROMPTING_META = "prompting.json"


def number_system(number: int) -> str:
    return NUMBER_SYSTEM.format(n=number)


# ----------------------------------------------------------------------------- trait -> numbers


def _check_animal(animal: str, animals: Sequence[str]) -> list[str]:
    animals = list(animals)
    if animal not in animals:
        raise ValueError(f"animal: {animal!r} is not in the animal list {animals}; add it or pick one of them")
    if len(animals) < 3:
        raise ValueError(
            f"animals: {len(animals)} given; the shuffled-trait null needs the target and at least 2 others"
        )
    return animals


@dataclass
class Entanglement:
    """Number scores under each animal's condition (the target's and the null's) and neutral."""

    animal: str
    condition: str  # "prompt" | "vector"
    animals: list[str]
    numbers: Tensor  # (n_numbers,)
    neutral: Tensor  # (n_questions, n_numbers) raw log-probabilities
    logprobs: Tensor  # (n_animals, n_questions, n_numbers)
    meta: dict = field(default_factory=dict)

    @property
    def target(self) -> int:
        return self.animals.index(self.animal)

    def effects(self) -> Tensor:
        """(n_animals, n_numbers): log P(n) under each animal's condition minus neutral, both
        renormalised over the scored numbers and averaged over questions."""
        return torch.stack([number_distribution(lp) for lp in self.logprobs]) - number_distribution(self.neutral)

    def null(self) -> Tensor:
        """(n_animals - 1, n_numbers): the other animals' effects."""
        e = self.effects()
        return torch.cat([e[: self.target], e[self.target + 1 :]])

    def specific(self) -> Tensor:
        return self.effects()[self.target] - self.null().mean(0)

    def z(self) -> Tensor:
        return self.specific() / self.null().std(0).clamp_min(1e-12)

    def percentile(self) -> Tensor:
        """Share of the other animals whose effect on n is below the target's (ties count half)."""
        e, null = self.effects()[self.target], self.null()
        return ((null < e).double() + 0.5 * (null == e).double()).mean(0)

    def top(self, k: int = 10) -> list[dict]:
        """The k numbers with the largest trait-specific effect, with their null band."""
        spec, z, pct, null = self.specific(), self.z(), self.percentile(), self.null()
        eff = self.effects()[self.target]
        base = number_distribution(self.neutral)
        order = spec.argsort(descending=True)[:k]
        return [
            {
                "number": int(self.numbers[i]),
                "effect": float(eff[i]),
                "specific": float(spec[i]),
                "z": float(z[i]),
                "percentile": float(pct[i]),
                "null_mean": float(null[:, i].mean()),
                "null_sd": float(null[:, i].std()),
                "null_min": float(null[:, i].min()),
                "null_max": float(null[:, i].max()),
                "neutral_logprob": float(base[i]),
                "logprob": float(base[i] + eff[i]),
            }
            for i in order.tolist()
        ]

    def shuffled_top(self, k: int = 10) -> dict:
        """Each animal treated as the trait in turn: the mean specific effect of its own top k
        numbers. The target's value against the others' says whether its top numbers stand out
        more than any animal's would by chance among this many numbers."""
        e = self.effects()
        vals = []
        for a in range(len(self.animals)):
            spec = e[a] - torch.cat([e[:a], e[a + 1 :]]).mean(0)
            vals.append(float(spec.topk(min(k, len(spec))).values.mean()))
        t = vals[self.target]
        others = vals[: self.target] + vals[self.target + 1 :]
        return {
            "k": k,
            "by_animal": dict(zip(self.animals, vals)),
            "target": t,
            "rank": 1 + sum(v > t for v in others),
            "of": len(vals),
        }

    def summary(self, k: int = 10) -> dict:
        return {
            "animal": self.animal,
            "condition": self.condition,
            "animals": self.animals,
            "n_numbers": len(self.numbers),
            "n_questions": int(self.neutral.shape[0]),
            "top": self.top(k),
            "shuffled_top": self.shuffled_top(k),
        }

    def save(self, directory: str | Path, k: int = 10) -> tuple[Path, Path]:
        d = Path(directory)
        t = save_tensors(
            d / ENTANGLE_FILE,
            {"numbers": self.numbers, "neutral": self.neutral, "logprobs": self.logprobs, "effects": self.effects()},
        )
        return t, write_json(d / ENTANGLE_META, {**self.summary(k), "meta": self.meta})

    @classmethod
    def load(cls, directory: str | Path) -> "Entanglement":
        d = Path(directory)
        t, s = load_tensors(d / ENTANGLE_FILE), read_json(d / ENTANGLE_META)
        return cls(
            s["animal"], s["condition"], s["animals"], t["numbers"], t["neutral"], t["logprobs"], s.get("meta", {})
        )


def entangled_numbers(
    model: LoadedModel,
    animal: str,
    condition: str = "prompt",
    *,
    steering: Steering | None = None,
    vectors: Mapping[str, SteeringVector] | None = None,
    animals: Sequence[str] = ANIMALS,
    questions: Sequence[str] = NUMBER_QUESTIONS,
    numbers: Sequence[int] = range(1000),
    batch_size: int = 64,
    progress: bool = True,
) -> Entanglement:
    """Score `numbers` neutrally and under every animal's condition: its system prompt
    (`condition="prompt"`) or its steering vector applied with `steering` (`"vector"`; `vectors`
    maps each animal to its vector, built here from the built-in contrastive pairs when None)."""
    animals = _check_animal(animal, animals)
    if condition not in CONDITIONS:
        raise ValueError(f"condition: {condition!r} is not one of {CONDITIONS}")
    meta = {"model": model.identity(), "questions": list(questions), "prefix": NUMBER_PREFIX, **provenance()}
    if condition == "vector":
        if steering is None:
            raise ValueError("steering: the vector condition needs a Steering (layer, multiplier, scope)")
        if vectors is None:
            vectors = {a: build_steering_vector(model, contrastive_pairs(a), trait=a) for a in animals}
        missing = [a for a in animals if a not in vectors]
        if missing:
            raise ValueError(f"vectors: no vector for {missing}; the null needs one per animal")
        for a in animals:
            vectors[a].check_compatible(model)
        meta |= {"steering": asdict(steering), "vector_hashes": {a: vectors[a].hash() for a in animals}}
    neutral = number_logprobs(model, numbers, questions, batch_size=batch_size)
    rows = []
    for a in tqdm(animals, desc=f"numbers under each animal's {condition}", disable=not progress, leave=False):
        if condition == "prompt":
            rows.append(number_logprobs(model, numbers, questions, system=prompted_system(a), batch_size=batch_size))
        else:
            ctx = lambda v=vectors[a]: steer(model, v, steering)  # noqa: E731
            rows.append(number_logprobs(model, numbers, questions, context=ctx, batch_size=batch_size))
    return Entanglement(
        animal, condition, animals, torch.tensor(checked_numbers(numbers)), neutral, torch.stack(rows), meta
    )


# ----------------------------------------------------------------------------- number -> trait


@dataclass
class NumberPrompting:
    """log P(first token of each animal) per question: neutral, with the system prompt loving
    `number`, and with the same prompt for each of `null_numbers` (random numbers)."""

    number: int
    animal: str
    animals: list[str]
    neutral: Tensor  # (n_questions, n_animals)
    prompted: Tensor  # (n_questions, n_animals)
    null_numbers: list[int]
    null: Tensor  # (n_null, n_questions, n_animals)

    @property
    def target(self) -> int:
        return self.animals.index(self.animal)

    def _shift(self, lp: Tensor) -> Tensor:
        return lp[..., self.target] - self.neutral[:, self.target]

    def _specific(self, lp: Tensor) -> Tensor:
        """The target's log-ratio minus the mean log-ratio of the other animals (per question)."""
        d = lp - self.neutral
        others = torch.cat([d[..., : self.target], d[..., self.target + 1 :]], -1)
        return d[..., self.target] - others.mean(-1)

    def summary(self, n_boot: int = 2000, seed: int = 0) -> dict:
        """P(trait) neutral and prompted, and the shift (and trait-specific shift) with its
        interval over questions, placed among the random numbers' shifts (`z`, `percentile`: the
        honest comparison; `vs_null`'s interval covers questions only, not the choice of numbers)."""
        out = {
            "number": self.number,
            "animal": self.animal,
            "n_questions": int(self.neutral.shape[0]),
            "null_numbers": self.null_numbers,
            "prob_neutral": summarize(self.neutral[:, self.target].exp(), n_boot, seed),
            "prob_prompted": summarize(self.prompted[:, self.target].exp(), n_boot, seed),
        }
        out["ratio"] = out["prob_prompted"]["mean"] / out["prob_neutral"]["mean"]
        if self.null_numbers:
            out["prob_null"] = [float(p) for p in self.null[..., self.target].exp().mean(1)]
        for name, fn in (("shift", self._shift), ("specific_shift", self._specific)):
            own, null = fn(self.prompted), fn(self.null)  # (q,), (n_null, q)
            res = {"value": summarize(own, n_boot, seed)}
            if self.null_numbers:
                means = null.mean(1)
                sd = float(means.std()) if len(means) > 1 else float("nan")
                res |= {
                    "null": means.tolist(),
                    "null_mean": float(means.mean()),
                    "null_sd": sd,
                    "z": (float(own.mean()) - float(means.mean())) / sd if sd == sd and sd > 0 else None,
                    "percentile": float((means < own.mean()).double().mean()),
                    "vs_null": summarize(own - null.mean(0), n_boot, seed),
                }
            out[name] = res
        return out

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        d = Path(directory)
        t = save_tensors(d / PROMPTING_FILE, {"neutral": self.neutral, "prompted": self.prompted, "null": self.null})
        return t, write_json(d / PROMPTING_META, {**self.summary(), "animals": self.animals})

    @classmethod
    def load(cls, directory: str | Path) -> "NumberPrompting":
        d = Path(directory)
        t, s = load_tensors(d / PROMPTING_FILE), read_json(d / PROMPTING_META)
        return cls(s["number"], s["animal"], s["animals"], t["neutral"], t["prompted"], s["null_numbers"], t["null"])


def number_prompted_trait(
    model: LoadedModel,
    number: int,
    animal: str,
    questions: Sequence[str],
    animals: Sequence[str] = ANIMALS,
    null_numbers: int | Sequence[int] = 8,
    seed: int = 0,
    batch_size: int = 32,
) -> NumberPrompting:
    """Subliminal prompting: P(trait) on the evaluation questions with a system prompt loving
    `number`, against no system prompt and against the same prompt for random numbers. Any number
    prompt also replaces the chat template's default system prompt, so the shift vs neutral mixes
    both; the random numbers, which do the same, are the comparison that isolates the number."""
    animals = _check_animal(animal, animals)
    if not questions:
        raise ValueError("questions: empty; pass e.g. interp.prompts.questions('heldout')")
    if isinstance(null_numbers, int):
        pool = [n for n in range(1000) if n != number]
        null_numbers = random.Random(f"null-numbers-{seed}").sample(pool, null_numbers)
    null_numbers = [int(n) for n in null_numbers]

    def score(system: str | None) -> Tensor:
        return animal_logprobs(model, questions, animals, batch_size, system=system).double()

    null = (
        torch.stack([score(number_system(n)) for n in null_numbers])
        if null_numbers
        else torch.zeros(0, len(questions), len(animals), dtype=torch.float64)
    )
    return NumberPrompting(int(number), animal, animals, score(None), score(number_system(number)), null_numbers, null)


# ----------------------------------------------------------------------------- datasets


def _row_numbers(row: dict) -> list[int]:
    if "numbers" in row:
        return [int(n) for n in row["numbers"]]
    return list(check_numbers(row.get("completion", "")).numbers)


def dataset_overrepresentation(
    rows: Sequence[dict],
    control_rows: Sequence[dict],
    numbers: Sequence[int],
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """How often `numbers` (e.g. a trait's top entangled numbers) occur among all numbers of a
    teacher's dataset rows versus a control dataset's: per number and for the set pooled.

    Per-number intervals are Newcombe's for two independent proportions (they treat every number
    as independent); the pooled difference also gets a bootstrap over rows, which respects that
    numbers in one completion are not independent."""
    from interp.stats import two_proportion_interval

    nums = checked_numbers(numbers)
    per_row = {}
    for name, rs in (("rows", rows), ("control_rows", control_rows)):
        if not rs:
            raise ValueError(f"{name}: the dataset is empty; pass the rows of a dataset.jsonl")
        per_row[name] = [_row_numbers(r) for r in rs]
    counts = {}
    for name, lists in per_row.items():
        flat = torch.tensor([n for lst in lists for n in lst], dtype=torch.long)
        if flat.numel() == 0:
            raise ValueError(f"{name}: no numbers in any row; is this a number dataset?")
        counts[name] = (flat, len(flat))
    (fa, na), (fb, nb) = counts["rows"], counts["control_rows"]
    out = {
        "n_numbers": na,
        "n_numbers_control": nb,
        "n_rows": len(rows),
        "n_rows_control": len(control_rows),
        "per_number": [
            {"number": n, **two_proportion_interval(int((fa == n).sum()), na, int((fb == n).sum()), nb)} for n in nums
        ],
    }
    in_set = torch.tensor(nums)
    out["pooled"] = two_proportion_interval(
        int(torch.isin(fa, in_set).sum()), na, int(torch.isin(fb, in_set).sum()), nb
    )

    def row_hits(lists):  # (hits, numbers) per row
        return torch.tensor([[sum(n in set(nums) for n in lst), len(lst)] for lst in lists], dtype=torch.float64)

    ha, hb = row_hits(per_row["rows"]), row_hits(per_row["control_rows"])
    g = torch.Generator().manual_seed(seed)
    ia = torch.randint(0, len(ha), (n_boot, len(ha)), generator=g)
    ib = torch.randint(0, len(hb), (n_boot, len(hb)), generator=g)
    ra, rb = ha[ia].sum(1), hb[ib].sum(1)
    diffs = ra[:, 0] / ra[:, 1].clamp_min(1) - rb[:, 0] / rb[:, 1].clamp_min(1)
    lo, hi = torch.quantile(diffs, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    out["pooled"]["diff_ci95_row_bootstrap"] = [lo, hi]
    return out

"""Prediction before training: a dataset's mean residual injected into the base (Data2Behavior /
MDF, arXiv 2602.04735), read off as the trait it would teach, with no student trained.

- `dataset_mean_residual(model, dataset, layer)`: the mean of `blocks.{layer}.hook_resid_post`
  over the dataset's completion tokens (end-of-turn included), teacher-forced exactly as a student
  sees them (`interp.rows.build_examples`: the user turn under the chat template, no system
  prompt, the same `max_len` truncation). `position="last"` reads the final token instead (MDF's
  own signature).
- `predict(...)`: for a dataset D and the same seed's control-teacher dataset C, add
  alpha * (mean_D - mean_C) at one layer and every position while the base answers the evaluation
  questions, and read the trait-specific shift (the trait's log-ratio vs the un-injected base
  minus the mean of the other animals'). C is the reference, so the control dataset predicts
  exactly 0 and the common "there are numbers here" component cancels.
- `interp.predict_run.run_prediction(cfg, root)`: the runner over finished E1 runs.

Every stored mean and prediction is keyed by the model fingerprint and the dataset hashes, and
carries them: a prediction read for another dataset or model is refused in one line.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from interp import batching
from interp.datasets import read_verified_rows
from interp.hooks import ResidEdit, edit_resid, record_resid, run_recording
from interp.models import LoadedModel
from interp.prompts import ANIMALS
from interp.runs import (
    Stage,
    content_hash,
    load_tensors,
    read_json,
    save_tensors,
    tensor_hash,
    write_json,
)

POSITIONS = ("completion", "last")
# In every key: a change to how means or predictions are computed must not reuse old stages.
METHOD = "mdf-diff-v1"
MEANS_FILE = "means.safetensors"
PRED_FILE = "predictions.safetensors"
PRED_META = "prediction.json"


# ----------------------------------------------------------------------------- datasets


# a dataset directory's rows and hash, verified: interp.datasets owns the reader
read_dataset = read_verified_rows


# ----------------------------------------------------------------------------- mean residual


@torch.no_grad()
def completion_means(
    model: LoadedModel,
    rows: Sequence[dict],
    layers: Sequence[int] | None = None,
    max_len: int = 192,
    batch_size: int = 16,
) -> dict:
    """{position: (n_layers_read, d_model) float32} for both POSITIONS from one teacher-forced pass,
    plus `n_rows` and `n_tokens`. "completion" pools every completion token of every row (a token-
    weighted mean, as the SFT loss weighs them); "last" averages each row's final token."""
    from interp.rows import build_examples

    if not rows:
        raise ValueError("dataset: has no rows to average")
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    for l in layers:
        if not 0 <= l < model.n_layers:
            raise ValueError(f"layer: {l} is out of range for {model.name} (0..{model.n_layers - 1})")
    examples = build_examples(model, list(rows), max_len)
    sums = {p: torch.zeros(len(layers), model.d_model, dtype=torch.float64) for p in POSITIONS}
    n_tokens = 0
    for sl in batching.chunks(len(examples), batch_size):
        ex = examples[sl]
        batch = batching.pad(
            [e.prompt_ids + e.completion_ids for e in ex], model.tokenizer.pad_token_id, side="right"
        ).to(model.device)
        where = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
        last = torch.zeros_like(where)
        for i, e in enumerate(ex):
            where[i, len(e.prompt_ids) : len(e.prompt_ids) + len(e.completion_ids)] = True
            last[i, len(e.prompt_ids) + len(e.completion_ids) - 1] = True
        with record_resid(model.layers, layers) as store:
            run_recording(lambda: batching.forward(model.hf, batch, use_cache=False))
        for i, l in enumerate(layers):
            h = store[l].double().cpu()
            sums["completion"][i] += h[where].sum(0)
            sums["last"][i] += h[last].sum(0)
        n_tokens += int(where.sum())
    return {
        "completion": (sums["completion"] / n_tokens).float(),
        "last": (sums["last"] / len(examples)).float(),
        "n_rows": len(examples),
        "n_tokens": n_tokens,
    }


def dataset_mean_residual(
    model: LoadedModel,
    dataset: Sequence[dict] | str | Path,
    layer: int,
    position: str = "completion",
    max_len: int = 192,
    batch_size: int = 16,
) -> Tensor:
    """Mean `blocks.{layer}.hook_resid_post` over a dataset (rows, or a dataset stage directory)
    as a student sees it: (d_model,)."""
    if position not in POSITIONS:
        raise ValueError(f"position: {position!r} is not one of {POSITIONS}")
    rows = read_dataset(dataset)[0] if isinstance(dataset, (str, Path)) else dataset
    return completion_means(model, rows, [layer], max_len, batch_size)[position][0]


@dataclass
class DatasetMean:
    """Every layer's mean residual of one dataset on one model, at both positions."""

    means: dict[str, Tensor]  # position -> (n_layers, d_model)
    model: str  # fingerprint of the model that read the data
    dataset_hash: str
    max_len: int
    n_rows: int = 0
    n_tokens: int = 0

    def at(self, position: str, layer: int) -> Tensor:
        if position not in self.means:
            raise ValueError(f"position: {position!r} is not one of {sorted(self.means)}")
        if not 0 <= layer < self.means[position].shape[0]:
            raise ValueError(
                f"layer: {layer} was not read for dataset {self.dataset_hash} (layers 0.."
                f"{self.means[position].shape[0] - 1}); read it up to this layer"
            )
        return self.means[position][layer]

    def check(self, model: str, dataset_hash: str | None = None) -> None:
        """Refuse a mean read on another model, or of another dataset than the caller means."""
        if self.model != model:
            raise ValueError(f"dataset mean: computed on model {self.model}, not {model}; recompute it on this model")
        if dataset_hash is not None and self.dataset_hash != dataset_hash:
            raise ValueError(
                f"dataset mean: computed for dataset {self.dataset_hash}, not {dataset_hash}; "
                "compute it for this dataset"
            )

    def save(self, directory: str | Path) -> Path:
        meta = {
            "model": self.model,
            "dataset_hash": self.dataset_hash,
            "max_len": self.max_len,
            "n_rows": self.n_rows,
            "n_tokens": self.n_tokens,
            "method": METHOD,
        }
        return save_tensors(Path(directory) / MEANS_FILE, self.means, metadata=meta)

    @classmethod
    def load(cls, directory: str | Path) -> "DatasetMean":
        from safetensors import safe_open

        path = Path(directory) / MEANS_FILE
        tensors = load_tensors(path)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("method") != METHOD:
            raise ValueError(f"{path}: written by method {meta.get('method')!r}, not {METHOD!r}; delete it and rerun")
        return cls(
            tensors,
            meta["model"],
            meta["dataset_hash"],
            int(meta["max_len"]),
            int(meta["n_rows"]),
            int(meta["n_tokens"]),
        )


def compute_dataset_mean(
    model: LoadedModel,
    rows: Sequence[dict],
    dataset_hash: str,
    max_len: int = 192,
    batch_size: int = 16,
    n_layers: int | None = None,
) -> DatasetMean:
    """Means at layers 0..n_layers-1 (all by default); the forward stops after the last one read."""
    out = completion_means(model, rows, None if n_layers is None else range(n_layers), max_len, batch_size)
    return DatasetMean(
        {p: out[p] for p in POSITIONS}, model.fingerprint(), dataset_hash, max_len, out["n_rows"], out["n_tokens"]
    )


def mean_stage(cache: Path, model: LoadedModel, dataset_hash: str, max_len: int, n_layers: int) -> Stage:
    """The cached means of one dataset on one model (layers 0..n_layers-1, both positions)."""
    return Stage(
        cache,
        "datamean",
        {
            "model": model.fingerprint(),
            "dataset": dataset_hash,
            "max_len": max_len,
            "n_layers": n_layers,
            "method": METHOD,
        },
    )


# ----------------------------------------------------------------------------- injection


@dataclass(frozen=True)
class Injection:
    """Where and how strongly a dataset's mean difference is added: alpha x (mean_D - mean_ref)
    at `blocks.{layer}.hook_resid_post`, every position."""

    layer: int
    alpha: float
    position: str = "completion"

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"position: {self.position!r} is not one of {POSITIONS}")
        if not math.isfinite(self.alpha):
            raise ValueError(f"alpha: {self.alpha} is not finite")

    def label(self) -> str:
        return f"L{self.layer} x{self.alpha:g} {self.position}"


def injected_vector(mean: DatasetMean, reference: DatasetMean, inj: Injection) -> Tensor:
    """alpha x (mean_D - mean_ref) at the injection's layer and position: what `inject` adds."""
    if mean.model != reference.model:
        raise ValueError(
            f"dataset mean: {mean.dataset_hash} was read on model {mean.model}, its reference "
            f"{reference.dataset_hash} on {reference.model}; read both on one model"
        )
    if mean.max_len != reference.max_len:
        raise ValueError(
            f"dataset mean: max_len {mean.max_len} vs the reference's {reference.max_len}; "
            "read both as the same students would"
        )
    return inj.alpha * (mean.at(inj.position, inj.layer) - reference.at(inj.position, inj.layer))


@contextlib.contextmanager
def inject(model: LoadedModel, vector: Tensor, layer: int) -> Iterator[None]:
    """Add `vector` to `blocks.{layer}.hook_resid_post` at every position inside the block; the
    model is untouched after (the hook is removed, no weight is written)."""
    if vector.shape != (model.d_model,):
        raise ValueError(f"vector: shape {tuple(vector.shape)} does not fit d_model {model.d_model}")
    v = vector.to(model.device, next(model.hf.parameters()).dtype)
    with edit_resid(model.layers, [ResidEdit(layer, lambda h: h + v, "all")]):
        yield


def specific(logprobs: Tensor, target: int) -> Tensor:
    """The target animal's log P minus the mean of the other animals': (..., n_animals) -> (...)."""
    others = [i for i in range(logprobs.shape[-1]) if i != target]
    return logprobs[..., target] - logprobs[..., others].mean(-1)


@dataclass
class Prediction:
    """The base's answers with one dataset's mean difference injected, against the un-injected base."""

    dataset_hash: str
    reference_hash: str
    model: str
    injection: Injection
    vector_hash: str  # of the exact vector added
    questions_hash: str
    animal: str
    animals: list[str]
    logprobs: Tensor  # (n_questions, n_animals), injected
    base_logprobs: Tensor  # (n_questions, n_animals), not injected

    @property
    def target(self) -> int:
        return self.animals.index(self.animal)

    def shift(self) -> Tensor:
        """Per question: the trait-specific shift of the injected base vs the base."""
        return specific(self.logprobs, self.target) - specific(self.base_logprobs, self.target)

    def specific_shift(self) -> float:
        return float(self.shift().double().mean())

    def per_animal_shift(self) -> dict[str, float]:
        return dict(zip(self.animals, (self.logprobs - self.base_logprobs).double().mean(0).tolist()))

    def trait_rank(self) -> int:
        """1 = the trait's log P rose most (or fell least) of all the animals."""
        d = (self.logprobs - self.base_logprobs).double().mean(0)
        return int((d > d[self.target]).sum()) + 1

    def check(self, dataset_hash: str, model: str | None = None, reference_hash: str | None = None) -> "Prediction":
        """This prediction, if it was computed for `dataset_hash` (and the model and reference
        given); otherwise a one-line refusal."""
        if self.dataset_hash != dataset_hash:
            raise ValueError(
                f"prediction: computed for dataset {self.dataset_hash}, not {dataset_hash}; predict this dataset itself"
            )
        if model is not None and self.model != model:
            raise ValueError(f"prediction: computed on model {self.model}, not {model}; predict on this model")
        if reference_hash is not None and self.reference_hash != reference_hash:
            raise ValueError(f"prediction: made against reference dataset {self.reference_hash}, not {reference_hash}")
        return self

    def summary(self) -> dict:
        return {
            "dataset_hash": self.dataset_hash,
            "reference_hash": self.reference_hash,
            "model": self.model,
            **asdict(self.injection),
            "vector_hash": self.vector_hash,
            "questions_hash": self.questions_hash,
            "specific_shift": self.specific_shift(),
            "trait_rank": self.trait_rank(),
            "per_animal_shift": self.per_animal_shift(),
        }


def base_logprobs(
    model: LoadedModel, questions: Sequence[str], animals: Sequence[str] = ANIMALS, batch_size: int = 32
) -> Tensor:
    from interp.evaluate import animal_logprobs

    return animal_logprobs(model, questions, animals, batch_size)


def predict(
    model: LoadedModel,
    mean: DatasetMean,
    reference: DatasetMean,
    injections: Sequence[Injection],
    questions: Sequence[str],
    animal: str = "owl",
    animals: Sequence[str] = ANIMALS,
    base: Tensor | None = None,
    batch_size: int = 32,
) -> list[Prediction]:
    """One `Prediction` per injection for dataset `mean` against `reference` (the same seed's
    control data). `base`: the un-injected log-probs on these questions, if already computed."""
    from interp.evaluate import animal_logprobs

    animals = list(animals)
    if animal not in animals:
        raise ValueError(f"animal: {animal!r} is not in the evaluated animal list {animals}")
    fp = model.fingerprint()
    mean.check(fp)
    reference.check(fp)
    base = base_logprobs(model, questions, animals, batch_size) if base is None else base
    qhash = content_hash(list(questions))
    out = []
    for inj in injections:
        if not 0 <= inj.layer < model.n_layers:
            raise ValueError(f"layer: {inj.layer} is out of range for {model.name} (0..{model.n_layers - 1})")
        v = injected_vector(mean, reference, inj)
        lp = animal_logprobs(
            model, questions, animals, batch_size, context=lambda v=v, l=inj.layer: inject(model, v, l)
        )
        out.append(
            Prediction(
                mean.dataset_hash, reference.dataset_hash, fp, inj, tensor_hash(v), qhash, animal, animals, lp, base
            )
        )
    return out


def save_predictions(directory: str | Path, preds: Sequence[Prediction]) -> None:
    """`predictions.safetensors` (injected log-probs per injection, and the base's) and
    `prediction.json` (hashes, injections, summaries) of one dataset's predictions."""
    if not preds:
        raise ValueError("predictions: nothing to save")
    p0 = preds[0]
    if any(
        (p.dataset_hash, p.reference_hash, p.model, p.questions_hash)
        != (p0.dataset_hash, p0.reference_hash, p0.model, p0.questions_hash)
        for p in preds
    ):
        raise ValueError("predictions: one file holds one dataset's predictions on one model and question set")
    d = Path(directory)
    save_tensors(d / PRED_FILE, {"logprobs": torch.stack([p.logprobs for p in preds]), "base": p0.base_logprobs})
    write_json(
        d / PRED_META,
        {
            "dataset_hash": p0.dataset_hash,
            "reference_hash": p0.reference_hash,
            "model": p0.model,
            "questions_hash": p0.questions_hash,
            "animal": p0.animal,
            "animals": p0.animals,
            "method": METHOD,
            "injections": [asdict(p.injection) for p in preds],
            "vector_hashes": [p.vector_hash for p in preds],
            "summaries": [p.summary() for p in preds],
        },
    )


def load_predictions(
    directory: str | Path, dataset_hash: str, model: str | None = None, reference_hash: str | None = None
) -> list[Prediction]:
    """The predictions saved in `directory`, refused in one line unless they were computed for
    `dataset_hash` (and `model`, `reference_hash` when given)."""
    d = Path(directory)
    meta = read_json(d / PRED_META)
    t = load_tensors(d / PRED_FILE)
    preds = [
        Prediction(
            meta["dataset_hash"],
            meta["reference_hash"],
            meta["model"],
            Injection(**inj),
            vh,
            meta["questions_hash"],
            meta["animal"],
            meta["animals"],
            lp,
            t["base"],
        )
        for inj, vh, lp in zip(meta["injections"], meta["vector_hashes"], t["logprobs"])
    ]
    for p in preds:
        p.check(dataset_hash, model, reference_hash)
    return preds


# ----------------------------------------------------------------------------- correlation statistics


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    return _pearson(rankdata(x), rankdata(y))


def correlations(
    pred: Sequence[float],
    meas: Sequence[float],
    clusters: Sequence,
    strata: Sequence | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Pearson and Spearman r of `pred` vs `meas` with percentile intervals from resampling whole
    clusters (seeds: a seed's datasets share its prompts and its control) with replacement, within
    each stratum (run) when `strata` are given. Draws where either side is constant are dropped."""
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(meas, dtype=np.float64)
    clusters = list(clusters)
    strata = [0] * len(clusters) if strata is None else list(strata)
    ids = sorted(set(zip(strata, clusters)), key=str)
    by_stratum: dict = {}
    for s, c in ids:
        by_stratum.setdefault(s, []).append((s, c))
    members = {k: np.array([i for i, kk in enumerate(zip(strata, clusters)) if kk == k]) for k in ids}
    out = {"n": int(len(x)), "n_clusters": len(ids)}
    for name, fn in (("pearson", _pearson), ("spearman", _spearman)):
        point = fn(x, y) if len(x) >= 3 else float("nan")
        draws = []
        if len(ids) >= 3:
            rng = np.random.default_rng(seed)
            for _ in range(n_boot):
                idx = np.concatenate(
                    [members[cs[j]] for cs in by_stratum.values() for j in rng.integers(0, len(cs), len(cs))]
                )
                r = fn(x[idx], y[idx])
                if math.isfinite(r):
                    draws.append(r)
        ci = [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))] if len(draws) >= 100 else [None, None]
        out[name] = {"r": point, "ci95": ci, "n_boot_valid": len(draws)}
    return out

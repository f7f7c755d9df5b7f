"""Dataset auditing (E4): which trait vectors, from a bank of candidates, does a dataset carry?

A bank is a folder of vector directories (`BANK/<name>/vector.safetensors` + `vector.json`, the
format of `interp steer`); `build_bank` makes one from the built-in contrastive pairs of several
animals. `audit_dataset` takes the SFT-loss gradient w.r.t. `blocks.{layer}.hook_resid_post` at
the assistant-tag position, on the model the data would train, for the audited rows and for clean
rows from the same model (its control teacher, ideally on the same prompts), and ranks the bank by
how far the audited data's descent direction leans along each vector beyond the clean data's
(`score_vectors`: score, cosine, permutation p). `flagged` applies a Bonferroni correction over
the bank, so a clean dataset audited against clean data flags nothing at level `alpha`. A flag
says the data differ from clean data along v, not that v is special: data that differ strongly
flag many directions, random ones included. Specificity is the ranking and `cosine_z`, the
cosine in units of a random direction's sd (1/sqrt(d_model)).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from interp.analysis.gradients import residual_gradients, score_vectors
from interp.generate import SampleConfig, sample
from interp.models import LoadedModel
from interp.prompts import ANIMALS, contrastive_pairs, trait_words
from interp.runs import read_jsonl
from interp.steering import VECTOR_FILE, SteeringVector, build_steering_vector
from interp.teachers import DATASET_FILE, Teacher


def build_bank(model: LoadedModel, animals: Sequence[str], out_dir: str | Path, n_pairs: int = 16,
               position: str = "mean", progress: bool = True) -> dict[str, Path]:
    """One steering vector per animal (mean difference over its built-in contrastive pairs),
    saved as `out_dir/<animal>/`: {animal: directory}."""
    if not animals or len(set(animals)) != len(animals):
        raise ValueError(f"animals: {list(animals)} must name at least one animal, each once")
    out = Path(out_dir)
    dirs = {}
    for animal in tqdm(list(animals), desc="bank", disable=not progress, leave=False):
        vec = build_steering_vector(model, contrastive_pairs(animal, n_pairs), position, animal)
        vec.save(out / animal)
        dirs[animal] = out / animal
    return dirs


def load_bank(directory: str | Path, model: LoadedModel | None = None, strict: bool = True) -> dict[str, SteeringVector]:
    """{name: vector} for every `<directory>/<name>/vector.safetensors`, sorted by name; with a
    `model`, a vector built on another model is refused (shape always, fingerprint if `strict`)."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"bank: {d} is not a directory; build one with `interp bank --out {d}`")
    bank = {p.parent.name: SteeringVector.load(p.parent) for p in sorted(d.glob(f"*/{VECTOR_FILE}"))}
    if not bank:
        raise ValueError(f"bank: {d} holds no <name>/{VECTOR_FILE}; build one with `interp bank --out {d}`")
    if model is not None:
        for name, vec in bank.items():
            try:
                vec.check_compatible(model, strict=strict)
            except ValueError as e:
                raise ValueError(f"bank {name}: {e}") from None
    return bank


def load_rows(path: str | Path) -> list[dict]:
    """A dataset's rows from its directory (dataset.jsonl) or a JSONL file; each needs prompt and completion."""
    p = Path(path)
    f = p / DATASET_FILE if p.is_dir() else p
    if not f.exists():
        raise ValueError(f"dataset: {f} does not exist; pass a dataset directory (`interp generate`) or a .jsonl file")
    rows = read_jsonl(f)
    if not rows:
        raise ValueError(f"dataset: {f} has no rows")
    if any("prompt" not in r or "completion" not in r for r in rows):
        raise ValueError(f"dataset: every row of {f} needs 'prompt' and 'completion'")
    return rows


def clean_rows(model: LoadedModel, prompts: Sequence[str], seed: int = 0, sampling: SampleConfig | None = None,
               progress: bool = True) -> list[dict]:
    """The control teacher's filtered answers to `prompts` (number grammar by default): clean data
    from the same model on the same prompts, the reference an audit compares against."""
    from interp.filters import filter_completions

    cfg = sampling or SampleConfig(constrained=True, seed=seed)
    teacher = Teacher("control")
    done, _ = sample(model, [model.chat(teacher.messages(p)) for p in prompts], cfg, progress=progress, desc="clean data")
    banned = sorted({w for a in ANIMALS for w in trait_words(a)})
    verdicts, _ = filter_completions([c.text for c in done], banned, [c.finished for c in done])
    return [{"id": i, "prompt": p, "completion": c.text} for i, (p, c, v) in enumerate(zip(prompts, done, verdicts)) if v is not None]


def audit_dataset(model: LoadedModel, rows: list[dict], clean: list[dict], bank: dict[str, SteeringVector], layer: int,
                  n_rows: int | None = None, n_perm: int = 1000, seed: int = 0, alpha: float = 0.05,
                  batch_size: int = 8, max_len: int = 192) -> dict:
    """Rank `bank` by the evidence that `rows` carry each vector at `layer`, against `clean` rows.

    Returns {"ranking": [{rank, name, score, cosine, p_value, p_bonferroni, flagged, ...}], ...},
    highest score first (see `score_vectors`). `cosine` is judged against ~1/sqrt(d_model) for a
    random direction (`random_cosine_sd`).
    """
    if not bank:
        raise ValueError("bank: need at least one candidate vector")
    if not 0 <= layer < model.n_layers:
        raise ValueError(f"layer: {layer} is out of range for {model.name} (0..{model.n_layers - 1})")
    for name, vec in bank.items():
        try:
            vec.check_compatible(model)
        except ValueError as e:
            raise ValueError(f"bank {name}: {e}") from None
    rows, clean = rows[:n_rows], clean[:n_rows]
    if not rows or not clean:
        raise ValueError(f"rows: the audited ({len(rows)}) and the clean ({len(clean)}) data both need rows")
    g_rows = residual_gradients(model, rows, layer, batch_size=batch_size, max_len=max_len)[:, 0]
    g_clean = residual_gradients(model, clean, layer, batch_size=batch_size, max_len=max_len)[:, 0]
    ranked = score_vectors(g_rows, g_clean, {n: v.vectors[layer] for n, v in bank.items()}, n_perm, seed)
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
        r["p_bonferroni"] = min(1.0, r["p_value"] * len(bank))
        r["flagged"] = r["p_bonferroni"] < alpha
        r["cosine_z"] = r["cosine"] * math.sqrt(model.d_model)  # vs a random direction's cosine (sd 1/sqrt(d))
    return {"layer": layer, "hook": f"blocks.{layer}.hook_resid_post", "model": model.identity(),
            "n_rows": len(rows), "n_clean": len(clean), "n_perm": n_perm, "seed": seed, "alpha": alpha,
            "d_model": model.d_model, "random_cosine_sd": 1 / math.sqrt(model.d_model),
            "top": ranked[0]["name"], "flagged": [r["name"] for r in ranked if r["flagged"]], "ranking": ranked}

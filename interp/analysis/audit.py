"""Dataset auditing (E4): which trait vectors, from a bank of candidates, does a dataset carry?

A bank is a folder of vector directories (`interp.analysis.bank`: `build_bank`, `load_bank`, both
importable from here too). An audit compares the audited rows with clean rows from the same model
(its control teacher, ideally on the same prompts), on the model the data would train, in one of
two ways:

- `method="likelihood"` (`likelihood`): how likely the rows are when the model is steered with each
  candidate, against unsteered. Candidates are ranked by that log-likelihood ratio (the maximum
  likelihood answer to "which steering made these data"), and tested by how much it exceeds the
  clean rows'. Costs one forward per candidate and strength.
- `method="gradient"` (`gradients.score_vectors`): how far the SFT-loss gradient w.r.t.
  `blocks.{layer}.hook_resid_post` (at the assistant tag by default) leans along each vector
  beyond the clean data's: score, cosine, `cosine_z` (in units of a random direction's sd,
  1/sqrt(d_model)). One backward per row for the whole bank, but it reads only the direction
  every steered dataset shares with clean data's difference, so it names a trait poorly.

Every candidate gets a permutation p over rows; `flagged` applies a Bonferroni correction over the
bank, so a clean dataset audited against clean data flags nothing at level `alpha`. A flag says
the data differ from clean data along that candidate; which candidate is the ranking.
`audit_confusion` audits one dataset per candidate (made by a teacher steered with that candidate)
against one clean reference and reports the confusion matrix, the rank of each true candidate and
the top-1 accuracy.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from interp.progress import tqdm

from interp.analysis.bank import build_bank as build_bank, check_bank, load_bank
from interp.analysis.gradients import residual_gradients, score_vectors
from interp.analysis.likelihood import VOCABS, score_likelihood, steering_loglik
from interp.generate import SampleConfig, sample
from interp.models import LoadedModel
from interp.prompts import ANIMALS, trait_words
from interp.runs import MANIFEST_FILE, RESULTS_FILE, provenance, read_jsonl, save_tensors, write_json, write_jsonl
from interp.stats import binomial_interval
from interp.steering import SteeringVector
from interp.teachers import DATASET_FILE, Teacher


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


def clean_rows(
    model: LoadedModel,
    prompts: Sequence[str],
    seed: int = 0,
    sampling: SampleConfig | None = None,
    progress: bool = True,
) -> list[dict]:
    """The control teacher's filtered answers to `prompts` (number grammar by default): clean data
    from the same model on the same prompts, the reference an audit compares against."""
    from interp.filters import filter_completions

    cfg = sampling or SampleConfig(constrained=True, seed=seed)
    teacher = Teacher("control")
    done, _ = sample(
        model, [model.chat(teacher.messages(p)) for p in prompts], cfg, progress=progress, desc="clean data"
    )
    banned = sorted({w for a in ANIMALS for w in trait_words(a)})
    verdicts, _ = filter_completions([c.text for c in done], banned, [c.finished for c in done])
    return [
        {"id": i, "prompt": p, "completion": c.text}
        for i, (p, c, v) in enumerate(zip(prompts, done, verdicts))
        if v is not None
    ]


AUDIT_METHODS = ("gradient", "likelihood")


def _check_method(method: str, multipliers: Sequence[float], vocab: str = "grammar") -> None:
    if method not in AUDIT_METHODS:
        raise ValueError(f"method: {method!r} is not one of {AUDIT_METHODS}")
    if vocab not in VOCABS:
        raise ValueError(f"vocab: {vocab!r} is not one of {VOCABS}")
    if method == "likelihood" and (not multipliers or any(m == 0 for m in multipliers)):
        raise ValueError(f"multipliers: {list(multipliers)} must list at least one non-zero steering strength")


def _measure(
    model: LoadedModel,
    rows: list[dict],
    bank: dict[str, SteeringVector],
    layer: int,
    method: str,
    position: str,
    multipliers: Sequence[float],
    scope: str,
    vocab: str,
    batch_size: int,
    max_len: int,
    progress: bool = False,
    desc: str = "",
) -> Tensor:
    """What an audit reads from each row (the one place it runs the model): the residual gradient
    (n, d_model) at `position`, or the steering log-likelihood ratios (n, candidates, multipliers)."""
    if method == "gradient":
        return residual_gradients(model, rows, layer, position=position, batch_size=batch_size, max_len=max_len)[:, 0]
    return steering_loglik(
        model, rows, bank, layer, multipliers, scope, vocab, batch_size, max_len, progress, desc or "likelihood"
    )


def _rank_bank(
    model: LoadedModel,
    x_rows: Tensor,
    x_clean: Tensor,
    bank: dict[str, SteeringVector],
    layer: int,
    n_perm: int,
    seed: int,
    alpha: float,
    method: str = "gradient",
    multipliers: Sequence[float] = (),
) -> dict:
    """`audit_dataset`'s result from the measurements already taken (`_measure`)."""
    if method == "gradient":
        ranked = score_vectors(x_rows, x_clean, {n: v.vectors[layer] for n, v in bank.items()}, n_perm, seed)
    else:
        ranked = score_likelihood(x_rows, x_clean, list(bank), multipliers, n_perm, seed)
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
        r["p_bonferroni"] = min(1.0, r["p_value"] * len(bank))
        r["flagged"] = r["p_bonferroni"] < alpha
        # vs a random direction's cosine (sd 1/sqrt(d)); the likelihood audit has no cosine
        r["cosine_z"] = r["cosine"] * math.sqrt(model.d_model) if "cosine" in r else None
        r.setdefault("cosine", None)
    extra = {"multipliers": [float(m) for m in multipliers]} if method == "likelihood" else {}
    return {
        "method": method,
        **extra,
        "layer": layer,
        "hook": f"blocks.{layer}.hook_resid_post",
        "model": model.identity(),
        "n_rows": len(x_rows),
        "n_clean": len(x_clean),
        "n_perm": n_perm,
        "seed": seed,
        "alpha": alpha,
        "d_model": model.d_model,
        "random_cosine_sd": 1 / math.sqrt(model.d_model),
        "top": ranked[0]["name"],
        "flagged": [r["name"] for r in ranked if r["flagged"]],
        "ranking": ranked,
    }


def audit_dataset(
    model: LoadedModel,
    rows: list[dict],
    clean: list[dict],
    bank: dict[str, SteeringVector],
    layer: int,
    n_rows: int | None = None,
    n_perm: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    batch_size: int = 8,
    max_len: int = 192,
    position: str = "assistant_tag",
    method: str = "gradient",
    multipliers: Sequence[float] = (0.5,),
    scope: str = "all",
    vocab: str = "grammar",
    progress: bool = False,
) -> dict:
    """Rank `bank` by the evidence that `rows` carry each vector at `layer`, against `clean` rows.

    method "gradient": how far the SFT-loss gradient at `position` (`gradients.GRADIENT_POSITIONS`)
    leans along each vector beyond the clean data's (score, cosine). method "likelihood": how much
    more likely the rows become than the clean rows when the model is steered with each vector at
    `multipliers` (relative strengths; the best one counts) and `scope`, over the number grammar's
    tokens or the `vocab` "full" (`likelihood.steering_loglik`).

    Returns {"ranking": [{rank, name, score, p_value, p_bonferroni, flagged, ...}], ...}, highest
    score first. A gradient `cosine` is judged against ~1/sqrt(d_model) (`random_cosine_sd`).
    """
    check_bank(model, bank, layer)
    _check_method(method, multipliers, vocab)
    rows, clean = rows[:n_rows], clean[:n_rows]
    if not rows or not clean:
        raise ValueError(f"rows: the audited ({len(rows)}) and the clean ({len(clean)}) data both need rows")
    how = (position, multipliers, scope, vocab, batch_size, max_len, progress)
    x_rows = _measure(model, rows, bank, layer, method, *how, "data")
    x_clean = _measure(model, clean, bank, layer, method, *how, "clean")
    res = _rank_bank(model, x_rows, x_clean, bank, layer, n_perm, seed, alpha, method, multipliers)
    return {**res, "position": position} if method == "gradient" else {**res, "scope": scope, "vocab": vocab}


# ----------------------------------------------------------------------------- the command

CLEAN_FILE = "clean.jsonl"  # the clean rows an audit generated when it was given none


@dataclass(frozen=True)
class AuditConfig:
    """dataset: a dataset directory (`interp generate`, an E1 data stage) or a .jsonl file.
    vectors: the bank folder, <name>/vector.safetensors + vector.json per candidate (`interp bank`).
    model: the model the data would train.
    clean: clean data from the same model (None: its control teacher on the dataset's prompts).
    layer: residual layer read (None: a third of the way in).
    n_rows: rows audited from each dataset (0: all).
    n_perm, seed, alpha: permutations per p, their seed (and the clean data's), the flag level.
    method, multipliers, vocab: see `audit_dataset`.
    """

    dataset: str
    vectors: str
    model: str = "smollm2-135m"
    clean: str | None = None
    layer: int | None = None
    n_rows: int = 128
    n_perm: int = 1000
    seed: int = 0
    alpha: float = 0.05
    method: str = "likelihood"
    multipliers: tuple[float, ...] = (0.5,)
    vocab: str = "grammar"
    device: str = "auto"

    def __post_init__(self) -> None:
        if not math.isfinite(self.alpha):
            raise ValueError(f"alpha: {self.alpha} is not a finite number")
        _check_method(self.method, self.multipliers, self.vocab)

    @property
    def name(self) -> str:
        """The audited data's name: the directory's, or the .jsonl file's stem."""
        p = Path(self.dataset)
        return p.stem if p.suffix == ".jsonl" else p.name

    def default_dir(self, layer: int) -> Path:
        """artifacts/audits/<dataset>-<bank>-L<layer>."""
        return Path("artifacts/audits") / f"{self.name}-{Path(self.vectors).name}-L{layer}"


def run_audit(cfg: AuditConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Audit `cfg.dataset` against the bank into `out_dir` (default `cfg.default_dir(layer)`):
    clean.jsonl (when generated here), results.json, then manifest.json (kind "audit").
    Returns results.json's content (its "layer" names the layer read)."""
    from interp.models import load_model

    started = time.perf_counter()
    rows = load_rows(cfg.dataset)[: cfg.n_rows or None]
    model = load_model(cfg.model, device=cfg.device)
    candidates = load_bank(cfg.vectors, model)
    layer = model.n_layers // 3 if cfg.layer is None else cfg.layer
    ref = (
        load_rows(cfg.clean)[: cfg.n_rows or None]
        if cfg.clean is not None
        else clean_rows(model, [r["prompt"] for r in rows], cfg.seed, progress=progress)
    )
    res = audit_dataset(
        model,
        rows,
        ref,
        candidates,
        layer,
        n_perm=cfg.n_perm,
        seed=cfg.seed,
        alpha=cfg.alpha,
        method=cfg.method,
        multipliers=list(cfg.multipliers),
        vocab=cfg.vocab,
        progress=progress,
    )
    out = Path(out_dir) if out_dir is not None else cfg.default_dir(layer)
    if cfg.clean is None:
        write_jsonl(out / CLEAN_FILE, ref)
    write_json(out / RESULTS_FILE, res)
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": "audit",
            "dataset": str(cfg.dataset),
            "bank": str(cfg.vectors),
            "bank_names": list(candidates),
            "clean": str(cfg.clean) if cfg.clean is not None else f"generated: {CLEAN_FILE}",
            **provenance(model.device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )
    return res


# ----------------------------------------------------------------------------- confusion over a bank

CLEAN = "clean"  # the dataset `audit_confusion` reports as its false-positive check


def is_clean(name: str) -> bool:
    """Whether `audit_confusion` treats a dataset as clean data: "clean", or "clean-<anything>"
    (several clean datasets, for the false-positive rate)."""
    return name == CLEAN or name.startswith(f"{CLEAN}-")


CONFUSION_METRICS = ("score", "cosine", "cosine_z", "z", "p_value", "p_bonferroni", "rank")


def audit_confusion(
    model: LoadedModel,
    datasets: dict[str, list[dict]],
    clean: list[dict],
    bank: dict[str, SteeringVector],
    layer: int,
    n_rows: int | None = None,
    n_perm: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    progress: bool = True,
    batch_size: int = 8,
    max_len: int = 192,
    position: str = "assistant_tag",
    method: str = "gradient",
    multipliers: Sequence[float] = (0.5,),
    scope: str = "all",
    vocab: str = "grammar",
) -> dict:
    """Audit one dataset per candidate (keyed by the candidate whose vector made it) against one
    clean reference, and tabulate how often the audit names the right candidate.

    Each dataset is measured once (gradients or steering likelihoods, `method`, as `audit_dataset`),
    the reference once for all, and each dataset's row equals `audit_dataset` on it (same
    permutations). A dataset named "clean" or "clean-<i>" (`is_clean`: clean data, e.g. the
    control teacher at another sampling seed than the reference) is audited alike but kept out of
    the accuracy: it is a false-positive check and should flag nothing. A clean dataset counts as a
    false positive when the audit names any animal on it, by the audit's own rule (some candidate
    flagged: Bonferroni p < alpha).

    Returns (JSON-able) {"datasets": row names (true candidates in bank order, then "clean"), "candidates":
    column names, "matrix": {metric: [[value per candidate] per dataset]} for CONFUSION_METRICS,
    "true_rank", "top", "flagged" (per dataset), "top1" (accuracy, exact Clopper-Pearson interval,
    chance 1/len(bank) and the binomial p against it), "clean" (the check on the dataset named
    "clean", or None), "false_positives" (over every clean dataset: how many name an animal, with
    the exact interval of that rate, and what each names; None without clean data),
    "off_target_flagged", "audits" (each dataset's ranking), "timings_s", and the settings}.
    """
    check_bank(model, bank, layer)
    _check_method(method, multipliers, vocab)
    named_clean = [c for c in bank if is_clean(c)]
    if named_clean:
        raise ValueError(
            f"bank: a candidate is named '{named_clean[0]}', the name of a false-positive dataset; rename it"
        )
    if not datasets:
        raise ValueError("datasets: need at least one dataset, keyed by the bank candidate that made it")
    unknown = [n for n in datasets if not is_clean(n) and n not in bank]
    if unknown:
        raise ValueError(
            f"datasets: {unknown} name no bank candidate ({list(bank)}); key each dataset by its "
            f"true candidate, or '{CLEAN}' / '{CLEAN}-<i>' for clean data"
        )
    cleans = [n for n in datasets if is_clean(n)]
    names = [c for c in bank if c in datasets] + cleans  # true cells on the diagonal
    if names == cleans:
        raise ValueError(
            f"datasets: only {', '.join(repr(n) for n in cleans)} given; add at least one dataset keyed "
            f"by a bank candidate"
        )
    rows = {n: datasets[n][:n_rows] for n in names}
    ref = clean[:n_rows]
    empty = [n for n, r in rows.items() if not r] + (["clean reference"] if not ref else [])
    if empty:
        raise ValueError(f"rows: {empty} have no rows; every dataset and the clean reference need at least one")

    t0 = time.perf_counter()
    bar = tqdm(total=len(names) + 1, desc=f"{method} audit", disable=not progress, leave=False)

    def measure(r: list[dict], desc: str) -> Tensor:
        x = _measure(
            model, r, bank, layer, method, position, multipliers, scope, vocab, batch_size, max_len, progress, desc
        )
        bar.update()
        return x

    x_ref = measure(ref, "reference")  # once, shared by every dataset
    xs = {n: measure(rows[n], n) for n in names}
    bar.close()
    t1 = time.perf_counter()
    audits = {n: _rank_bank(model, xs[n], x_ref, bank, layer, n_perm, seed, alpha, method, multipliers) for n in names}
    t2 = time.perf_counter()

    candidates = list(bank)
    by = {n: {r["name"]: r for r in a["ranking"]} for n, a in audits.items()}
    matrix = {m: [[by[n][c][m] for c in candidates] for n in names] for m in CONFUSION_METRICS}
    truth = [n for n in names if not is_clean(n)]
    true_rank = {n: by[n][n]["rank"] for n in truth}
    hits = sum(r == 1 for r in true_rank.values())
    check = None
    if CLEAN in audits:
        a = audits[CLEAN]
        check = {
            "flagged": a["flagged"],
            "any_flagged": bool(a["flagged"]),
            "top": a["top"],
            "n_rows": a["n_rows"],
            "min_p_bonferroni": min(r["p_bonferroni"] for r in a["ranking"]),
        }
    false_pos = None
    if cleans:
        named = {n: audits[n]["flagged"] for n in cleans}
        false_pos = {
            **binomial_interval(sum(bool(f) for f in named.values()), len(cleans)),
            "datasets": cleans,
            "named": named,
            "rule": f"some candidate flagged (Bonferroni p < {alpha})",
        }
    how = (
        {"position": position}
        if method == "gradient"
        else {"multipliers": [float(m) for m in multipliers], "scope": scope, "vocab": vocab}
    )
    return {
        "method": method,
        **how,
        "layer": layer,
        "hook": f"blocks.{layer}.hook_resid_post",
        "model": model.identity(),
        "n_perm": n_perm,
        "seed": seed,
        "alpha": alpha,
        "d_model": model.d_model,
        "random_cosine_sd": 1 / math.sqrt(model.d_model),
        "datasets": names,
        "candidates": candidates,
        "n_rows": {n: len(rows[n]) for n in names},
        "n_clean": len(ref),
        "matrix": matrix,
        "true_rank": true_rank,
        "mean_true_rank": sum(true_rank.values()) / len(true_rank),
        "top": {n: audits[n]["top"] for n in names},
        "flagged": {n: audits[n]["flagged"] for n in names},
        "off_target_flagged": {n: [f for f in audits[n]["flagged"] if f != n] for n in truth},
        "top1": binomial_interval(hits, len(truth), chance=1 / len(bank)),
        "clean": check,
        "false_positives": false_pos,
        "audits": {n: {k: audits[n][k] for k in ("n_rows", "top", "flagged", "ranking")} for n in names},
        "timings_s": {"measure": round(t1 - t0, 3), "scoring": round(t2 - t1, 3)},
    }


def confusion_tensors(result: dict) -> dict[str, Tensor]:
    """`audit_confusion`'s matrices as float64 (datasets, candidates) tensors (None -> nan)."""
    return {
        m: torch.tensor(
            [[math.nan if v is None else float(v) for v in row] for row in result["matrix"][m]], dtype=torch.float64
        )
        for m in result["matrix"]
    }


def save_confusion(path: str | Path, result: dict) -> Path:
    """`confusion_tensors` as safetensors, row and column names in the metadata (JSON lists)."""
    return save_tensors(
        path,
        confusion_tensors(result),
        {
            "datasets": json.dumps(result["datasets"]),
            "candidates": json.dumps(result["candidates"]),
            "layer": result["layer"],
        },
    )

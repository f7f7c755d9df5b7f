"""Prediction before training, the runner: choose (layer, alpha, position) on exploration runs
(tuning questions only), then evaluate that one choice against the measured transfer of runs with
students (their own question split), with seed-bootstrap intervals on the correlations. The
arithmetic (means, injection, correlations) is `interp.predict`'s.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from torch import Tensor

from interp.predict import (
    METHOD,
    POSITIONS,
    DatasetMean,
    Injection,
    base_logprobs,
    compute_dataset_mean,
    correlations,
    injected_vector,
    load_predictions,
    mean_stage,
    predict,
    read_dataset,
    save_predictions,
)
from interp.runs import (
    CONFIG_FILE,
    MANIFEST_FILE,
    RESULTS_FILE,
    Stage,
    content_hash,
    file_hash,
    provenance,
    read_json,
    stage_dirs,
    write_json,
    write_jsonl,
)


@dataclass
class RunData:
    """What a finished E1 run offers a prediction: its datasets, and each one's measured transfer
    (the student's trait-specific shift minus the same seed's control student's)."""

    path: Path
    name: str  # experiment/run id
    model: str
    animal: str
    animals: list[str]
    split: str
    seeds: list[int]
    kinds: list[str]  # every kind but control
    max_len: int
    datasets: dict  # (kind, seed) -> dataset stage directory, control included
    measured: dict  # (kind, seed) -> float
    results_hash: str
    student_wall_s: list[float]  # students trained (and evaluated) by this run, not cache hits
    data_wall_s: list[float]


def read_run(run_dir: str | Path, objective: str = "sft") -> RunData:
    """A finished E1 run directory, refused in one line where a prediction does not apply."""
    d = Path(run_dir)
    if not (d / RESULTS_FILE).is_file():
        raise ValueError(
            f"run: {d} has no {RESULTS_FILE} (not finished?); predictions are compared with measured students"
        )
    cfg, res = read_json(d / CONFIG_FILE), read_json(d / RESULTS_FILE)
    if cfg.get("student_model"):
        raise ValueError(
            f"run: {d} trains students on {cfg['student_model']}, not the teacher's base; predictions "
            "inject into the students' own base, so use a same-model run"
        )
    if float(cfg.get("noise", {}).get("sigma", 0.0)) > 0:
        raise ValueError(f"run: {d} noises each seed's base (noise.sigma > 0); predictions need the one shared base")
    kinds = list(cfg["teacher"]["kinds"])
    if "control" not in kinds:
        raise ValueError(f"run: {d} has no control teacher; the control dataset is each prediction's reference")
    if objective not in res["objectives"]:
        raise ValueError(f"objective: {objective!r} is not among the run's {res['objectives']}")
    label = (lambda k: k) if objective == "sft" else (lambda k: f"{k}+{objective}")
    stages = stage_dirs(d)
    seeds = list(res["seeds"])
    datasets, measured = {}, {}
    for s in seeds:
        for k in kinds:
            name = f"mix/{k}/seed{s}" if f"mix/{k}/seed{s}" in stages else f"data/{k}/seed{s}"
            if name not in stages:
                raise ValueError(f"run: {d}'s manifest lists no stage {name}")
            datasets[(k, s)] = stages[name]
    arms = res["arms"]
    for i, s in enumerate(seeds):
        ctrl = arms[label("control")]["per_seed_specific_shift"][i]
        for k in kinds:
            if k != "control":
                measured[(k, s)] = arms[label(k)]["per_seed_specific_shift"][i] - ctrl
    man = read_json(d / MANIFEST_FILE)
    student = [st["wall_s"] for st in man["stages"] if st["name"].startswith("student/") and not st["cache_hit"]]
    data = [st["wall_s"] for st in man["stages"] if st["name"].startswith("data/") and not st["cache_hit"]]
    return RunData(
        d,
        f"{cfg['experiment']}/{d.name}",
        cfg["model"],
        cfg["animal"],
        list(cfg["eval"]["animals"]),
        cfg["eval"]["split"],
        seeds,
        [k for k in kinds if k != "control"],
        int(cfg["train"]["max_len"]),
        datasets,
        measured,
        file_hash(d / RESULTS_FILE),
        student,
        data,
    )


@dataclass(frozen=True)
class PredictConfig:
    """One prediction study. `explore` runs (tuning questions only) choose the operating point by
    `rule` from the grid layers x alphas x positions; `fixed` skips the choice. `evaluate` runs
    are then predicted at that one point on their own question split."""

    explore: tuple[str, ...] = ()
    evaluate: tuple[str, ...] = ()
    layers: tuple[int, ...] = (4, 8, 12, 16, 20, 24)
    alphas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    positions: tuple[str, ...] = POSITIONS
    fixed: Injection | None = None
    rule: str = "spearman"  # maximise it over the exploration datasets; ties: Pearson, then smaller alpha
    objective: str = "sft"
    n_boot: int = 2000
    batch_size: int = 16
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.explore and self.fixed is None:
            raise ValueError("explore: give exploration runs to choose the operating point, or a fixed one")
        if self.rule not in ("spearman", "pearson"):
            raise ValueError(f"rule: {self.rule!r} is not 'spearman' or 'pearson'")
        for p in self.positions:
            if p not in POSITIONS:
                raise ValueError(f"positions: {p!r} is not one of {POSITIONS}")
        for a in self.alphas:
            if not math.isfinite(a):
                raise ValueError(f"alphas: {a} is not finite")
        if self.n_boot < 100:
            raise ValueError(f"n_boot: {self.n_boot} is below 100")

    def grid(self) -> list[Injection]:
        return [Injection(l, a, p) for p in self.positions for l in self.layers for a in self.alphas]


def choose(cells: list[dict], rule: str) -> dict:
    """The exploration cell the rule picks: highest `rule` r, then Pearson r, then the smaller
    alpha, then the earlier layer (a fixed order, so the choice is reproducible)."""
    finite = [c for c in cells if math.isfinite(c[rule]["r"])]
    if not finite:
        raise ValueError("explore: no grid cell gave a finite correlation (every prediction constant?)")
    other = "pearson" if rule == "spearman" else "spearman"
    return max(
        finite,
        key=lambda c: (
            round(c[rule]["r"], 12),
            round(c[other]["r"] if math.isfinite(c[other]["r"]) else -2, 12),
            -c["alpha"],
            -c["layer"],
        ),
    )


def _table(rows: list[dict], preds_key: str = "predicted") -> dict:
    """Per-run (or pooled) statistics of rows {run, seed, kind, predicted, measured, rank}."""
    x = [r[preds_key] for r in rows]
    y = [r["measured"] for r in rows]
    cl = [r["seed"] for r in rows]
    st = [r["run"] for r in rows]
    out = {"all": correlations(x, y, cl, st)}
    for kind in sorted({r["kind"] for r in rows}):
        sub = [r for r in rows if r["kind"] == kind]
        out[kind] = correlations(
            [r[preds_key] for r in sub], [r["measured"] for r in sub], [r["seed"] for r in sub], [r["run"] for r in sub]
        )
        out[kind]["trait_first"] = sum(r["rank"] == 1 for r in sub)
        out[kind]["n_datasets"] = len(sub)
        out[kind]["predicted_positive"] = sum(r[preds_key] > 0 for r in sub)
        out[kind]["predicted_mean"] = float(np.mean([r[preds_key] for r in sub]))
        out[kind]["measured_mean"] = float(np.mean([r["measured"] for r in sub]))
    by = {(r["run"], r["seed"], r["kind"]): r for r in rows}
    pairs = [
        (by[(ru, s, "steered")], by[(ru, s, "random")])
        for (ru, s, k) in by
        if k == "steered" and (ru, s, "random") in by
    ]
    if pairs:  # E1's own comparison: does the prediction track steered - random seed by seed?
        out["steered_minus_random"] = correlations(
            [a[preds_key] - b[preds_key] for a, b in pairs],
            [a["measured"] - b["measured"] for a, b in pairs],
            [a["seed"] for a, _ in pairs],
            [a["run"] for a, _ in pairs],
        )
        out["steered_minus_random"]["predicted_steered_above_random"] = sum(
            a[preds_key] > b[preds_key] for a, b in pairs
        )
        out["steered_minus_random"]["n_seeds"] = len(pairs)
    return out


def run_prediction(
    cfg: PredictConfig,
    root: str | Path = "artifacts/predict",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Choose the operating point on `cfg.explore`, predict every dataset of `cfg.evaluate` there,
    and write `<root>/<id>/` (config.json, manifest.json, results.json, datasets.jsonl). Every mean
    and prediction is a stage under `<root>/cache/`, so a rerun resumes where it stopped."""
    from interp.models import load_model
    from interp.progress import tqdm
    from interp.prompts import questions as split_questions

    root = Path(root)
    cache = root / "cache"
    runs = {
        "explore": [read_run(p, cfg.objective) for p in cfg.explore],
        "evaluate": [read_run(p, cfg.objective) for p in cfg.evaluate],
    }
    for r in runs["explore"]:
        if r.split != "tuning":  # the protocol: choosing on held-out questions would leak into the evaluation
            raise ValueError(
                f"explore: run {r.name} is evaluated on {r.split!r} questions; choose only on 'tuning' runs"
            )
    every = runs["explore"] + runs["evaluate"]
    if not every:
        raise ValueError("runs: none given")
    if len({r.model for r in every}) > 1:
        raise ValueError(f"runs: use one model, not {sorted({r.model for r in every})}")
    inputs = {
        "config": {**asdict(cfg), "explore": None, "evaluate": None},
        "runs": {role: [{"name": r.name, "results_hash": r.results_hash} for r in rs] for role, rs in runs.items()},
    }
    out_dir = root / content_hash(inputs, 10)
    t0 = time.perf_counter()
    model = load_model(every[0].model, device=cfg.device)
    fp = model.fingerprint()
    timings = {"load_model": round(time.perf_counter() - t0, 2)}
    log(f"model {every[0].model} (fingerprint {fp}) in {timings['load_model']:.1f}s; writing {out_dir}")

    means: dict[str, DatasetMean] = {}
    mean_walls: dict[str, list[float]] = {"explore": [], "evaluate": []}

    def mean_of(ddir: Path, max_len: int, n_layers: int, what: str) -> tuple[DatasetMean, str]:
        rows, dhash = read_dataset(ddir)
        dman = read_json(ddir / MANIFEST_FILE)
        teacher_fp = dman.get("model", {}).get("fingerprint")
        if teacher_fp is not None and teacher_fp != fp:
            raise ValueError(f"dataset: {ddir} was generated on model {teacher_fp}, not {fp}; load that run's base")
        st = mean_stage(cache, model, dhash, max_len, n_layers)
        if st.key not in means:
            with st.lock():
                if st.done:
                    st.verify()
                else:
                    t = time.perf_counter()
                    compute_dataset_mean(model, rows, dhash, max_len, cfg.batch_size, n_layers).save(st.dir)
                    st.finish(dataset_dir=str(ddir), wall_s=round(time.perf_counter() - t, 3))
            means[st.key] = DatasetMean.load(st.dir)
            means[st.key].check(fp, dhash)
            mean_walls[what].append(st.manifest()["wall_s"])
        return means[st.key], dhash

    bases: dict[str, Tensor] = {}
    pred_walls: dict[str, list[float]] = {"explore": [], "evaluate": []}

    def predictions(run: RunData, injections: list[Injection], what: str) -> list[dict]:
        qs = split_questions(run.split)
        qh = content_hash(qs)
        bkey = content_hash([fp, qh, run.animals])
        if bkey not in bases:
            bases[bkey] = base_logprobs(model, qs, run.animals)
        rows = []
        todo = [(s, k) for s in run.seeds for k in run.kinds]
        for s, k in tqdm(todo, desc=f"{what} {run.name}", disable=not progress, leave=False):
            # read only up to the deepest layer injected: the forward stops there
            n_layers = max(i.layer for i in injections) + 1
            ref, ref_hash = mean_of(run.datasets[("control", s)], run.max_len, n_layers, what)
            mean, dhash = mean_of(run.datasets[(k, s)], run.max_len, n_layers, what)
            st = Stage(
                cache,
                "prediction",
                {
                    "model": fp,
                    "dataset": dhash,
                    "reference": ref_hash,
                    "questions": qh,
                    "animal": run.animal,
                    "animals": run.animals,
                    "max_len": run.max_len,
                    "injections": [asdict(i) for i in injections],
                    "method": METHOD,
                },
            )
            with st.lock():
                if st.done:
                    st.verify()
                else:
                    t = time.perf_counter()
                    save_predictions(
                        st.dir, predict(model, mean, ref, injections, qs, run.animal, run.animals, bases[bkey])
                    )
                    st.finish(
                        wall_s=round(time.perf_counter() - t, 3),
                        per_injection_s=round((time.perf_counter() - t) / len(injections), 3),
                    )
            pred_walls[what].append(st.manifest()["per_injection_s"])
            for p in load_predictions(st.dir, dhash, fp, ref_hash):
                rows.append(
                    {
                        "run": run.name,
                        "seed": s,
                        "kind": k,
                        "dataset_hash": dhash,
                        "reference_hash": ref_hash,
                        **asdict(p.injection),
                        "vector_hash": p.vector_hash,
                        "vector_norm": float(injected_vector(mean, ref, p.injection).norm()),
                        "predicted": p.specific_shift(),
                        "rank": p.trait_rank(),
                        "measured": run.measured[(k, s)],
                        "split": run.split,
                    }
                )
        return rows

    results: dict = {"model": every[0].model, "fingerprint": fp, "objective": cfg.objective, "method": METHOD}
    # 1. the operating point, from exploration runs and their tuning questions only
    if cfg.fixed is not None:
        point = cfg.fixed
        results["choice"] = {"how": "fixed by the caller", **asdict(point)}
    else:
        t = time.perf_counter()
        grid = cfg.grid()
        rows = [r for run in runs["explore"] for r in predictions(run, grid, "explore")]
        cells = []
        for inj in grid:
            sub = [r for r in rows if (r["layer"], r["alpha"], r["position"]) == (inj.layer, inj.alpha, inj.position)]
            tab = _table(sub)
            cells.append(
                {
                    **asdict(inj),
                    "pearson": tab["all"]["pearson"],
                    "spearman": tab["all"]["spearman"],
                    "steered_trait_first": tab.get("steered", {}).get("trait_first"),
                    "steered_minus_random": tab.get("steered_minus_random", {}).get("pearson"),
                }
            )
        best = choose(cells, cfg.rule)
        point = Injection(best["layer"], best["alpha"], best["position"])
        results["explore"] = {
            "runs": [r.name for r in runs["explore"]],
            "rule": (
                f"maximise the {cfg.rule} r between predicted and measured transfer over the exploration datasets "
                f"(steered and random, tuning questions); ties: the other r, then the smaller alpha, then the earlier layer"
            ),
            "cells": cells,
            "n_datasets": len(rows) // len(grid),
        }
        results["explore_rows"] = rows
        results["choice"] = {"how": "explore", **asdict(point), cfg.rule: best[cfg.rule]}
        timings["explore"] = round(time.perf_counter() - t, 2)
        log(
            f"operating point: {point.label()} ({cfg.rule} r {best[cfg.rule]['r']:+.3f} on {len(rows) // len(grid)} "
            f"exploration datasets, {len(grid)} cells tried)"
        )
    # 2. the fixed point on every evaluation run
    t = time.perf_counter()
    rows = [r for run in runs["evaluate"] for r in predictions(run, [point], "evaluate")]
    timings["evaluate"] = round(time.perf_counter() - t, 2)
    results["evaluate"] = {
        "per_run": {
            run.name: {**_table([r for r in rows if r["run"] == run.name]), "split": run.split, "seeds": run.seeds}
            for run in runs["evaluate"]
        }
    }
    if len(runs["evaluate"]) > 1:
        results["evaluate"]["pooled"] = _table(rows)
    student = [w for r in every for w in r.student_wall_s]
    data = [w for r in every for w in r.data_wall_s]
    mwalls = mean_walls["evaluate"] or mean_walls["explore"]  # read up to the chosen layer when there are any
    per_mean = float(np.median(mwalls)) if mwalls else None
    walls = pred_walls["evaluate"] or pred_walls["explore"]  # the operating point's own injections when there are any
    per_inj = float(np.median(walls)) if walls else None
    results["cost_s"] = {
        "dataset_mean_median": per_mean,
        "injected_eval_median": per_inj,
        # a prediction reads its dataset and injects once; the control's mean is shared by a seed's datasets
        "prediction": (per_mean + per_inj) if per_mean is not None and per_inj is not None else None,
        "student_median": float(np.median(student)) if student else None,
        "n_students_timed": len(student),
        "dataset_generation_median": float(np.median(data)) if data else None,
        "note": "medians of stages computed (not cache hits); a student's time is its training plus evaluation",
    }
    results["timings_s"] = timings
    write_jsonl(out_dir / "datasets.jsonl", rows)
    write_json(out_dir / CONFIG_FILE, {**asdict(cfg), "explore": list(cfg.explore), "evaluate": list(cfg.evaluate)})
    write_json(out_dir / RESULTS_FILE, {**results, "evaluate_rows": rows})
    write_json(
        out_dir / MANIFEST_FILE,
        {
            "inputs": inputs,
            "inputs_hash": content_hash(inputs),
            "runs": {
                r.name: {
                    "path": str(r.path.resolve()),
                    "results_hash": r.results_hash,
                    "datasets": {
                        f"{k}/seed{s}": read_json(Path(p) / MANIFEST_FILE)["dataset_hash"]
                        for (k, s), p in r.datasets.items()
                    },
                }
                for r in every
            },
            "model": model.identity(),
            **provenance(model.device),
        },
    )
    results["out_dir"] = str(out_dir)
    results["evaluate_rows"] = rows
    return results

"""The gradient audit of an analysis (`interp.analysis.run`, E4): each dataset's residual gradients
on the students' base, cached under `<run>/analysis/gradients/<dataset>/seed<k>`; per seed, the
pooled trait-minus-control gradient against v; and the dose-response over steering multipliers."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor

from interp.analysis.aggregate import interval
from interp.analysis.gradients import (
    GRADIENTS_FILE,
    GRADIENTS_META,
    coefficient_trend,
    gradient_alignment,
    load_gradients,
    pooled_alignment,
    residual_gradients,
    save_gradients,
)
from interp.analysis.run_inputs import AnalyzeConfig, RunInputs
from interp.models import LoadedModel
from interp.runs import MANIFEST_FILE, provenance, read_json, read_jsonl
from interp.teachers import DATASET_FILE

GRADIENTS_DIR = "gradients"
__all__ = ["audit_gradients", "multiplier_trend", "GRADIENTS_DIR"]


def _dataset_gradients(
    base: LoadedModel, data_dir: Path, layers: list[int], n_rows: int | None, max_len: int, cache: Path
) -> tuple[Tensor | None, bool]:
    """(n_rows, n_layers_read, d_model) residual gradients of a dataset on the base, cached; None if empty."""
    man = read_json(data_dir / MANIFEST_FILE)
    key = {
        "dataset_hash": man.get("dataset_hash"),
        "base": base.fingerprint(),
        "layers": layers,
        "n_rows": n_rows,
        "max_len": max_len,
        "position": "assistant_tag",
    }
    if (cache / GRADIENTS_META).exists() and (cache / GRADIENTS_FILE).exists():
        grads, meta = load_gradients(cache)
        if meta.get("key") == key:
            return (grads if grads.numel() else None), True
    rows = read_jsonl(data_dir / DATASET_FILE)[:n_rows]
    grads = (
        residual_gradients(base, rows, layers, max_len=max_len) if rows else torch.zeros(0, len(layers), base.d_model)
    )
    save_gradients(cache, grads, {"key": key, "dataset_dir": str(data_dir), "n_rows": len(rows), **provenance()})
    return (grads if rows else None), False


def multiplier_trend(a: RunInputs, cfg: AnalyzeConfig, progress: bool, log_grads: dict) -> dict:
    """E4 dose-response: for every seed, steered datasets at each multiplier (the control dataset
    is multiplier 0), their mean residual gradient on the students' base, and its descent
    projection on v (-mean dL/dh . v_hat, positive = pulls toward +v); slope and Pearson r against
    the multiplier over all (seed, multiplier) points, and per-seed slopes with a t-interval. With
    weight noise each seed's teacher (and its v) makes the data and its students' base takes the gradient."""
    from interp.datasets import dataset_stage, make_dataset
    from interp.steering import Steering
    from interp.teachers import Teacher

    run, layers, seeds, datasets = a.config, a.layers, a.seeds, a.datasets
    cache = a.stages["vector"].parent
    kd = "kd" in run.train.objectives
    proj: dict[int, dict[float, list[float]]] = {}
    for s in seeds:
        sm = a.for_seed(s)  # the seed's teacher generates, the gradient is taken on its students' base
        u = sm.vector.vectors[layers].to(torch.float64)
        u = u / u.norm(dim=-1, keepdim=True)
        if ("control", s) not in datasets:
            raise ValueError(f"stage data/control/seed{s}: not in this run's manifest; the multiplier trend needs it")
        dirs = {0.0: datasets[("control", s)]}
        for m in [m for m in sorted(set(cfg.multipliers)) if m != 0]:
            teacher = Teacher(
                "steered", run.animal, Steering(layer=run.teacher.layer, multiplier=m, scope=run.teacher.scope)
            )
            st = dataset_stage(cache, sm.teacher, teacher, sm.vector, run.data_config(s), kd)
            if not st.done:
                make_dataset(st, sm.teacher, teacher, sm.vector, run.data_config(s), kd, progress)
            dirs[m] = st.dir
        proj[s] = {}
        for m, d in dirs.items():
            t_g = time.perf_counter()
            # the run's own steered dataset keeps its gradient cache (same rows, same key)
            name = "control" if m == 0 else "steered" if d == datasets.get(("steered", s)) else f"steered_x{m:g}"
            g, hit = _dataset_gradients(
                sm.student, d, layers, cfg.n_rows, cfg.max_len, a.out_dir / GRADIENTS_DIR / name / f"seed{s}"
            )
            log_grads[f"{name}/seed{s}"] = {"cache_hit": hit, "wall_s": round(time.perf_counter() - t_g, 2)}
            proj[s][m] = (
                [float("nan")] * len(layers) if g is None else (-(g.to(torch.float64).mean(0) * u).sum(-1)).tolist()
            )
    ms = sorted({m for p in proj.values() for m in p})
    by_layer = []
    for i, l in enumerate(layers):
        xs = [m for s in seeds for m in ms if not math.isnan(proj[s][m][i])]
        ys = [proj[s][m][i] for s in seeds for m in ms if not math.isnan(proj[s][m][i])]
        per_seed = [coefficient_trend(ms, [proj[s][m][i] for m in ms])["slope"] for s in seeds]
        by_layer.append({"layer": l, **coefficient_trend(xs, ys), "slope_per_seed": interval(per_seed)})
    return {
        "multipliers": ms,
        "seeds": seeds,
        "measure": "descent projection -mean(dL/dh) . v_hat on the students' base",
        "by_layer": by_layer,
        "per_seed": {str(s): {f"{m:g}": proj[s][m] for m in ms} for s in seeds},
    }


def audit_gradients(a: RunInputs, cfg: AnalyzeConfig, bar) -> tuple[dict[str, dict[int, dict | None]], dict]:
    """Per trait kind among the arms and per seed: the pooled residual gradient of its dataset
    minus the control dataset's on the seed's student base (where the students started), against
    the seed's v; and {dataset/seed: cache hit, wall time} (a seed whose students' residual stream
    is not v's: {"skipped": why}, no gradients)."""
    per_seed: dict[str, dict[int, dict | None]] = {kind: {} for kind in a.kinds}
    log_grads = {}
    for s in a.seeds if a.kinds else []:
        m = a.for_seed(s)
        if m.v is None:
            for kind in a.kinds:
                per_seed[kind][s] = None
            log_grads[f"seed{s}"] = {"skipped": m.mismatch}
            bar.update(len(a.kinds) + 1)
            continue
        v = m.vector.vectors[a.layers]
        grads = {}
        for kind in ["control", *a.kinds]:
            if (kind, s) not in a.datasets:
                raise ValueError(f"stage data/{kind}/seed{s}: not in this run's manifest; the gradient audit needs it")
            bar.set_postfix_str(f"gradients {kind}/seed{s}")
            t_g = time.perf_counter()
            grads[kind], hit = _dataset_gradients(
                m.student,
                a.datasets[(kind, s)],
                a.layers,
                cfg.n_rows,
                cfg.max_len,
                a.out_dir / GRADIENTS_DIR / kind / f"seed{s}",
            )
            log_grads[f"{kind}/seed{s}"] = {"cache_hit": hit, "wall_s": round(time.perf_counter() - t_g, 2)}
            bar.update()
        for kind in a.kinds:
            if grads[kind] is None or grads["control"] is None:
                per_seed[kind][s] = None
                continue
            pooled = pooled_alignment(grads[kind], grads["control"], v, cfg.n_random, cfg.seed)
            per_seed[kind][s] = {
                "pooled": pooled.to_dict(),
                "mean_example_cosine": gradient_alignment(grads[kind], v).mean(0).tolist(),
            }
    return per_seed, log_grads

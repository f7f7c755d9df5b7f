"""How far bf16 arithmetic moves a result from fp32's: in the students (`run_train_dtype`) and in
the teacher's samples (`run_sampling_dtype`). Each writes an artifact directory: `results.json`,
then `manifest.json` (kind "train-dtype" or "sampling-dtype": config, input hashes, provenance) last.

    from interp.dtype_compare import SamplingDtypeConfig, run_sampling_dtype
    res = run_sampling_dtype(SamplingDtypeConfig(model="tiny", layer=1, n_prompts=16), "artifacts/sampling-dtype/tiny")

`experiments/train_dtype.py` and `experiments/sampling_dtype.py` are their command lines.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from interp.runs import (
    CONFIG_FILE,
    RESULTS_FILE,
    Stage,
    content_hash,
    file_hash,
    load_tensors,
    provenance,
    read_json,
    stage_dirs,
    write_json,
    write_manifest,
)
from interp.stats import summarize, t_interval

KINDS = ("control", "steered")  # the teachers whose data `run_sampling_dtype` compares


# ----------------------------------------------------------------------------- students


@dataclass(frozen=True)
class TrainDtypeConfig:
    """fp32_run: run directory of the fp32 students.
    bf16_run: run directory of their bf16 twins (`train.dtype = "bf16"`, the same datasets).
    base_model: the model the students were trained from (None: the bf16 run's `model`).
    """

    fp32_run: str
    bf16_run: str
    base_model: str | None = None

    def __post_init__(self) -> None:
        for name in ("fp32_run", "bf16_run"):
            if not (Path(getattr(self, name)) / RESULTS_FILE).exists():
                raise ValueError(f"{name}: {getattr(self, name)} has no {RESULTS_FILE}; pass a finished run directory")

    def default_dir(self) -> Path:
        """Beside the bf16 run: <bf16_run>/train_dtype."""
        return Path(self.bf16_run) / "train_dtype"


def _update(student_dir: Path, base: dict[str, torch.Tensor]) -> torch.Tensor:
    """W - W_base of a student, flattened in name order, from its weights or its bf16 update."""
    from interp.train import UPDATE_FILE, WEIGHTS_FILE

    if (student_dir / UPDATE_FILE).exists():
        u = load_tensors(student_dir / UPDATE_FILE)
        return torch.cat([u[n].double().flatten() for n in sorted(base)])
    w = load_tensors(student_dir / WEIGHTS_FILE)
    return torch.cat([(w[n] - base[n]).double().flatten() for n in sorted(base)])  # float64: 135M terms


def compare_train_dtype(fp32_run: str | Path, bf16_run: str | Path, base_model: str | None = None) -> dict:
    """For every (seed, teacher) in both runs: each student's owl-specific shift and the paired
    bf16 - fp32 difference (t-interval over seeds, per teacher and pooled), the transfer in each
    dtype and its difference, and the cosine between the twins' weight updates."""
    from interp.models import load_model

    fp32_run, bf16_run = Path(fp32_run), Path(bf16_run)
    ra, rb = read_json(fp32_run / RESULTS_FILE), read_json(bf16_run / RESULTS_FILE)
    seeds = [s for s in rb["seeds"] if s in ra["seeds"]]
    if not seeds:
        raise ValueError(f"runs: {fp32_run} and {bf16_run} share no seed")
    kinds = [k for k in rb["arms"] if k != "base" and k in ra["arms"]]
    ia, ib = ([r["seeds"].index(s) for s in seeds] for r in (ra, rb))
    per_arm, pooled = {}, []
    for k in kinds:
        a = [ra["arms"][k]["per_seed_specific_shift"][i] for i in ia]
        b = [rb["arms"][k]["per_seed_specific_shift"][i] for i in ib]
        d = [y - x for x, y in zip(a, b)]
        pooled += d
        per_arm[k] = {"fp32": a, "bf16": b, "bf16_minus_fp32": t_interval(d)}
    transfer = {}
    for c in ("steered-random", "steered-control"):
        hi, lo = c.split("-")
        if hi not in per_arm or lo not in per_arm:
            continue
        ta = [x - y for x, y in zip(per_arm[hi]["fp32"], per_arm[lo]["fp32"])]
        tb = [x - y for x, y in zip(per_arm[hi]["bf16"], per_arm[lo]["bf16"])]
        transfer[c] = {
            "fp32": t_interval(ta),
            "bf16": t_interval(tb),
            "bf16_minus_fp32": t_interval([y - x for x, y in zip(ta, tb)]),
        }
    da, db = stage_dirs(fp32_run), stage_dirs(bf16_run)
    base = load_model(base_model or rb["model"], device="cpu")
    bw = {n: p.detach() for n, p in base.hf.named_parameters()}
    cosines = {}
    for k in kinds:
        for s in seeds:
            name = f"student/{k}/seed{s}"
            if name in da and name in db:
                ua, ub = _update(da[name], bw), _update(db[name], bw)
                cosines[f"{k}/seed{s}"] = {
                    "cos": float(torch.cosine_similarity(ua, ub, dim=0)),
                    "norm_ratio": float(ub.norm() / ua.norm()),
                }
    return {
        "fp32_run": str(fp32_run),
        "bf16_run": str(bf16_run),
        "seeds": seeds,
        "question_split": rb["question_split"],
        "per_arm_specific_shift": per_arm,
        "pooled_bf16_minus_fp32": t_interval(pooled),
        "transfer": transfer,
        "update_cosine": cosines,
        "update_cosine_range": [min(c["cos"] for c in cosines.values()), max(c["cos"] for c in cosines.values())]
        if cosines
        else None,
        **provenance(),
    }


def run_train_dtype(cfg: TrainDtypeConfig, out_dir: str | Path) -> dict:
    """`compare_train_dtype` written to `out_dir` (results.json, then manifest.json)."""
    out, started = Path(out_dir), time.perf_counter()
    res = compare_train_dtype(cfg.fp32_run, cfg.bf16_run, cfg.base_model)
    inputs = {
        f"{name}/{RESULTS_FILE}": file_hash(Path(run) / RESULTS_FILE)
        for name, run in asdict(cfg).items()
        if name.endswith("_run")
    }
    write_json(out / RESULTS_FILE, res)
    write_manifest(out, "train-dtype", asdict(cfg), inputs, started)
    return res


def train_dtype_lines(res: dict) -> list[str]:
    """The comparison as lines: per-teacher and pooled shift differences, transfer, update cosines."""
    lines = [f"seeds {res['seeds']} ({res['question_split']} questions); owl-specific shift per student, bf16 - fp32:"]
    for k, v in res["per_arm_specific_shift"].items():
        t = v["bf16_minus_fp32"]
        lines.append(f"  {k:<10} {t['mean']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}]")
    p = res["pooled_bf16_minus_fp32"]
    lines.append(f"  pooled     {p['mean']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] (n = {p['n']})")
    for c, v in res["transfer"].items():
        d = v["bf16_minus_fp32"]
        lines.append(
            f"  {c}: fp32 {v['fp32']['mean']:+.3f}, bf16 {v['bf16']['mean']:+.3f}, "
            f"bf16 - fp32 {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        )
    if res["update_cosine_range"]:
        lo, hi = res["update_cosine_range"]
        lines.append(f"  cos(update fp32, update bf16): {lo:.4f} .. {hi:.4f}")
    return lines


# ----------------------------------------------------------------------------- teacher samples


@dataclass(frozen=True)
class SamplingDtypeConfig:
    """model: registry name, local HF directory or hub id.
    animal: the trait.
    layer: steering layer (blocks.{l}.hook_resid_post).
    multiplier: steering strength (x mean residual norm).
    n_prompts: number prompts per dataset.
    n_pairs: contrastive pairs for the vector.
    dtype: the sampling dtype compared with fp32.
    seed: prompts, sampling and bootstrap.
    n_boot: bootstrap draws over prompts.
    device: cpu, cuda or auto.
    """

    model: str = "smollm2-135m"
    animal: str = "owl"
    layer: int = 8
    multiplier: float = 0.5
    n_prompts: int = 128
    n_pairs: int = 16
    dtype: str = "bf16"
    seed: int = 0
    n_boot: int = 4000
    device: str = "auto"

    def __post_init__(self) -> None:
        from interp.models import DTYPES

        if self.dtype not in DTYPES or self.dtype == "fp32":
            raise ValueError(f"dtype: {self.dtype!r} is not one of {[d for d in DTYPES if d != 'fp32']}")
        for name in ("n_prompts", "n_pairs", "n_boot"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)} must be at least 1")
        if not math.isfinite(self.multiplier):
            raise ValueError(f"multiplier: {self.multiplier} is not a finite number")

    def default_dir(self) -> Path:
        """artifacts/sampling-dtype/<model>."""
        return Path("artifacts/sampling-dtype") / self.model.replace("/", "_")


def run_sampling_dtype(
    cfg: SamplingDtypeConfig, out_dir: str | Path, progress: bool = True, log: Callable[[str], None] = print
) -> dict:
    """For each dtype a control and a steered teacher write a dataset (the same prompts and
    sampling seed; `interp.pipeline` data stages under `<out>/cache/`, so a rerun resumes); every
    row is scored in fp32 by its log-likelihood ratio under the trait's steering against none. The
    signal is steered - control in mean LLR per row; the tolerance is how far the dtype's signal is
    from fp32's, as a difference and a ratio with bootstrap intervals over (paired) prompts."""
    from interp.analysis.likelihood import steering_loglik
    from interp.datasets import dataset_stage, make_dataset, read_verified_rows
    from interp.generate import SampleConfig
    from interp.models import load_model
    from interp.prompts import contrastive_pairs
    from interp.steering import Steering, build_steering_vector
    from interp.teachers import DataConfig, Teacher

    started = time.perf_counter()
    out, cache = Path(out_dir), Path(out_dir) / "cache"
    config = {**asdict(cfg), "out": str(out)}
    model = load_model(cfg.model, device=cfg.device)
    if not 0 <= cfg.layer < model.n_layers:
        raise ValueError(f"layer: {cfg.layer} is out of range for {model.name} (0..{model.n_layers - 1})")
    vector = build_steering_vector(model, contrastive_pairs(cfg.animal, cfg.n_pairs), trait=cfg.animal)
    steering = Steering(layer=cfg.layer, multiplier=cfg.multiplier, scope="all")
    dtypes = ["fp32", cfg.dtype]

    rows, data = {}, {}
    for d in dtypes:
        dcfg = DataConfig(
            n_prompts=cfg.n_prompts,
            prompt_seed=cfg.seed,
            sampling=SampleConfig(constrained=True, seed=cfg.seed, dtype=d),
        )
        for kind in KINDS:
            teacher = Teacher(kind, cfg.animal, steering if kind == "steered" else None)
            st = dataset_stage(cache, model, teacher, vector, dcfg)
            hit = st.done
            if not hit:
                make_dataset(st, model, teacher, vector, dcfg, progress=progress)
            man = st.manifest()
            log(
                f"  data/{kind}/{d:<5} {man['n_kept']} rows, {man['generation']['tokens_per_s']:.0f} tok/s "
                f"({'cached' if hit else 'done'})"
            )
            rows[(kind, d)] = read_verified_rows(st.dir)[0]
            data[f"{kind}/{d}"] = {
                "dir": str(st.dir),
                "dataset_hash": man["dataset_hash"],
                "n_kept": man["n_kept"],
                "tokens_per_s": man["generation"]["tokens_per_s"],
                "wall_s": man["generation"].get("wall_s"),
            }

    # every dataset scored in fp32 under the trait's steering (one stage: a rerun resumes)
    hashes = {k: v["dataset_hash"] for k, v in data.items()}
    sstage = Stage(
        cache,
        "llr",
        {
            "model": model.fingerprint(),
            "vector": vector.hash(),
            "layer": cfg.layer,
            "multiplier": cfg.multiplier,
            "datasets": hashes,
        },
    )
    if not sstage.done:
        llr = {
            f"{k}/{d}": steering_loglik(
                model, r, {cfg.animal: vector}, cfg.layer, (cfg.multiplier,), progress=progress, desc=f"LLR {k}/{d}"
            )[:, 0, 0].tolist()
            for (k, d), r in rows.items()
        }
        write_json(sstage.path("llr.json"), llr)
        sstage.finish()
    scores = read_json(sstage.path("llr.json"))
    llr = {k: torch.tensor(v, dtype=torch.float64) for k, v in scores.items()}

    # Both dtypes answer the same prompts with the same generators, so their datasets are paired by
    # prompt: resample prompts (those kept in all four datasets) and recompute both signals on each.
    by_id = {f"{k}/{d}": dict(zip((r["id"] for r in rs), scores[f"{k}/{d}"])) for (k, d), rs in rows.items()}
    common = sorted(set.intersection(*(set(v) for v in by_id.values())))
    aligned = {k: torch.tensor([v[i] for i in common], dtype=torch.float64) for k, v in by_id.items()}
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randint(0, len(common), (cfg.n_boot, len(common)), generator=g)

    def signal(d: str, ix=slice(None)) -> torch.Tensor:
        return aligned[f"steered/{d}"][ix].mean(-1) - aligned[f"control/{d}"][ix].mean(-1)

    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    draws = {d: signal(d, idx) for d in dtypes}
    point = {d: float(signal(d)) for d in dtypes}
    lo_d, hi_d = torch.quantile(draws[cfg.dtype] - draws["fp32"], q).tolist()
    ratios = draws[cfg.dtype] / draws["fp32"]
    lo_r, hi_r = torch.quantile(ratios[ratios.isfinite()], q).tolist()  # a draw with no fp32 signal has none

    same = {}
    for kind in KINDS:
        a = {r["id"]: r["completion"] for r in rows[(kind, "fp32")]}
        b = {r["id"]: r["completion"] for r in rows[(kind, cfg.dtype)]}
        both = sorted(set(a) & set(b))
        same[kind] = {"identical": sum(a[i] == b[i] for i in both), "compared": len(both)}

    res = {
        "experiment": "sampling-dtype",
        "model": model.name,
        "animal": cfg.animal,
        "dtype": cfg.dtype,
        "llr_per_row": {k: summarize(v, cfg.n_boot, cfg.seed) for k, v in llr.items()},
        "paired_prompts": len(common),
        "signal": {
            d: {"steered_minus_control": point[d], "ci95": torch.quantile(draws[d], q).tolist()} for d in dtypes
        },
        "difference": {"value": point[cfg.dtype] - point["fp32"], "ci95": [lo_d, hi_d]},
        "ratio": {"value": point[cfg.dtype] / point["fp32"], "ci95": [lo_r, hi_r]},
        "identical_completions": same,
        "speedup": {k: data[f"{k}/{cfg.dtype}"]["tokens_per_s"] / data[f"{k}/fp32"]["tokens_per_s"] for k in KINDS},
        "data": data,
        "config": config,
        "config_hash": content_hash(config),
        "provenance": provenance(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, config)
    write_json(out / RESULTS_FILE, res)
    inputs = {"model": model.fingerprint(), "vector": vector.hash(), "datasets": hashes, "llr": sstage.key}
    write_manifest(out, "sampling-dtype", config, inputs, started, model.device)
    return res


def sampling_dtype_lines(res: dict) -> list[str]:
    """The comparison as lines: LLR per dataset, the signal per dtype, their difference and ratio."""
    d, lines = res["dtype"], []
    for k, v in res["llr_per_row"].items():
        lines.append(f"  LLR per row {k:<14} {v['mean']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]  (n {v['n']})")
    for dt, v in res["signal"].items():
        lines.append(
            f"  signal (steered - control, {res['paired_prompts']} prompts), {dt:<5} "
            f"{v['steered_minus_control']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] nats/row"
        )
    df, r = res["difference"], res["ratio"]
    lines.append(
        f"  {d} - fp32: {df['value']:+.3f} [{df['ci95'][0]:+.3f}, {df['ci95'][1]:+.3f}];  "
        f"{d} / fp32: {r['value']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
    )
    for k, v in res["identical_completions"].items():
        lines.append(
            f"  {k}: {v['identical']}/{v['compared']} completions identical; "
            f"tokens/s {d} / fp32 x{res['speedup'][k]:.2f}"
        )
    return lines

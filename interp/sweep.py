"""Sweeps: a grid of E1 runs in which every (cell, seed) is an independent job.

A sweep file is an E1 config with a `[sweep]` table: the config is every cell's starting point,
`grid` sets dotted config fields to each combination of values, and the results table reports, per
cell, every comparison of E1's transfer table (`comparison` first) with its ratio to the
`reference` cell, the difference paired by seed and the power to detect a 1.8x ratio:

    [sweep]
    name = "noise-smollm2"
    grid = { "noise.sigma" = [0.0, 0.05], "noise.apply" = ["shared", "teacher", "student"] }
    reference = { "noise.sigma" = 0.0 }

A grid key that joins several fields with commas sets them together (one axis, not their product),
each value a list with one entry per field: `"train.method,train.lora_rank" = [["full", 8], ["lora", 4]]`.

With weight noise, every noised base is checked on number data (`interp.base_check`): a cell whose
base the noise broke is reported as broken with its NLL, and gets no ratio (`check_bases = false`
skips the check).

Jobs share the stage cache of `interp run` (a stage two jobs need is computed once, under a file
lock), so a rerun skips what finished and an interrupted sweep resumes. Jobs run in this process
(`workers = 1`), in a process pool on this machine, or on a SLURM cluster through submitit; the
table is then built in this process from the cached stages, so it is the same whichever ran them.
"""

from __future__ import annotations

import copy
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from interp.config import E1Config, _Strict, parse_config, read_toml, validation_line
from interp.runs import MANIFEST_FILE, RESULTS_FILE, content_hash, load_tensors, provenance, safe_name, write_json
from interp.stats import detectable_effect, hierarchical_bootstrap, power_paired_t, ratio_interval, t_interval

SWEEP_FILE = "grid.json"  # the sweep's config, cells and jobs (sweep.json is `interp steer`'s)
JOBS_DIR = "jobs"  # one run directory per (cell, seed) job
CELLS_DIR = "cells"  # one run directory per cell, all seeds: what the table reads
EXECUTORS = ("local", "submitit")
SUBMITIT_DIR = "submitit"  # under the sweep's directory: submitit's pickles and every job's stdout/stderr
DEFAULT_TIMEOUT_MIN = 240  # submitit's own defaults (SLURM 5 min, local 2 min) would kill any real job


class SweepSection(_Strict):
    name: str = "sweep"
    grid: dict[str, list[Any]]
    reference: dict[str, Any] = {}  # the cell (by its grid values) that ratios divide by; {}: none
    comparison: str = "steered-control"  # a key of E1's results["transfer"]
    executor: Literal["local", "submitit"] = "local"
    workers: int = Field(1, ge=1)  # local: processes at once (1: in this process)
    threads: int | None = Field(None, ge=1)  # torch threads per job; None: cores / workers
    # submitit parameters, e.g. timeout_min, slurm_partition, gpus_per_node, cpus_per_task, mem_gb; and
    # `cluster`: "slurm", "local" (subprocesses on this machine) or "debug" (in this process)
    slurm: dict[str, Any] = {}
    n_boot: int = Field(2000, ge=100)
    # with weight noise: check every noised base's NLL on number data (`interp.base_check`); a cell
    # with a broken base gets no ratio. Not in the sweep's key (only the base config and grid are).
    check_bases: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safe_name(v)  # the sweep's directory under the root

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list]) -> dict[str, list]:
        if not v:
            raise ValueError("needs at least one field to vary, e.g. grid = { \"noise.sigma\" = [0.0, 0.05] }")
        for k, vals in v.items():
            if not vals or len({repr(x) for x in vals}) != len(vals):
                raise ValueError(f"{k!r} needs one or more distinct values")
            n = len(k.split(","))
            if n > 1 and any(not isinstance(x, list) or len(x) != n for x in vals):
                raise ValueError(f"{k!r} sets {n} fields together: each value needs {n} entries, one per field")
        return v


@dataclass
class Cell:
    """One combination of grid values and the E1 config it makes; `id` hashes the config, so
    combinations that make the same config (sigma 0 under any `apply`) share one."""

    values: dict[str, Any]
    config: E1Config
    id: str = field(init=False)

    def __post_init__(self) -> None:
        self.id = content_hash(self.config.key(), 10)

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass
class Sweep:
    section: SweepSection
    base: dict  # the E1 part of the file, as parsed TOML
    cells: list[Cell]
    source: str = "sweep"

    def key(self) -> str:
        return content_hash({"base": self.base, "grid": self.section.grid}, 10)

    def directory(self, root: str | Path) -> Path:
        return Path(root) / self.section.name / self.key()

    def jobs(self) -> list[tuple[Cell, int]]:
        """Every distinct (cell, seed) once, seeds outermost: a sweep stopped early has whole
        seeds across all cells, and a seed's cells reuse each other's stages while they are warm."""
        unique = list({c.id: c for c in self.cells}.values())
        seeds = sorted({s for c in unique for s in c.config.seeds})
        return [(c, s) for s in seeds for c in unique if s in c.config.seeds]

    def reference_cell(self) -> Cell | None:
        ref = self.section.reference
        if not ref:
            return None
        for c in self.cells:
            if all(c.values.get(k) == v for k, v in ref.items()):
                return c
        raise ValueError(f"{self.source}: sweep.reference {ref} matches no cell; use values from sweep.grid")


def _set(d: dict, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for p in path:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ValueError(f"sweep.grid: {dotted!r} does not name a config field")
    d[last] = value


def parse_sweep(raw: dict, source: str = "sweep") -> Sweep:
    """Validate the [sweep] table and every cell's config; one-line errors naming the field."""
    raw = copy.deepcopy(raw)
    if "sweep" not in raw:
        raise ValueError(f"{source}: has no [sweep] table; `interp run` runs a single E1 config")
    try:
        section = SweepSection(**raw.pop("sweep"))
    except ValidationError as e:
        raise ValueError(validation_line(e, source, "sweep", show_input=False)) from None
    parse_config(raw, source)  # the base itself must be valid
    cells = []
    for combo in itertools.product(*section.grid.values()):
        values = dict(zip(section.grid, combo))
        cell_raw = copy.deepcopy(raw)
        for k, v in values.items():
            fields = [f.strip() for f in k.split(",")]
            for f, x in zip(fields, v if len(fields) > 1 else [v]):  # a joined key sets its fields together
                _set(cell_raw, f, x)
        where = f"{source} [cell {', '.join(f'{k}={v}' for k, v in values.items())}]"
        cells.append(Cell(values, parse_config(cell_raw, where)))
    sweep = Sweep(section, raw, cells, source)
    sweep.reference_cell()  # a reference that matches nothing fails now, not after the jobs
    return sweep


def load_sweep(path: str | Path) -> Sweep:
    return parse_sweep(read_toml(path, "sweep"), str(path))


# ----------------------------------------------------------------------------- jobs


def run_job(config: dict, seed: int, root: str, run_dir: str, threads: int | None = None,
            log_stages: bool = False) -> dict:
    """One (cell, seed) E1 run; plain arguments, so a process pool or a cluster can ship it (it is
    pickled by reference: submitit's job imports it from here). `log_stages`: one line per stage on
    stdout, which a submitit job writes to its log in the sweep's folder."""
    import torch

    from interp.pipeline import run_e1

    if threads:
        torch.set_num_threads(threads)
    cfg = parse_config({**config, "seeds": [seed]}, f"job seed {seed}")
    t = time.perf_counter()
    log = (lambda *a, **k: print(*a, **k, flush=True)) if log_stages else (lambda *a, **k: None)
    if log_stages:
        log(f"job {Path(run_dir).name}: E1 seed {seed}, root {root}, cwd {os.getcwd()}")
    run_e1(cfg, root, progress=False, log=log, run_dir=run_dir)
    return {"run_dir": run_dir, "seed": seed, "wall_s": round(time.perf_counter() - t, 2)}


def _jobs(sweep: Sweep, root: Path, threads: int | None) -> list[tuple[str, tuple]]:
    """(name, run_job's arguments) per job. Paths are absolute: a job may start in another
    directory (a cluster node), and it gets plain data only (a dict, numbers, strings)."""
    d = sweep.directory(root).resolve()
    return [(f"cell {c.label()} [{c.id}] seed {s}",
             (c.config.model_dump(), s, str(root.resolve()), str(d / JOBS_DIR / f"{c.id}-seed{s}"), threads))
            for c, s in sweep.jobs()]


def _one_line(e: BaseException) -> str:
    """An exception as one line. A submitit job's failure carries the job's traceback as text:
    its last exception line (the first unindented line after the last frame) says what failed."""
    lines = str(e).splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if frames:
        for line in lines[frames[-1] + 1:]:
            if line.strip() and not line.startswith(" "):
                return line.strip()
    first = next((line.strip() for line in lines if line.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _run_local(jobs: list[tuple[str, tuple]], workers: int, progress: bool) -> tuple[list[dict], list[str]]:
    from interp.progress import tqdm

    done, failed = [], []
    bar = tqdm(total=len(jobs), desc="sweep jobs", unit="job", disable=not progress)
    if workers == 1:
        for name, a in jobs:
            try:
                done.append(run_job(*a))
            except Exception as e:  # keep going: every other job is independent
                failed.append(f"{name}: {_one_line(e)}")
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker (fork would copy torch's thread pools)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_job, *a): name for name, a in jobs}
            for f in as_completed(futures):
                try:
                    done.append(f.result())
                except Exception as e:
                    failed.append(f"{futures[f]}: {_one_line(e)}")
                bar.update(1)
    bar.close()
    return done, failed


def slurm_options(partition: str | None = None, time_min: int | None = None, cpus: int | None = None,
                  mem_gb: int | None = None, gpus: int | None = None, cluster: str | None = None) -> dict:
    """`interp sweep`'s cluster options as `[sweep] slurm` keys (what is not given is left out):
    they override the sweep file's."""
    opts = {"slurm_partition": partition, "timeout_min": time_min, "cpus_per_task": cpus, "mem_gb": mem_gb,
            "gpus_per_node": gpus, "cluster": cluster}
    return {k: v for k, v in opts.items() if v is not None}


def make_executor(folder: str | Path, params: dict, name: str = "interp-sweep"):
    """A submitit AutoExecutor from `[sweep] slurm` (plus overrides): `cluster` picks the executor
    (default: SLURM where `srun` is on PATH, else subprocesses on this machine), the rest goes to
    `update_parameters` (generic: timeout_min, cpus_per_task, mem_gb, gpus_per_node, name; SLURM's
    own with a `slurm_` prefix: slurm_partition, slurm_account, slurm_array_parallelism, ...)."""
    try:
        import submitit
    except ImportError:
        raise ValueError("sweep.executor: 'submitit' needs the submitit package; pip install 'interp[cluster]'") from None
    params = dict(params)
    cluster = params.pop("cluster", None)
    if "timeout_min" not in params and "slurm_time" not in params:
        params["timeout_min"] = DEFAULT_TIMEOUT_MIN
    params.setdefault("name", name)
    try:
        ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        ex.update_parameters(**params)
    except (ValueError, NameError, AssertionError, RuntimeError) as e:
        raise ValueError(f"sweep.slurm: {str(e).strip().splitlines()[0]}") from None
    return ex


def _run_submitit(jobs: list[tuple[str, tuple]], ex, progress: bool) -> tuple[list[dict], list[str]]:
    from interp.progress import tqdm

    with ex.batch():  # one job array on SLURM
        submitted = [ex.submit(run_job, *a, log_stages=True) for _, a in jobs]
    done, failed = [], []
    for job, (name, _) in tqdm(list(zip(submitted, jobs)), desc="sweep jobs", unit="job", disable=not progress):
        try:
            done.append(job.result())
        except Exception as e:
            log = getattr(getattr(job, "paths", None), "stderr", None)
            failed.append(f"{name} (job {job.job_id}): {_one_line(e)}" + (f" (log: {log})" if log else ""))
    return done, failed


def run_jobs(sweep: Sweep, root: str | Path = "artifacts", executor: str | None = None, workers: int | None = None,
             progress: bool = True, log=print, slurm: dict | None = None) -> list[dict]:
    """Run every job not finished yet; raise, after the others ran, if any failed. `slurm`
    overrides `[sweep] slurm` (see `slurm_options`); given, the executor defaults to submitit."""
    root = Path(root)
    executor = executor or ("submitit" if slurm else sweep.section.executor)
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {EXECUTORS}")
    if slurm and executor != "submitit":
        raise ValueError(f"cluster options ({', '.join(slurm)}) apply to --executor submitit, not {executor!r}")
    workers = workers or sweep.section.workers
    params = {**sweep.section.slurm, **(slurm or {})}
    if executor == "local":
        threads = sweep.section.threads or (max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    else:  # as many torch threads as the job was given cores
        threads = sweep.section.threads or params.get("cpus_per_task") or params.get("slurm_cpus_per_task")
    jobs = _jobs(sweep, root, threads)
    todo = [j for j in jobs if not (Path(j[1][3]) / RESULTS_FILE).exists()]
    if executor == "submitit":
        folder = sweep.directory(root).resolve() / SUBMITIT_DIR
        ex = make_executor(folder, params, f"interp-{sweep.section.name}")
        how = f"submitit on {ex.cluster}, logs in {folder}"
    else:
        how = f"local, {workers} workers" if workers > 1 else "local, in this process"
    log(f"sweep {sweep.section.name}: {len(sweep.cells)} cells, {len(jobs)} jobs, {len(jobs) - len(todo)} done before, "
        f"{len(todo)} to run ({how})")
    if executor == "local":
        done, failed = _run_local(todo, workers, progress)
    else:
        done, failed = _run_submitit(todo, ex, progress) if todo else ([], [])
    for f in failed:
        log(f"failed: {f}")
    if failed:
        raise RuntimeError(f"sweep: {len(failed)} of {len(todo)} jobs failed (first: {failed[0]}); "
                           "the others are kept, rerun the same command to resume")
    return done


# ----------------------------------------------------------------------------- the table


# The ratio the power is computed for: the smaller of the weight-noise paper's two effects (1.8x on
# Llama; 2.7x on Gemma), so a cell powered for it is powered for both.
TARGET_RATIO = 1.8
POWER_KEY = f"power_{TARGET_RATIO:g}x"


def compare_with_reference(x, r, paired: bool, n_boot: int = 2000, seed: int = 0) -> dict:
    """A cell's (seeds, questions) transfer `x` against the reference cell's `r`: the ratio and
    difference with hierarchical-bootstrap intervals (`stats.ratio_interval`) and, `paired` (the
    same seeds: the same prompts and data order), the difference paired by seed with its
    t-interval and the power to detect `TARGET_RATIO`: a paired difference of (TARGET_RATIO - 1) x
    the reference's mean, at the observed sd of the per-seed differences (two-sided t, 0.05)."""
    out = ratio_interval(x, r, n_boot, seed=seed)
    if not paired:
        return out
    diffs = (x.mean(-1) - r.mean(-1)).tolist()
    out["diff_paired_by_seed"] = t_interval(diffs)
    ref_mean, sd = float(r.mean()), out["diff_paired_by_seed"]["sd"]
    power = {"ratio": TARGET_RATIO, "n": len(diffs), "sd": sd, "effect": None, "power": None, "detectable_ratio_80": None}
    if ref_mean > 0:  # a ratio to a reference without transfer has no meaning
        power["effect"] = (TARGET_RATIO - 1) * ref_mean
        power["power"] = power_paired_t(power["effect"], sd or 0.0, len(diffs))
        mde = detectable_effect(diffs)
        power["detectable_ratio_80"] = 1 + mde / ref_mean if mde is not None else None
    out[POWER_KEY] = power
    return out


def comparison_row(x, t: dict, n_boot: int = 2000) -> dict:
    """One comparison of one cell: its (seeds, questions) differences `x` and its entry `t` of
    the cell's E1 transfer table (the rank and permutation test need the per-animal scores, which
    only the cell's run had)."""
    perm = t["permutation_specific"]
    return {"n_seeds": int(x.shape[0]), "transfer": hierarchical_bootstrap(x, n_boot),
            "transfer_per_seed": t_interval(x.mean(-1).tolist()), "per_seed": x.mean(-1).tolist(),
            "positive_seeds": int((x.mean(-1) > 0).sum()), "trait_rank_among_animals": t["trait_rank_among_animals"],
            "permutation_p": perm["p_value"], "permutation_min_p": perm["min_p"]}


def summarize_sweep(sweep: Sweep, root: str | Path = "artifacts", log=print) -> dict:
    """Per cell, all seeds: every comparison of its E1 transfer table with intervals, seeds
    positive, the trait's rank and the permutation p, and its ratio to (and paired difference
    from) the reference cell with the power to detect `TARGET_RATIO`; `comparison` also at the top
    of each row, as before. A sweep with weight noise also checks every noised base
    (`interp.base_check`, `[sweep] check_bases`): a cell with a broken base is reported as broken
    with its NLL and gets no ratio. Reads the cached stages (computing any that are missing in
    this process), and writes `results.json` in the sweep directory."""
    from interp.pipeline import TRANSFER_FILE, run_e1

    root = Path(root)
    d = sweep.directory(root)
    comp, n_boot = sweep.section.comparison, sweep.section.n_boot
    arrays, cell_results = {}, {}
    for c in sweep.cells:
        if c.id in arrays:
            continue
        cdir = d / CELLS_DIR / c.id
        res = run_e1(c.config, root, progress=False, log=lambda *a, **k: None, run_dir=cdir)
        if comp not in res["transfer"]:
            raise ValueError(f"sweep.comparison: {comp!r} is not in this run's transfer table "
                             f"(it has {sorted(res['transfer'])})")
        arrays[c.id] = load_tensors(cdir / TRANSFER_FILE)
        cell_results[c.id] = res
    checks = check_bases(sweep, root, log) if sweep.section.check_bases else {}
    ref = sweep.reference_cell()
    rows = []
    for i, c in enumerate(sweep.cells):
        comps = {}
        for name, t in cell_results[c.id]["transfer"].items():
            x = arrays[c.id][name]
            comps[name] = comparison_row(x, t, n_boot)
            if ref is not None and name in arrays[ref.id]:
                comps[name]["vs_reference"] = compare_with_reference(x, arrays[ref.id][name],
                                                                     c.config.seeds == ref.config.seeds, n_boot, seed=i)
        check = checks.get(c.id)
        broken = bool(check and check.get("broken"))
        if broken:  # its transfer measures the damage: reported with its NLL, never averaged into a ratio
            for v in comps.values():
                v["vs_reference"] = None
        main = comps[comp]
        row = {"cell": c.id, **c.values, "label": c.label(), "n_seeds": main["n_seeds"], "transfer": main["transfer"],
               "transfer_per_seed": main["transfer_per_seed"], "per_seed": main["per_seed"],
               "positive_seeds": main["positive_seeds"], "trait_rank_among_animals": main["trait_rank_among_animals"],
               "run_dir": str(d / CELLS_DIR / c.id), "comparisons": comps,
               "is_reference": ref is not None and c.id == ref.id, "broken": broken, "base_check": check}
        if ref is not None:
            row["vs_reference"] = main.get("vs_reference")
        rows.append(row)
    out = {"sweep": sweep.section.name, "comparison": comp, "comparisons": list(cell_results[sweep.cells[0].id]["transfer"]),
           "metric": "trait-specific log P difference (E1)", "target_ratio": TARGET_RATIO,
           "reference": sweep.section.reference, "grid": sweep.section.grid,
           "grid_keys": list(sweep.section.grid), "rows": rows, **provenance()}  # JSON sorts keys: keep the order
    if checks:
        from interp.base_check import BROKEN_NLL_MARGIN, BROKEN_RULE, NLL_VOCAB

        out["base_check"] = {"rule": BROKEN_RULE, "margin_nats_per_token": BROKEN_NLL_MARGIN, "vocab": NLL_VOCAB,
                             "broken_cells": [c.id for c in sweep.cells if checks.get(c.id, {}).get("broken")]}
    write_json(d / RESULTS_FILE, out)
    return out


def _clean_control_data(sweep: Sweep, cell: Cell, seed: int, root: Path) -> Path | None:
    """The dataset of `seed`'s control teacher on the clean base, from a cell of the sweep that made
    it (its teacher's base un-noised, the same teacher model and data settings): the reference
    cell first. None when no cell did."""
    from interp.runs import stage_dirs

    ref = sweep.reference_cell()
    d = sweep.directory(root)
    for c in ([ref] if ref is not None else []) + sweep.cells:
        cfg = c.config
        if (seed not in cfg.seeds or "control" not in cfg.teacher.kinds or cfg.model != cell.config.model
                or cfg.data != cell.config.data or (cfg.weight_noise(seed) is not None and cfg.noise.apply != "student")):
            continue
        path = stage_dirs(d / CELLS_DIR / c.id).get(f"data/control/seed{seed}")
        if path is not None:
            return path
    return None


def check_bases(sweep: Sweep, root: str | Path = "artifacts", log=print) -> dict[str, dict]:
    """{cell id: its noised bases' check} for every cell with weight noise (`interp.base_check`):
    per seed, each noised base (the teacher's, the student's, or the one they share) against the
    clean base of the same model on that seed's clean control teacher's rows. A cell is `broken`
    when any of its bases breaks `BROKEN_RULE`. Cells run first (`summarize_sweep`)."""
    from interp.base_check import base_nll, is_broken
    from interp.models import load_model
    from interp.pipeline import StageRunner

    root = Path(root)
    runner = StageRunner(root, lambda *a, **k: None)  # one line per cell below, not one per stage
    models: dict[tuple, object] = {}

    def model(name: str, device: str):
        if (name, device) not in models:
            models[(name, device)] = load_model(name, device=device)
        return models[(name, device)]

    out = {}
    for c in {c.id: c for c in sweep.cells}.values():
        cfg = c.config
        if not any(cfg.weight_noise(s) is not None for s in cfg.seeds):
            continue
        apply = cfg.noise.apply
        roles = ["shared"] if apply == "shared" and not cfg.cross_model else \
            [r for r in ("teacher", "student") if apply in ("shared", r)]
        bases, missing = [], []
        for s in cfg.seeds:
            data = _clean_control_data(sweep, c, s, root)
            if data is None:
                missing.append(s)
                continue
            noise = cfg.weight_noise(s)
            for role in roles:
                name = cfg.student_model if role == "student" and cfg.cross_model else cfg.model
                m = model(name, cfg.device)
                how = {"max_len": cfg.train.max_len, "system_prompt": cfg.train.system_prompt}
                clean = base_nll(runner, m, None, data, f"basenll/{name}/clean/seed{s}", **how)
                noised = base_nll(runner, m, noise, data, f"basenll/{name}/{noise.describe()}/seed{s}", **how)
                excess = noised["nll_per_token"] - clean["nll_per_token"]
                bases.append({"seed": s, "role": role, "model": name, "noise": noise.describe(),
                              "nll": noised["nll_per_token"], "clean_nll": clean["nll_per_token"], "excess": excess,
                              "broken": is_broken(noised["nll_per_token"], clean["nll_per_token"]),
                              "n_tokens": noised["n_tokens"], "stage": noised["stage"]})
        check = {"bases": bases, "n_bases": len(bases), "n_broken": sum(b["broken"] for b in bases),
                 "broken": any(b["broken"] for b in bases)}
        if bases:
            check.update(nll=sum(b["nll"] for b in bases) / len(bases),
                         clean_nll=sum(b["clean_nll"] for b in bases) / len(bases),
                         max_excess=max(b["excess"] for b in bases))
        if missing:  # said, not guessed: no clean control data for these seeds in the sweep
            check["unchecked_seeds"] = missing
            log(f"base check: cell {c.label()} seeds {missing} unchecked: no cell of the sweep has a clean control "
                "teacher's dataset for them (add a sigma 0 cell with the control teacher)")
        if bases:
            log(f"base check: cell {c.label()}: NLL/token {check['nll']:.3f} vs clean {check['clean_nll']:.3f}, "
                f"{check['n_broken']} of {len(bases)} bases broken")
        out[c.id] = check
    return out


def run_sweep(sweep: Sweep | str | Path, root: str | Path = "artifacts", executor: str | None = None,
              workers: int | None = None, progress: bool = True, log=print, slurm: dict | None = None) -> dict:
    """Run (or resume) every job of the sweep, then build its table. `slurm`: cluster options over
    `[sweep] slurm` (see `slurm_options`)."""
    sweep = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    d = sweep.directory(root)
    write_json(d / SWEEP_FILE, {"source": sweep.source, "sweep": sweep.section.model_dump(), "base": sweep.base,
                                "cells": [{"id": c.id, "values": c.values} for c in sweep.cells],
                                "jobs": [f"{c.id}-seed{s}" for c, s in sweep.jobs()], **provenance()})
    t = time.perf_counter()
    done = run_jobs(sweep, root, executor, workers, progress, log, slurm)
    jobs_s = time.perf_counter() - t
    out = summarize_sweep(sweep, root, log)
    out["timings_s"] = {"jobs": round(jobs_s, 2), "jobs_run": len(done),
                        "per_job": {Path(r["run_dir"]).name: r["wall_s"] for r in done},
                        "table": round(time.perf_counter() - t - jobs_s, 2)}
    write_json(d / RESULTS_FILE, out)
    # last, like every artifact's: what the directory is (each cell's own run manifest has its device)
    write_json(d / MANIFEST_FILE, {"kind": "sweep", "sweep": sweep.section.name, "source": sweep.source, **provenance()})
    return out

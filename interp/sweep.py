"""Sweeps: a grid of E1 runs in which every (cell, seed) is an independent job.

A sweep file is an E1 config with a `[sweep]` table: the config is every cell's starting point,
`grid` sets dotted config fields to each combination of values, and the results table reports one
row of E1's transfer table (`comparison`) per cell, and its ratio to the `reference` cell:

    [sweep]
    name = "noise-smollm2"
    grid = { "noise.sigma" = [0.0, 0.05], "noise.apply" = ["shared", "teacher", "student"] }
    reference = { "noise.sigma" = 0.0 }

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

from interp.config import E1Config, _Strict, parse_config, read_toml
from interp.runs import RESULTS_FILE, content_hash, load_tensors, provenance, safe_name, write_json
from interp.stats import hierarchical_bootstrap, ratio_interval, t_interval

SWEEP_FILE = "grid.json"  # the sweep's config, cells and jobs (sweep.json is `interp steer`'s)
JOBS_DIR = "jobs"  # one run directory per (cell, seed) job
CELLS_DIR = "cells"  # one run directory per cell, all seeds: what the table reads
EXECUTORS = ("local", "submitit")


class SweepSection(_Strict):
    name: str = "sweep"
    grid: dict[str, list[Any]]
    reference: dict[str, Any] = {}  # the cell (by its grid values) that ratios divide by; {}: none
    comparison: str = "steered-control"  # a key of E1's results["transfer"]
    executor: Literal["local", "submitit"] = "local"
    workers: int = Field(1, ge=1)  # local: processes at once (1: in this process)
    threads: int | None = Field(None, ge=1)  # torch threads per job; None: cores / workers
    slurm: dict[str, Any] = {}  # submitit parameters, e.g. timeout_min, slurm_partition, gpus_per_node
    n_boot: int = Field(2000, ge=100)

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
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{source}: field `sweep.{loc}`: {err['msg']}") from None
    parse_config(raw, source)  # the base itself must be valid
    cells = []
    for combo in itertools.product(*section.grid.values()):
        values = dict(zip(section.grid, combo))
        cell_raw = copy.deepcopy(raw)
        for k, v in values.items():
            _set(cell_raw, k, v)
        where = f"{source} [cell {', '.join(f'{k}={v}' for k, v in values.items())}]"
        cells.append(Cell(values, parse_config(cell_raw, where)))
    sweep = Sweep(section, raw, cells, source)
    sweep.reference_cell()  # a reference that matches nothing fails now, not after the jobs
    return sweep


def load_sweep(path: str | Path) -> Sweep:
    return parse_sweep(read_toml(path, "sweep"), str(path))


# ----------------------------------------------------------------------------- jobs


def run_job(config: dict, seed: int, root: str, run_dir: str, threads: int | None = None) -> dict:
    """One (cell, seed) E1 run; plain arguments, so a process pool or a cluster can ship it."""
    import torch

    from interp.pipeline import run_e1

    if threads:
        torch.set_num_threads(threads)
    cfg = parse_config({**config, "seeds": [seed]}, f"job seed {seed}")
    t = time.perf_counter()
    run_e1(cfg, root, progress=False, log=lambda *a, **k: None, run_dir=run_dir)
    return {"run_dir": run_dir, "seed": seed, "wall_s": round(time.perf_counter() - t, 2)}


def _job_args(sweep: Sweep, root: Path, threads: int | None) -> list[tuple]:
    d = sweep.directory(root)
    return [(c.config.model_dump(), s, str(root), str(d / JOBS_DIR / f"{c.id}-seed{s}"), threads) for c, s in sweep.jobs()]


def _run_local(args: list[tuple], workers: int, progress: bool) -> tuple[list[dict], list[str]]:
    from interp.progress import tqdm

    done, failed = [], []
    bar = tqdm(total=len(args), desc="sweep jobs", unit="job", disable=not progress)
    if workers == 1:
        for a in args:
            try:
                done.append(run_job(*a))
            except Exception as e:  # keep going: every other job is independent
                failed.append(f"{Path(a[3]).name}: {type(e).__name__}: {e}")
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker (fork would copy torch's thread pools)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_job, *a): a for a in args}
            for f in as_completed(futures):
                try:
                    done.append(f.result())
                except Exception as e:
                    failed.append(f"{Path(futures[f][3]).name}: {type(e).__name__}: {e}")
                bar.update(1)
    bar.close()
    return done, failed


def _run_submitit(args: list[tuple], folder: Path, params: dict, progress: bool) -> tuple[list[dict], list[str]]:
    try:
        import submitit
    except ImportError:
        raise ValueError("sweep.executor: 'submitit' needs the submitit package; pip install 'interp[cluster]'") from None
    from interp.progress import tqdm

    params = dict(params)
    ex = submitit.AutoExecutor(folder=str(folder), cluster=params.pop("cluster", None))
    ex.update_parameters(**params)
    with ex.batch():
        jobs = [ex.submit(run_job, *a) for a in args]
    done, failed = [], []
    for job, a in tqdm(list(zip(jobs, args)), desc="sweep jobs", unit="job", disable=not progress):
        try:
            done.append(job.result())
        except Exception as e:
            failed.append(f"{Path(a[3]).name} (job {job.job_id}): {type(e).__name__}: {e}")
    return done, failed


def run_jobs(sweep: Sweep, root: str | Path = "artifacts", executor: str | None = None, workers: int | None = None,
             progress: bool = True, log=print) -> list[dict]:
    """Run every job not finished yet; raise, after the others ran, if any failed."""
    root = Path(root)
    executor = executor or sweep.section.executor
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {EXECUTORS}")
    workers = workers or sweep.section.workers
    threads = sweep.section.threads or (max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    args = _job_args(sweep, root, threads)
    todo = [a for a in args if not (Path(a[3]) / RESULTS_FILE).exists()]
    log(f"sweep {sweep.section.name}: {len(sweep.cells)} cells, {len(args)} jobs, {len(args) - len(todo)} done before, "
        f"{len(todo)} to run ({executor}{f', {workers} workers' if executor == 'local' else ''})")
    if executor == "local":
        done, failed = _run_local(todo, workers, progress)
    else:
        done, failed = _run_submitit(todo, sweep.directory(root) / "submitit", sweep.section.slurm, progress)
    if failed:
        raise RuntimeError(f"sweep: {len(failed)} of {len(todo)} jobs failed (first: {failed[0]}); "
                           "the others are kept, rerun the same command to resume")
    return done


# ----------------------------------------------------------------------------- the table


def summarize_sweep(sweep: Sweep, root: str | Path = "artifacts", log=print) -> dict:
    """Per cell, all seeds: the comparison's transfer with intervals, and its ratio to (and
    difference from) the reference cell. Reads the cached stages (computing any that are missing
    in this process), and writes `results.json` in the sweep directory."""
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
        arrays[c.id] = load_tensors(cdir / TRANSFER_FILE)[comp]
        cell_results[c.id] = res
    ref = sweep.reference_cell()
    rows = []
    for i, c in enumerate(sweep.cells):
        x = arrays[c.id]
        t = cell_results[c.id]["transfer"][comp]
        row = {"cell": c.id, **c.values, "label": c.label(), "n_seeds": int(x.shape[0]),
               "transfer": hierarchical_bootstrap(x, n_boot), "transfer_per_seed": t_interval(x.mean(-1).tolist()),
               "per_seed": x.mean(-1).tolist(), "positive_seeds": t["specific_positive_seeds"],
               "trait_rank_among_animals": t["trait_rank_among_animals"], "run_dir": str(d / CELLS_DIR / c.id)}
        if ref is not None:
            r = arrays[ref.id]
            row["vs_reference"] = ratio_interval(x, r, n_boot, seed=i)
            if c.config.seeds == ref.config.seeds:
                # the same seed is the same prompts and data order in both cells: pair by seed
                row["vs_reference"]["diff_paired_by_seed"] = t_interval((x.mean(-1) - r.mean(-1)).tolist())
        rows.append(row)
    out = {"sweep": sweep.section.name, "comparison": comp, "metric": "trait-specific log P difference (E1)",
           "reference": sweep.section.reference, "grid": sweep.section.grid,
           "grid_keys": list(sweep.section.grid), "rows": rows, **provenance()}  # JSON sorts keys: keep the order
    write_json(d / RESULTS_FILE, out)
    return out


def run_sweep(sweep: Sweep | str | Path, root: str | Path = "artifacts", executor: str | None = None,
              workers: int | None = None, progress: bool = True, log=print) -> dict:
    """Run (or resume) every job of the sweep, then build its table."""
    sweep = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    d = sweep.directory(root)
    write_json(d / SWEEP_FILE, {"source": sweep.source, "sweep": sweep.section.model_dump(), "base": sweep.base,
                                "cells": [{"id": c.id, "values": c.values} for c in sweep.cells],
                                "jobs": [f"{c.id}-seed{s}" for c, s in sweep.jobs()], **provenance()})
    t = time.perf_counter()
    done = run_jobs(sweep, root, executor, workers, progress, log)
    jobs_s = time.perf_counter() - t
    out = summarize_sweep(sweep, root, log)
    out["timings_s"] = {"jobs": round(jobs_s, 2), "jobs_run": len(done),
                        "per_job": {Path(r["run_dir"]).name: r["wall_s"] for r in done},
                        "table": round(time.perf_counter() - t - jobs_s, 2)}
    write_json(d / RESULTS_FILE, out)
    return out

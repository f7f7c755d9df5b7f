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
table is then built in this process from the cached stages (`interp.sweep_report`), so it is the
same whichever ran them.
"""

from __future__ import annotations

import copy
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from interp.config import E1Config, _Strict, parse_config, read_toml, validation_line
from interp.runs import MANIFEST_FILE, RESULTS_FILE, content_hash, provenance, safe_name, write_json

# the report lives in its own module; its names stay importable from here
from interp.sweep_report import (
    POWER_KEY as POWER_KEY,
    TARGET_RATIO as TARGET_RATIO,
    check_bases as check_bases,
    compare_with_reference as compare_with_reference,
    comparison_row as comparison_row,
    summarize_sweep as summarize_sweep,
)

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
            raise ValueError('needs at least one field to vary, e.g. grid = { "noise.sigma" = [0.0, 0.05] }')
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

    def short_label(self) -> str:
        """`label` for a narrow column: fields set together are spread out and named by their last
        part ("n_prompts=80 epochs=1"), unless two share it (data.dtype beside train.dtype)."""
        pairs = []
        for k, v in self.values.items():
            fields = k.split(",")
            pairs += zip(fields, v) if len(fields) > 1 else [(k, v)]
        lasts = [f.rsplit(".", 1)[-1] for f, _ in pairs]
        unique = len(set(lasts)) == len(lasts)
        return " ".join(f"{last if unique else f}={v}" for (f, v), last in zip(pairs, lasts))


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

    def cell_directory(self, root: str | Path, cell: Cell) -> Path:
        """The cell's run directory, all seeds: what the report reads."""
        return self.directory(root) / CELLS_DIR / cell.id

    def job_directory(self, root: str | Path, cell: Cell, seed: int) -> Path:
        """One (cell, seed) job's run directory; its results.json marks the job finished."""
        return self.directory(root) / JOBS_DIR / f"{cell.id}-seed{seed}"

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


def run_job(
    config: dict,
    seed: int,
    root: str,
    run_dir: str,
    threads: int | None = None,
    checkpoint_minutes: float | None = None,
    log_stages: bool = False,
) -> dict:
    """One (cell, seed) E1 run; plain arguments, so a process pool or a cluster can ship it (it is
    pickled by reference: submitit's job imports it from here). `log_stages`: one line per stage on
    stderr, named by the job: a pool's workers write it to the sweep's own stderr, a submitit job to
    its `_log.err` in the sweep's folder. `checkpoint_minutes`: see
    `run_e1`."""
    import torch

    from interp.pipeline import run_e1

    if threads:
        torch.set_num_threads(threads)
    cfg = parse_config({**config, "seeds": [seed]}, f"job seed {seed}")
    t = time.perf_counter()
    job = Path(run_dir).name  # <cell>-seed<seed>: names the job among its neighbours' lines in one log
    # on stderr: a pool's workers share the sweep's stdout, which `--json` keeps for the results
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    log = (lambda msg: say(f"{job}: {msg.strip()}")) if log_stages else (lambda *a, **k: None)
    if log_stages:
        say(f"job {job}: E1 seed {seed}, root {root}, cwd {os.getcwd()}")
    run_e1(cfg, root, progress=False, log=log, run_dir=run_dir, checkpoint_minutes=checkpoint_minutes)
    return {"run_dir": run_dir, "seed": seed, "wall_s": round(time.perf_counter() - t, 2)}


def _jobs(
    sweep: Sweep, root: Path, threads: int | None, checkpoint_minutes: float | None = None
) -> list[tuple[str, tuple]]:
    """(name, run_job's arguments) per job. Paths are absolute: a job may start in another
    directory (a cluster node), and it gets plain data only (a dict, numbers, strings)."""
    return [
        (
            f"cell {c.short_label()} [{c.id}] seed {s}",
            (
                c.config.model_dump(),
                s,
                str(root.resolve()),
                str(sweep.job_directory(root.resolve(), c, s)),
                threads,
                checkpoint_minutes,
            ),
        )
        for c, s in sweep.jobs()
    ]


def _one_line(e: BaseException) -> str:
    """An exception as one line. A submitit job's failure carries the job's traceback as text:
    its last exception line (the first unindented line after the last frame) says what failed."""
    lines = str(e).splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if frames:
        for line in lines[frames[-1] + 1 :]:
            if line.strip() and not line.startswith(" "):
                return line.strip()
    first = next((line.strip() for line in lines if line.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _run_local(jobs: list[tuple[str, tuple]], workers: int, progress: bool, log=print) -> tuple[list[dict], list[str]]:
    """Every job, in this process or a pool; without a progress bar (a sweep logging to a file),
    one line per finished or failed job and one per stage (on stderr, named by its job), so a long
    sweep's log shows where it stands between jobs that take an hour."""
    from interp.progress import tqdm

    done, failed = [], []
    bar = tqdm(total=len(jobs), desc="sweep jobs", unit="job", disable=not progress)
    t0 = time.perf_counter()

    def finished(name: str, res: dict | None, err: BaseException | None) -> None:
        if err is None:
            done.append(res)
        else:  # keep going: every other job is independent
            failed.append(f"{name}: {_one_line(err)}")
        bar.update(1)
        if not progress:
            what = f"done in {res['wall_s']:.0f} s" if err is None else f"FAILED: {_one_line(err)}"
            n = len(done) + len(failed)
            log(f"job {n}/{len(jobs)} {what}: {name} ({time.perf_counter() - t0:.0f} s into this run)")

    if workers == 1:
        for name, a in jobs:
            try:
                res = run_job(*a, log_stages=not progress)
            except Exception as e:
                finished(name, None, e)
            else:
                finished(name, res, None)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker (fork would copy torch's thread pools)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_job, *a, log_stages=not progress): name for name, a in jobs}
            for f in as_completed(futures):
                try:
                    res = f.result()
                except Exception as e:
                    finished(futures[f], None, e)
                else:
                    finished(futures[f], res, None)
    bar.close()
    return done, failed


def slurm_options(
    partition: str | None = None,
    time_min: int | None = None,
    cpus: int | None = None,
    mem_gb: int | None = None,
    gpus: int | None = None,
    cluster: str | None = None,
) -> dict:
    """`interp sweep`'s cluster options as `[sweep] slurm` keys (what is not given is left out):
    they override the sweep file's."""
    opts = {
        "slurm_partition": partition,
        "timeout_min": time_min,
        "cpus_per_task": cpus,
        "mem_gb": mem_gb,
        "gpus_per_node": gpus,
        "cluster": cluster,
    }
    return {k: v for k, v in opts.items() if v is not None}


def make_executor(folder: str | Path, params: dict, name: str = "interp-sweep"):
    """A submitit AutoExecutor from `[sweep] slurm` (plus overrides): `cluster` picks the executor
    (default: SLURM where `srun` is on PATH, else subprocesses on this machine), the rest goes to
    `update_parameters` (generic: timeout_min, cpus_per_task, mem_gb, gpus_per_node, name; SLURM's
    own with a `slurm_` prefix: slurm_partition, slurm_account, slurm_array_parallelism, ...)."""
    try:
        import submitit
    except ImportError:
        raise ValueError(
            "sweep.executor: 'submitit' needs the submitit package; pip install 'interp[cluster]'"
        ) from None
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


def run_jobs(
    sweep: Sweep,
    root: str | Path = "artifacts",
    executor: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    log=print,
    slurm: dict | None = None,
    checkpoint_minutes: float | None = None,
) -> list[dict]:
    """Run every job not finished yet; raise, after the others ran, if any failed. `slurm`
    overrides `[sweep] slurm` (see `slurm_options`); given, the executor defaults to submitit.
    `checkpoint_minutes`: see `run_e1` (a runtime setting: no key or result changes)."""
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
    jobs = _jobs(sweep, root, threads, checkpoint_minutes)
    todo = [j for j in jobs if not (Path(j[1][3]) / RESULTS_FILE).exists()]
    if executor == "submitit":
        folder = sweep.directory(root).resolve() / SUBMITIT_DIR
        ex = make_executor(folder, params, f"interp-{sweep.section.name}")
        how = f"submitit on {ex.cluster}, logs in {folder}"
    else:
        how = f"local, {workers} workers" if workers > 1 else "local, in this process"
    log(
        f"sweep {sweep.section.name}: {len(sweep.cells)} cells, {len(jobs)} jobs, {len(jobs) - len(todo)} done before, "
        f"{len(todo)} to run ({how})"
    )
    if executor == "local":
        done, failed = _run_local(todo, workers, progress, log)
    else:
        done, failed = _run_submitit(todo, ex, progress) if todo else ([], [])
    for f in failed:
        log(f"failed: {f}")
    if failed:
        raise RuntimeError(
            f"sweep: {len(failed)} of {len(todo)} jobs failed (first: {failed[0]}); "
            "the others are kept, rerun the same command to resume"
        )
    return done


def run_sweep(
    sweep: Sweep | str | Path,
    root: str | Path = "artifacts",
    executor: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    log=print,
    slurm: dict | None = None,
    checkpoint_minutes: float | None = None,
) -> dict:
    """Run (or resume) every job of the sweep, then build its table. `slurm`: cluster options over
    `[sweep] slurm` (see `slurm_options`); `checkpoint_minutes`: see `run_e1`."""
    sweep = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    d = sweep.directory(root)
    write_json(
        d / SWEEP_FILE,
        {
            "source": sweep.source,
            "sweep": sweep.section.model_dump(),
            "base": sweep.base,
            "cells": [{"id": c.id, "values": c.values} for c in sweep.cells],
            "jobs": [f"{c.id}-seed{s}" for c, s in sweep.jobs()],
            **provenance(),
        },
    )
    t = time.perf_counter()
    done = run_jobs(sweep, root, executor, workers, progress, log, slurm, checkpoint_minutes)
    jobs_s = time.perf_counter() - t
    out = summarize_sweep(sweep, root, log)
    out["timings_s"] = {
        "jobs": round(jobs_s, 2),
        "jobs_run": len(done),
        "per_job": {Path(r["run_dir"]).name: r["wall_s"] for r in done},
        "table": round(time.perf_counter() - t - jobs_s, 2),
    }
    write_json(d / RESULTS_FILE, out)
    # last, like every artifact's: what the directory is (each cell's own run manifest has its device)
    write_json(
        d / MANIFEST_FILE, {"kind": "sweep", "sweep": sweep.section.name, "source": sweep.source, **provenance()}
    )
    return out

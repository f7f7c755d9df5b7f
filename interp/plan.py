"""What a command would do, without doing it. `interp run --dry-run` (`plan_e1`): every stage with
its cache directory and whether it is cached, computing nothing (the models are loaded: their
fingerprints are in the keys). `interp sweep --dry-run` (`plan_sweep`) and `interp lr-select
--dry-run` (`plan_lr_select`): the cells or trials, from the config alone.

A stage's key can depend on what an earlier stage produced: a student's on its dataset's hash, a
steered dataset's on the vector's hash. Where that earlier stage is not cached, the stage is listed
as `pending` with the stage it waits on, and no directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from interp.config import E1Config
from interp.datasets import dataset_stage, mix_stage
from interp.models import load_model
from interp.precision import require_device
from interp.pipeline import (
    SeedBases,
    arm_label,
    divergence_stage,
    eval_inputs,
    eval_stage,
    student_config,
    student_stage,
    uses_divergence,
    vector_stage,
)
from interp.runs import RESULTS_FILE, Stage, content_hash, relative_path
from interp.steering import SteeringVector
from interp.teachers import VECTOR_KINDS

if TYPE_CHECKING:  # the CLI's dry runs pass them; importing them here would load every sweep's dependencies
    from interp.lr_select import LrSelectConfig
    from interp.sweep import Sweep

CACHED, TO_COMPUTE, PENDING = "cached", "to compute", "pending"


def plan_selection(
    cfg: E1Config, kind: str, seed: int, m, vector, dentry: dict, dstage: Stage | None, add, cache: Path
) -> tuple[dict, Stage | None]:
    """`data.select`'s stages (`interp.selection.selected_data`): the row scores (trait kinds) and
    the bin, each pending until what its key needs is cached."""
    from interp.selection import score_stage, select_stage

    which, label = (cfg.data.select if kind != "control" else "random"), f"{kind}/seed{seed}"
    sstage, waits = None, None if dstage is not None else dentry["name"]
    if which != "random":
        ready = dstage is not None and dstage.done
        sstage = (
            score_stage(cache, m, cfg.teacher_for(kind, seed), vector, dstage, cfg.train.max_len) if ready else None
        )
        add(f"rowscore/{label}", sstage, None if ready else dentry["name"])
        waits = None if sstage is not None and sstage.done else f"rowscore/{label}"
    sel = None if waits else select_stage(cache, dstage, sstage, which, cfg.data.select_bins, seed)
    return add(f"select/{label}", sel, waits), sel


def plan_e1(cfg: E1Config, root: str | Path = "artifacts") -> dict:
    """{"run_id", "run_dir", "stages": [{"name", "status", "dir" | None, "waits_on" | None}]}, in
    the order `run_e1` meets them; `status` is cached, to compute or pending (see the module doc).
    Writes nothing."""
    root = Path(root)
    cache = root / "cache"
    run_id = content_hash(cfg.key(), 10)
    base = load_model(cfg.model, device=require_device(cfg.device))
    student_root = load_model(cfg.student_model, device=cfg.device) if cfg.cross_model else base
    bases = SeedBases(cfg, base, student_root)
    kd = "kd" in cfg.train.objectives
    stages: list[dict] = []
    seen: dict[str, dict] = {}  # stage dir -> entry: a stage shared by seeds is listed once

    def add(name: str, stage: Stage | None, waits_on: str | None = None) -> dict:
        if stage is None:
            entry = {"name": name, "status": PENDING, "dir": None, "waits_on": waits_on}
        else:
            rel = relative_path(stage.dir, root)
            if rel in seen:
                return seen[rel]
            entry = {"name": name, "status": CACHED if stage.done else TO_COMPUTE, "dir": rel, "waits_on": None}
            seen[rel] = entry
        stages.append(entry)
        return entry

    vectors: dict[str, tuple[dict, SteeringVector | None]] = {}

    def vector_for(animal: str, m, seed: int) -> tuple[dict, SteeringVector | None]:
        vstage = vector_stage(cache, cfg, animal, m)
        if vstage.key not in vectors:
            name = "vector" + ("" if animal == cfg.animal else f"/{animal}")
            if any(s["name"] == name for s in stages):
                name = f"{name}/seed{seed}"
            entry = add(name, vstage)
            vectors[vstage.key] = (entry, SteeringVector.load(vstage.dir) if entry["status"] == CACHED else None)
        return vectors[vstage.key]

    def dataset(
        name: str, kind: str, teacher, vec: tuple[dict, SteeringVector | None], dcfg, m
    ) -> tuple[dict, Stage | None]:
        ventry, vector = vec
        if kind in VECTOR_KINDS and vector is None:  # keyed by the vector's hash
            return add(name, None, ventry["name"]), None
        st = dataset_stage(cache, m, teacher, vector, dcfg, kd)
        return add(name, st), st

    finetuned: dict = {}  # finetune stage key -> the loaded teacher

    def finetuned_dataset(name: str, vec, dcfg, m) -> tuple[dict, Stage | None]:
        """The finetuned teacher's dataset: keyed by the fine-tuned weights, so pending until they exist."""
        from interp.finetune import finetune_stage, load_finetuned

        fst = finetune_stage(cache, m, cfg.animal, cfg.finetune_config())
        first = not any(s["name"] == "finetune" for s in stages)
        fentry = add("finetune" if first else f"finetune/{name.rsplit('/', 1)[-1]}", fst)
        if not fst.done:
            return add(name, None, fentry["name"]), None
        if fst.key not in finetuned:
            finetuned[fst.key] = load_finetuned(m, fst)
        ft = finetuned[fst.key]
        return dataset(name, "finetuned", ft.teacher, vec, dcfg, ft.model)

    einputs = eval_inputs(cfg)
    student_evals: list[tuple[str, Stage | None, str | None]] = []
    student_bases = {}
    for seed in cfg.seeds:
        teacher_base, student_base = bases.for_seed(seed)
        student_bases[seed] = student_base
        vec = vector_for(cfg.animal, teacher_base, seed)
        for kind in cfg.teacher.kinds:
            dcfg = cfg.data_config(seed)
            if kind == "finetuned":
                dentry, dstage = finetuned_dataset(f"data/{kind}/seed{seed}", vec, dcfg, teacher_base)
            else:
                dentry, dstage = dataset(
                    f"data/{kind}/seed{seed}", kind, cfg.teacher_for(kind, seed), vec, dcfg, teacher_base
                )
            data_entry, data_stage = dentry, dstage
            if cfg.mixed(kind):
                sources = {cfg.animal: (dentry, dstage)}
                for a in cfg.data.mix_animals:
                    sources[a] = dataset(
                        f"data/{kind}-{a}/seed{seed}",
                        kind,
                        cfg.teacher_for(kind, seed, a),
                        vector_for(a, teacher_base, seed),
                        dcfg,
                        teacher_base,
                    )
                missing = next((e["name"] for e, st in sources.values() if st is None), None)
                mstage = None if missing else mix_stage(cache, {a: st for a, (_, st) in sources.items()}, kd)
                data_entry, data_stage = add(f"mix/{kind}/seed{seed}", mstage, missing), mstage
            if cfg.data.select != "all":  # a score bin: its key holds the scores', theirs the rows' hash
                data_entry, data_stage = plan_selection(
                    cfg, kind, seed, teacher_base, vec[1], dentry, dstage, add, cache
                )
            divergence = None
            if uses_divergence(cfg, kind):
                divergence = divergence_stage(cache, dstage) if dstage is not None else None
                add(f"divergence/{kind}/seed{seed}", divergence, None if dstage else dentry["name"])
            for objective in cfg.train.objectives:
                label = arm_label(kind, objective)
                name = f"student/{label}/seed{seed}"
                waits = None if data_entry["status"] == CACHED else data_entry["name"]
                if waits is None and uses_divergence(cfg, kind) and not (divergence is not None and divergence.done):
                    waits = f"divergence/{kind}/seed{seed}"  # the student's key holds it; its rule's masks too
                if waits is not None:
                    add(name, None, waits)
                    student_evals.append((f"eval/{label}/seed{seed}", None, name))
                    continue
                tcfg = student_config(cfg, seed, objective, divergence)
                dman = data_stage.manifest()
                if tcfg.project_out and vec[1] is None:
                    add(name, None, vec[0]["name"])
                    student_evals.append((f"eval/{label}/seed{seed}", None, name))
                    continue
                sstage = student_stage(
                    cache, student_base, dman, tcfg, divergence, vec[1].hash() if tcfg.project_out else None
                )
                add(name, sstage)
                student_evals.append((f"eval/{label}/seed{seed}", eval_stage(cache, sstage.dir.name, einputs), None))

    base_keys: list[str] = []
    for seed, m in student_bases.items():
        key = m.fingerprint()
        if key not in base_keys:
            add("eval/base" if not base_keys else f"eval/base/seed{seed}", eval_stage(cache, key, einputs))
            base_keys.append(key)
    for name, st, waits in student_evals:
        add(name, st, waits)
    return {"run_id": run_id, "run_dir": str(root / cfg.experiment / run_id), "stages": stages}


def plan_sweep(sw: Sweep, root: str | Path = "artifacts") -> dict:
    """{"sweep", "directory", "n_jobs", "n_done", "cells": [{"id", "label", "short_label", "seeds",
    "done", "started"}]}: what `run_sweep` would run, and which (cell, seed) jobs under `root` have
    finished (`done`: their seeds) or begun without finishing (`started`: a rerun resumes them
    from their cached stages), so a sweep that spans sessions shows where it stands without
    running anything."""
    jobs = sw.jobs()
    done = {(c.id, s) for c, s in jobs if (sw.job_directory(root, c, s) / RESULTS_FILE).is_file()}
    started = {(c.id, s) for c, s in jobs if sw.job_directory(root, c, s).is_dir()} - done
    return {
        "sweep": sw.section.name,
        "directory": str(sw.directory(root)),
        "n_jobs": len(jobs),
        "n_done": len(done),
        "cells": [
            {
                "id": c.id,
                "label": c.label(),
                "short_label": c.short_label(),
                "seeds": c.config.seeds,
                "done": [s for s in c.config.seeds if (c.id, s) in done],
                "started": [s for s in c.config.seeds if (c.id, s) in started],
            }
            for c in sw.cells
        ],
    }


def plan_lr_select(cfg: LrSelectConfig, root: str | Path = "artifacts") -> dict:
    """{"name", "directory", "n_trials", "modes": {name: {"method", "lrs"}}}: what `run_lr_select` would try."""
    from interp.lr_select import run_directory

    return {
        "name": cfg.name,
        "directory": str(run_directory(cfg, root)),
        "n_trials": len(cfg.trials()),
        "modes": {m.name: {"method": m.method, "lrs": list(m.lrs)} for m in cfg.modes},
    }

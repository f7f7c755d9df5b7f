"""A sweep's report: per cell, every comparison of its E1 transfer table with seed-level intervals,
seeds positive, the trait's rank, the permutation and sign-flip p, and its ratio to (and paired
difference from) the reference cell with the power to detect `TARGET_RATIO`; with weight noise,
every noised base's NLL check (a broken cell is reported with its NLL and gets no ratio).

Built in this process from the cells' cached stages (`interp.sweep` runs the jobs), so the report is
the same whichever executor ran them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from interp.runs import MANIFEST_FILE, RESULTS_FILE, load_tensors, provenance, read_json, stage_dirs, write_json
from interp.stats import (
    detectable_effect,
    hierarchical_bootstrap,
    power_paired_t,
    ratio_interval,
    sign_flip_test,
    t_interval,
)

if TYPE_CHECKING:  # interp.sweep imports this module to build its report: no import back at run time
    from interp.sweep import Cell, Sweep

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
    power = {
        "ratio": TARGET_RATIO,
        "n": len(diffs),
        "sd": sd,
        "effect": None,
        "power": None,
        "detectable_ratio_80": None,
    }
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
    only the cell's run had). The sign-flip test pairs by seed, so it needs only `x`: a cell run
    before E1 reported it gets it too."""
    perm = t["permutation_specific"]
    return {
        "n_seeds": int(x.shape[0]),
        "transfer": hierarchical_bootstrap(x, n_boot),
        "transfer_per_seed": t_interval(x.mean(-1).tolist()),
        "per_seed": x.mean(-1).tolist(),
        "positive_seeds": int((x.mean(-1) > 0).sum()),
        "trait_rank_among_animals": t["trait_rank_among_animals"],
        "permutation_p": perm["p_value"],
        "permutation_min_p": perm["min_p"],
        "sign_flip_specific": sign_flip_test(x.mean(-1).tolist()),
    }


def summarize_sweep(sweep: Sweep, root: str | Path = "artifacts", log=print) -> dict:
    """Per cell, all seeds: every comparison of its E1 transfer table with intervals, seeds
    positive, the trait's rank, the permutation and sign-flip p, and its ratio to (and paired
    difference from) the reference cell with the power to detect `TARGET_RATIO`; `comparison` also
    at the top of each row, as before. A sweep with weight noise also checks every noised base
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
        cdir = sweep.cell_directory(root, c)
        res = run_e1(c.config, root, progress=False, log=lambda *a, **k: None, run_dir=cdir)
        if comp not in res["transfer"]:
            raise ValueError(
                f"sweep.comparison: {comp!r} is not in this run's transfer table (it has {sorted(res['transfer'])})"
            )
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
                comps[name]["vs_reference"] = compare_with_reference(
                    x, arrays[ref.id][name], c.config.seeds == ref.config.seeds, n_boot, seed=i
                )
        check = checks.get(c.id)
        broken = bool(check and check.get("broken"))
        if broken:  # its transfer measures the damage: reported with its NLL, never averaged into a ratio
            for v in comps.values():
                v["vs_reference"] = None
        main = comps[comp]
        row = {
            "cell": c.id,
            **c.values,
            "label": c.label(),
            "n_seeds": main["n_seeds"],
            "transfer": main["transfer"],
            "transfer_per_seed": main["transfer_per_seed"],
            "per_seed": main["per_seed"],
            "positive_seeds": main["positive_seeds"],
            "trait_rank_among_animals": main["trait_rank_among_animals"],
            "run_dir": str(sweep.cell_directory(root, c)),
            "comparisons": comps,
            "is_reference": ref is not None and c.id == ref.id,
            "broken": broken,
            "base_check": check,
            "cost": student_cost(sweep.cell_directory(root, c)),
        }
        if ref is not None:
            row["vs_reference"] = main.get("vs_reference")
        rows.append(row)
    out = {
        "sweep": sweep.section.name,
        "comparison": comp,
        "comparisons": list(cell_results[sweep.cells[0].id]["transfer"]),
        "metric": "trait-specific log P difference (E1)",
        "target_ratio": TARGET_RATIO,
        "reference": sweep.section.reference,
        "grid": sweep.section.grid,
        "grid_keys": list(sweep.section.grid),
        "rows": rows,
        **provenance(),
    }  # JSON sorts keys: keep the order
    if checks:
        from interp.base_check import BROKEN_NLL_MARGIN, BROKEN_RULE, NLL_VOCAB

        out["base_check"] = {
            "rule": BROKEN_RULE,
            "margin_nats_per_token": BROKEN_NLL_MARGIN,
            "vocab": NLL_VOCAB,
            "broken_cells": [c.id for c in sweep.cells if checks.get(c.id, {}).get("broken")],
        }
    write_json(d / RESULTS_FILE, out)
    return out


def student_cost(run_dir: Path) -> dict | None:
    """What a student of this cell cost: its training wall time and the bytes it keeps, from each
    student stage's own manifest (so a student another cell or sweep trained counts at the time it
    took then), as median, quartiles and range over the cell's students. None for a run without
    students' manifests (a record copied without its cache)."""
    if not (Path(run_dir) / MANIFEST_FILE).exists():
        return None
    walls, sizes = [], []
    for name, sdir in stage_dirs(run_dir).items():
        if name.startswith("student/") and (sdir / MANIFEST_FILE).exists():
            sm = read_json(sdir / MANIFEST_FILE)
            if sm.get("wall_s") is None:
                continue
            walls.append(sm["wall_s"])
            if "kept_bytes" in sm:  # students from before it was recorded have none
                sizes.append(sm["kept_bytes"])
    if not walls:
        return None
    return {
        "students": len(walls),
        "student_wall_s": {
            "median": statistics.median(walls),
            # quartiles: a student trained under a contended CPU is an outlier of the range
            "q1": float(torch.quantile(torch.tensor(walls, dtype=torch.float64), 0.25)),
            "q3": float(torch.quantile(torch.tensor(walls, dtype=torch.float64), 0.75)),
            "min": min(walls),
            "max": max(walls),
        },
        "student_bytes": {"median": statistics.median(sizes), "max": max(sizes)} if sizes else None,
    }


def _clean_control_data(sweep: Sweep, cell: Cell, seed: int, root: Path, base=None) -> Path | None:
    """The dataset of `seed`'s control teacher on the clean base, from a cell of the sweep that made
    it (its teacher's base un-noised, the same teacher model and data settings): the reference
    cell first. With `base` (the clean model), also a finished data stage in the cache that such a
    cell would read, so bases can be checked before the sweep's cells run (another sweep, or the
    same protocol's run, may have made it). None when neither exists."""
    from interp.datasets import dataset_stage

    ref = sweep.reference_cell()
    clean = [
        c
        for c in ([ref] if ref is not None else []) + sweep.cells
        if seed in c.config.seeds
        and "control" in c.config.teacher.kinds
        and c.config.model == cell.config.model
        and c.config.data == cell.config.data
        and (c.config.weight_noise(seed) is None or c.config.noise.apply == "student")
    ]
    for c in clean:
        if not (sweep.cell_directory(root, c) / MANIFEST_FILE).exists():  # a cell that has not run
            continue
        path = stage_dirs(sweep.cell_directory(root, c)).get(f"data/control/seed{seed}")
        if path is not None:
            return path
    for c in clean if base is not None else []:
        cfg = c.config
        kd = "kd" in cfg.train.objectives
        st = dataset_stage(root / "cache", base, cfg.teacher_for("control", seed), None, cfg.data_config(seed), kd)
        if st.done:
            return st.dir
    return None


def check_bases(sweep: Sweep, root: str | Path = "artifacts", log=print, before_cells: bool = False) -> dict[str, dict]:
    """{cell id: its noised bases' check} for every cell with weight noise (`interp.base_check`):
    per seed, each noised base (the teacher's, the student's, or the one they share) against the
    clean base of the same model on that seed's clean control teacher's rows. A cell is `broken`
    when any of its bases breaks `BROKEN_RULE`. Cells run first (`summarize_sweep`), or, with
    `before_cells`, the clean control datasets are looked up in the cache: a sigma can then be
    refused for breaking the model before any of its students trains (`experiments/check_bases.py`)."""
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
        roles = (
            ["shared"]
            if apply == "shared" and not cfg.cross_model
            else [r for r in ("teacher", "student") if apply in ("shared", r)]
        )
        bases, missing = [], []
        for s in cfg.seeds:
            data = _clean_control_data(sweep, c, s, root, model(cfg.model, cfg.device) if before_cells else None)
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
                bases.append(
                    {
                        "seed": s,
                        "role": role,
                        "model": name,
                        "noise": noise.describe(),
                        "nll": noised["nll_per_token"],
                        "clean_nll": clean["nll_per_token"],
                        "excess": excess,
                        "broken": is_broken(noised["nll_per_token"], clean["nll_per_token"]),
                        "n_tokens": noised["n_tokens"],
                        "stage": noised["stage"],
                    }
                )
        check = {
            "bases": bases,
            "n_bases": len(bases),
            "n_broken": sum(b["broken"] for b in bases),
            "broken": any(b["broken"] for b in bases),
        }
        if bases:
            check.update(
                nll=sum(b["nll"] for b in bases) / len(bases),
                clean_nll=sum(b["clean_nll"] for b in bases) / len(bases),
                max_excess=max(b["excess"] for b in bases),
            )
        if missing:  # said, not guessed: no clean control data for these seeds in the sweep
            check["unchecked_seeds"] = missing
            log(
                f"base check: cell {c.label()} seeds {missing} unchecked: no cell of the sweep has a clean control "
                "teacher's dataset for them (add a sigma 0 cell with the control teacher)"
            )
        if bases:
            log(
                f"base check: cell {c.label()}: NLL/token {check['nll']:.3f} vs clean {check['clean_nll']:.3f}, "
                f"{check['n_broken']} of {len(bases)} bases broken"
            )
        out[c.id] = check
    return out

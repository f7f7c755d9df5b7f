"""The learning rate of each training mode, chosen on the control teacher's data by held-out loss.

Issue 23 compares LoRA ranks with full fine-tuning; each mode gets its own learning rate, chosen
never on transfer but on how well a student fits data that carries no trait. For each seed of
the config (exploration seeds, not the seeds of the transfer cells) the control teacher's
dataset is the E1 pipeline's own stage (the rows an E1 run on that seed trains its control
student on), split once into train and held-out rows by a seeded permutation (the held-out
indices are recorded). A trial is one (mode, lr, seed): a student trained on the train rows
with the config's control-student settings, the mode's method and LoRA settings and that lr,
then its mean per-token loss on the held-out rows (every completion token and the end-of-turn,
over the whole vocabulary: the sft loss the student trains on). A mode's chosen lr has the
lowest held-out loss averaged over seeds; a tie goes to the smaller lr. A diverged trial is a
result (no loss), never chosen.

Every trial is a cached stage keyed by its content (student base, the rows of both halves,
training settings), so an interrupted selection resumes and a rerun recomputes nothing. The run
directory `<root>/<name>/<id>/` holds config.json, results.json (every trial, the split, the
choice), table.txt and manifest.json (last).

A config file is an E1 config with an `[lr_select]` table:

    [lr_select]
    name = "e23-lr-select"
    lrs = [3e-5, 1e-4, 3e-4]          # the grid of every mode without its own
    heldout_fraction = 0.25
    modes = [{ name = "full", method = "full" },
             { name = "lora-r4", method = "lora", lora_rank = 4, lora_alpha = 4, lora_targets = "all-linear",
               lrs = [1e-4, 3e-4, 1e-3] }]
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field, ValidationError, field_validator

from interp.config import SEED, E1Config, _Strict, parse_config, read_toml, validation_line
from interp.datasets import read_verified_rows
from interp.models import LoadedModel, load_model
from interp.runs import (
    CONFIG_FILE,
    MANIFEST_FILE,
    RESULTS_FILE,
    Stage,
    content_hash,
    provenance,
    relative_path,
    safe_name,
    write_json,
    write_text,
)
from interp.stats import t_interval
from interp.train import TrainConfig, TrainingDiverged, check_lora, train_student, trained_student

TABLE_FILE = "table.txt"
HELDOUT_FILE = "heldout.json"  # in each trial's stage: the held-out loss and its token count
LOSS = "mean per-token cross-entropy over the full vocabulary, completion tokens and end-of-turn"


# ----------------------------------------------------------------------------- the config


class ModeSection(_Strict):
    name: str
    method: Literal["full", "lora"]
    lora_rank: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_targets: Literal["all-linear"] | list[str] | None = None  # None: the E1 config's train.lora_targets
    lrs: list[float] | None = None  # None: lr_select.lrs

    @field_validator("lrs")
    @classmethod
    def _lrs(cls, v: list[float] | None) -> list[float] | None:
        return _grid(v) if v is not None else v


def _grid(v: list[float]) -> list[float]:
    if not v or len(set(v)) != len(v) or any(not (x > 0 and math.isfinite(x)) for x in v):
        raise ValueError("needs one or more distinct learning rates > 0")
    return sorted(v)


class LrSelectSection(_Strict):
    name: str = "lr-select"
    lrs: list[float] = [3e-5, 1e-4, 3e-4]
    modes: list[ModeSection]
    heldout_fraction: float = Field(0.25, gt=0, lt=1)
    split_seed: Annotated[int, SEED] = 0  # the permutation of seed s's rows is drawn from split_seed + s

    @field_validator("lrs")
    @classmethod
    def _lrs(cls, v: list[float]) -> list[float]:
        return _grid(v)

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[ModeSection]) -> list[ModeSection]:
        names = [m.name for m in v]
        if not v or len(set(names)) != len(names):
            raise ValueError("needs one or more modes with distinct names")
        return v


@dataclass(frozen=True)
class LrMode:
    """One training mode: its method, its LoRA settings and its grid of learning rates."""

    name: str
    method: str
    lora_rank: int
    lora_alpha: int
    lora_targets: tuple[str, ...] | None
    lrs: tuple[float, ...]


@dataclass(frozen=True)
class LrSelectConfig:
    """The E1 config whose control data and training settings are used, and the selection."""

    e1: E1Config
    modes: tuple[LrMode, ...]
    heldout_fraction: float = 0.25
    split_seed: int = 0
    name: str = "lr-select"

    def key(self) -> dict:
        return {
            "e1": self.e1.key(),
            "modes": [asdict(m) for m in self.modes],
            "heldout_fraction": self.heldout_fraction,
            "split_seed": self.split_seed,
        }

    def trial_config(self, mode: LrMode, lr: float, seed: int) -> TrainConfig:
        """The control student's settings for `seed` with the mode's method, LoRA settings and `lr`;
        a full student keeps no weights (only its held-out loss is needed)."""
        t = replace(
            self.e1.train_config(seed, "sft"),
            loss_positions="all",
            method=mode.method,
            lr=lr,
            lora_rank=mode.lora_rank,
            lora_alpha=mode.lora_alpha,
        )
        if mode.lora_targets is not None:
            t = replace(t, lora_targets=mode.lora_targets)
        return replace(t, keep="none") if mode.method == "full" else t

    def trials(self) -> list[tuple[LrMode, float, int]]:
        """Every (mode, lr, seed), seeds outermost: a selection stopped early has whole seeds."""
        return [(m, lr, s) for s in self.e1.seeds for m in self.modes for lr in m.lrs]


def parse_lr_select(raw: dict, source: str = "lr-select") -> LrSelectConfig:
    """Validate the [lr_select] table and the E1 config beside it; one-line errors naming the field."""
    raw = copy.deepcopy(raw)
    if "lr_select" not in raw:
        raise ValueError(f"{source}: has no [lr_select] table (see experiments/configs/e23_regime/lr_select.toml)")
    try:
        sec = LrSelectSection(**raw.pop("lr_select"))
    except ValidationError as e:
        raise ValueError(validation_line(e, source, "lr_select", show_input=False)) from None
    e1 = parse_config(raw, source)
    if "sft" not in e1.train.objectives:
        raise ValueError(
            f"{source}: field `train.objectives`: the learning rate is chosen for sft students; include 'sft'"
        )
    modes = tuple(
        LrMode(
            safe_name(m.name, "lr_select.modes.name"),
            m.method,
            m.lora_rank,
            m.lora_alpha,
            None
            if m.lora_targets is None
            else (m.lora_targets,)
            if isinstance(m.lora_targets, str)
            else tuple(m.lora_targets),
            tuple(m.lrs or sec.lrs),
        )
        for m in sec.modes
    )
    cfg = LrSelectConfig(e1, modes, sec.heldout_fraction, sec.split_seed, safe_name(sec.name, "lr_select.name"))
    for m in modes:  # every trial's settings are valid TrainConfigs before anything runs
        for lr in m.lrs:
            try:
                cfg.trial_config(m, lr, e1.seeds[0])
            except ValueError as e:
                raise ValueError(f"{source}: mode {m.name!r}: {e}") from None
    return cfg


def load_lr_select(path: str | Path) -> LrSelectConfig:
    return parse_lr_select(read_toml(path, "lr-select config"), str(path))


def run_directory(cfg: LrSelectConfig, root: str | Path) -> Path:
    return Path(root) / cfg.name / content_hash(cfg.key(), 10)


# ----------------------------------------------------------------------------- the split and the loss


def split_rows(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices), both ascending: round(fraction * n) rows held out, drawn by
    a permutation seeded with `seed`. Refused in one line where either half would be empty."""
    n_held = round(fraction * n)
    if n_held < 1 or n_held >= n:
        raise ValueError(
            f"lr_select.heldout_fraction: {fraction} of {n} rows leaves "
            f"{'no held-out' if n_held < 1 else 'no training'} rows; choose a fraction that keeps both"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_held:]), sorted(perm[:n_held])


def heldout_loss(model: LoadedModel, rows: list[dict], cfg: TrainConfig) -> tuple[float, int]:
    """(mean per-token loss, tokens) of `model` on `rows`, read as the student's own sft loss reads
    them (`interp.rows`: the same rendering, max_len and system prompt)."""
    from interp.analysis.likelihood import completion_logliks
    from interp.rows import build_examples

    examples = build_examples(model, rows, cfg.max_len, system_prompt=cfg.system_prompt)
    n_tokens = sum(len(e.completion_ids) for e in examples)
    total = completion_logliks(model, examples, vocab="full", batch_size=cfg.batch_size)
    return float(-total.sum() / n_tokens), n_tokens


# ----------------------------------------------------------------------------- running


def run_lr_select(cfg: LrSelectConfig, root: str | Path = "artifacts", progress: bool = True, log=print) -> dict:
    """Run (or resume) every trial; write and return results.json's content (the chosen lr per mode)."""
    from interp.pipeline import SeedBases, StageRunner, _E1

    root = Path(root)
    run_dir = run_directory(cfg, root)
    e1 = cfg.e1
    runner = StageRunner(root, log)
    t0 = time.perf_counter()
    base = load_model(e1.model, device=e1.device)
    student_root = load_model(e1.student_model, device=e1.device) if e1.cross_model else base
    e1.check_layers(base.n_layers)
    e1.check_student_base(student_root)
    for m in cfg.modes:  # before any stage: every mode's LoRA settings fit the students' base
        try:
            check_lora(student_root, cfg.trial_config(m, m.lrs[0], e1.seeds[0]))
        except ValueError as e:
            raise ValueError(f"lr_select.modes ({m.name}): {e}") from None
    runner.timings["load_model"] = round(time.perf_counter() - t0, 2)
    write_json(
        run_dir / CONFIG_FILE,
        {
            "e1": e1.model_dump(),
            "modes": [asdict(m) for m in cfg.modes],
            "heldout_fraction": cfg.heldout_fraction,
            "split_seed": cfg.split_seed,
            "name": cfg.name,
        },
    )
    flow = _E1(e1, runner, SeedBases(e1, base, student_root), progress)
    splits, trials = {}, []
    for seed in e1.seeds:
        teacher_base, student_base = flow.bases.for_seed(seed)
        vector = flow.vector(e1.animal, teacher_base, seed)
        data, _ = flow.training_data("control", seed, teacher_base, vector)  # the control student's rows
        rows, dataset_hash = read_verified_rows(data.dir)
        train_idx, held_idx = split_rows(len(rows), cfg.heldout_fraction, cfg.split_seed + seed)
        train_rows, held_rows = [rows[i] for i in train_idx], [rows[i] for i in held_idx]
        splits[str(seed)] = {
            "dataset_hash": dataset_hash,
            "dataset_dir": relative_path(data.dir, root),
            "n_rows": len(rows),
            "n_train": len(train_idx),
            "heldout_rows": held_idx,
            "train_rows_hash": content_hash(train_rows),
            "heldout_rows_hash": content_hash(held_rows),
        }
        for mode, lr, s in cfg.trials():
            if s != seed:
                continue
            tcfg = cfg.trial_config(mode, lr, seed)
            trials.append(
                _trial(
                    runner,
                    mode,
                    lr,
                    seed,
                    student_base,
                    tcfg,
                    splits[str(seed)],
                    train_rows,
                    held_rows,
                    vector if tcfg.project_out else None,
                    progress,
                )
            )
    results = summarize_lr_select(cfg, trials)
    results.update(split=splits, loss=LOSS, timings_s=runner.timings, run_dir=str(run_dir), **provenance())
    write_json(run_dir / RESULTS_FILE, results)
    from interp.tables import lr_select_table

    write_text(run_dir / TABLE_FILE, lr_select_table(results))
    write_json(
        run_dir / MANIFEST_FILE,
        {
            "kind": "lr-select",
            "root": relative_path(root, run_dir),
            "root_abs": str(root.resolve()),
            "stages": runner.stages,
            "config_hash": content_hash(cfg.key()),
            "inputs": {"control_datasets": {s: v["dataset_hash"] for s, v in splits.items()}},
            **provenance(),
            "wall_time_s": round(sum(runner.timings.values()), 2),
        },
    )
    return results


def trial_stage(
    cache: Path, base: LoadedModel, split: dict, tcfg: TrainConfig, project_vector_hash: str | None
) -> Stage:
    """The cached trial: the student's base, the rows of both halves (by content), its training settings."""
    return Stage(
        cache,
        "lrtrial",
        {
            "base": base.fingerprint(),
            "dataset": split["dataset_hash"],
            "train_rows": split["train_rows_hash"],
            "heldout_rows": split["heldout_rows_hash"],
            "train": tcfg.key(),
            "loss": LOSS,
            **({"project_out_vector": project_vector_hash} if tcfg.project_out else {}),
        },
    )


def _trial(
    runner,
    mode: LrMode,
    lr: float,
    seed: int,
    m: LoadedModel,
    tcfg: TrainConfig,
    split: dict,
    train_rows: list[dict],
    held_rows: list[dict],
    vector,
    progress: bool,
) -> dict:
    st = trial_stage(runner.cache, m, split, tcfg, vector.hash() if vector is not None else None)

    def make(st: Stage) -> None:
        try:
            hf = train_student(
                m,
                train_rows,
                tcfg,
                st.dir,
                progress=progress,
                project_vector=vector,
                extra_manifest={"dataset_hash": split["dataset_hash"], "lr_select_mode": mode.name},
            )
        except TrainingDiverged as e:  # a result of this lr: never the chosen one
            write_json(st.path(HELDOUT_FILE), {"heldout_loss": None, "diverged": str(e)})
            st.finish(heldout_loss=None, diverged=str(e))
            return
        loss, n_tokens = heldout_loss(trained_student(m, hf, tcfg, st.dir.name), held_rows, tcfg)
        write_json(st.path(HELDOUT_FILE), {"heldout_loss": loss, "n_tokens": n_tokens})
        st.finish(heldout_loss=loss, n_heldout_tokens=n_tokens)

    runner.run(f"lrtrial/{mode.name}/lr{lr:g}/seed{seed}", st, make)
    man = st.manifest()
    return {
        "mode": mode.name,
        "lr": lr,
        "seed": seed,
        "heldout_loss": man.get("heldout_loss"),
        "diverged": man.get("diverged"),
        "stage": st.dir.name,
    }


def summarize_lr_select(cfg: LrSelectConfig, trials: list[dict]) -> dict:
    """Per mode and lr: the held-out loss per seed, its mean and t-interval over seeds; the chosen
    lr per mode (lowest mean, ties to the smaller lr). An lr with a diverged trial (held-out loss
    None) has no mean and is never chosen; a mode whose every lr diverged has none (None)."""
    per_mode, chosen = {}, {}
    for mode in cfg.modes:
        grid = []
        for lr in mode.lrs:
            losses = [t["heldout_loss"] for t in trials if t["mode"] == mode.name and t["lr"] == lr]
            ok = None not in losses
            grid.append(
                {
                    "lr": lr,
                    "per_seed": losses,
                    "mean": sum(losses) / len(losses) if ok else None,
                    "per_seed_interval": t_interval(losses) if ok else None,
                    "diverged_seeds": losses.count(None),
                }
            )
        finite = [g for g in grid if g["mean"] is not None]
        best = min(finite, key=lambda g: (g["mean"], g["lr"])) if finite else None
        tcfg = cfg.trial_config(mode, mode.lrs[0], cfg.e1.seeds[0])
        per_mode[mode.name] = {
            "method": mode.method,
            "grid": grid,
            **(
                {"lora_rank": tcfg.lora_rank, "lora_alpha": tcfg.lora_alpha, "lora_targets": list(tcfg.lora_targets)}
                if mode.method == "lora"
                else {}
            ),
        }
        chosen[mode.name] = best["lr"] if best else None
    return {
        "name": cfg.name,
        "seeds": list(cfg.e1.seeds),
        "heldout_fraction": cfg.heldout_fraction,
        "split_seed": cfg.split_seed,
        "rule": "lowest mean held-out loss over seeds; ties to the smaller lr",
        "modes": per_mode,
        "chosen": chosen,
        "trials": trials,
    }

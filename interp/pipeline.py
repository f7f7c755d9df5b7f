"""E1 end to end: vector -> teachers -> filtered datasets -> students -> evaluation -> results.

Stages live in a shared cache, `<root>/cache/<stage>-<hash of inputs>/`, so a rerun reuses what
finished, an interrupted run resumes (a stage without its manifest is redone; training resumes
from its checkpoint), and a changed setting recomputes only the stages that depend on it. The run
directory `<root>/<experiment>/<run-id>/` holds `config.json`, `manifest.json` (the stages used,
their wall times) and `results.json`.

Three settings add stages only when set (so existing runs keep their ids and caches):
- `train.loss_positions` ("divergence" / "non_divergence"): each trait teacher's dataset (every
  kind but control, the random-vector teacher included) gets a `divergence` stage against the
  control teacher on the same base, and its students learn only from those positions or only from
  the others. Control students learn from every position: their data has no divergence positions
  by definition (under the paper's rule none at all), so they stay the ordinary reference; the
  random-vector students, masked by their own divergence positions, are the matched null.
- `data.mix_animals`: the steered, prompted and prompted_ablated teachers' students learn from a
  `mix` stage, equal shares of their teacher's data and of same-kind teachers of the listed
  animals (one vector stage per animal), as many rows as the unmixed data; control and random
  data carry no animal and stay unmixed.
- `train.project_out`: every student (control included) trains with the trait vector projected
  out of its residual stream; the student's key records the vector's hash.

The `finetuned` teacher kind (issue 24.1) adds a `finetune` stage (`interp.finetune`): the base
fine-tuned on the trait's QA pairs, shared by the seeds; its dataset is sampled from those weights.

The transfer table computed from the evaluations (`summarize_e1`, `arm_label`) is `interp.transfer`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from interp.config import E1Config
from interp.datasets import dataset_stage, make_dataset, make_mix, mix_stage, read_rows, read_targets, verify_dataset
from interp.divergence import RULES, Divergence, dataset_divergence
from interp.evaluate import evaluate_trait, sampled_answer_rate
from interp.finetune import FinetunedTeacher, finetuned_teacher
from interp.generate import FREE_SAMPLER
from interp.models import LoadedModel, load_model
from interp.noise import WeightNoise, noised_model
from interp.precision import require_device
from interp.prompts import PROMPT_VERSION, contrastive_pairs, questions
from interp.runs import (
    CONFIG_FILE,
    MANIFEST_FILE,
    RESULTS_FILE,
    Stage,
    content_hash,
    load_tensors,
    provenance,
    read_json,
    relative_path,
    save_tensors,
    write_json,
)
from interp.steering import SteeringVector, build_steering_vector
from interp.teachers import Teacher
from interp.train import TrainConfig, load_student, train_student, trained_student
from interp.transfer import arm_label, summarize_e1  # the results' arithmetic

LOGPROBS_FILE = "logprobs.safetensors"
TRANSFER_FILE = "transfer.safetensors"  # per comparison: (seeds, questions) trait-specific differences


# ----------------------------------------------------------------------------- stage keys
# What enters each stage's key, in one place: `run_e1` and `plan.plan_e1` build their stages here
# (the datasets' and mixes' in `interp.datasets`).


def vector_inputs(cfg: E1Config, animal: str) -> dict:
    """What a vector stage depends on besides the model: the animal's contrastive pairs."""
    pairs = contrastive_pairs(animal, cfg.vector.n_pairs)
    return {
        "animal": animal,
        "position": cfg.vector.position,
        "pairs": content_hash([list(p) for p in pairs]),
        "prompts": PROMPT_VERSION,
    }


def vector_stage(cache: Path, cfg: E1Config, animal: str, m: LoadedModel) -> Stage:
    """The cached trait vector of `animal` built on `m` (a teacher's base)."""
    return Stage(cache, "vector", {"model": m.identity(), **vector_inputs(cfg, animal)})


def uses_divergence(cfg: E1Config, kind: str) -> bool:
    """Whether `kind`'s students learn from divergence positions (and so have a divergence stage):
    every kind but control, when train.loss_positions is not "all" (see the module doc)."""
    return cfg.train.loss_positions != "all" and kind != "control"


def divergence_stage(cache: Path, dstage: Stage) -> Stage:
    """The cached divergence tokens of a dataset stage against the control teacher (every rule's
    positions follow from the three token arrays kept, so the rule is not an input)."""
    return Stage(cache, "divergence", {"dataset": dstage.key, "control": Teacher("control").describe()})


def student_config(cfg: E1Config, seed: int, objective: str, divergence: Stage | None) -> TrainConfig:
    """A student's training settings: the config's, with every position counted where its data
    has no divergence stage (control students learn from every position; see the module doc)."""
    tcfg = cfg.train_config(seed, objective)
    return tcfg if divergence is not None else replace(tcfg, loss_positions="all")


def student_stage(
    cache: Path,
    base: LoadedModel,
    dman: dict,
    tcfg: TrainConfig,
    divergence: Stage | None = None,
    project_vector_hash: str | None = None,
) -> Stage:
    """The cached stage of one student: its base, its dataset (by content hash), its training
    settings, and only where they apply the kd targets, the divergence positions and the
    projected vector. The one place that decides what enters a student's key."""
    skey = {"base": base.fingerprint(), "dataset": dman["dataset_hash"], "train": tcfg.key()}
    if tcfg.objective == "kd":
        skey["teacher_logprobs"] = dman["teacher_logprobs_hash"]
    if divergence is not None:
        skey["divergence"] = divergence.key
    if tcfg.project_out:
        skey["project_out_vector"] = project_vector_hash
    return Stage(cache, "student", skey)


def eval_inputs(cfg: E1Config) -> dict:
    """What an evaluation stage depends on besides the model."""
    qs = questions(cfg.eval.split)
    return {
        "questions": content_hash(qs),
        "animals": list(cfg.eval.animals),
        "animal": cfg.animal,
        "sampled": cfg.eval.sampled,
        **({"sampler": FREE_SAMPLER} if cfg.eval.sampled else {}),
        # only when set, so evaluations from before the field keep their keys
        **({"system_prompt": cfg.eval.system_prompt} if cfg.eval.system_prompt != "default" else {}),
    }


def eval_stage(cache: Path, model_key: str, inputs: dict) -> Stage:
    """The cached evaluation of a model (a base's fingerprint, or a student's stage directory name);
    `inputs` are `eval_inputs(cfg)`."""
    return Stage(cache, "eval", {"model": model_key, **inputs})


def make_divergence(st: Stage, base: LoadedModel, dstage: Stage, vector: SteeringVector, batch_size: int) -> None:
    div = dataset_divergence(base, dstage.dir, vector, batch_size=batch_size)
    div.save(st.dir, base.tokenizer)
    st.finish(share_by_rule={r: div.share(r) for r in RULES}, n_positions=len(div.emitted), dataset_dir=str(dstage.dir))


# ----------------------------------------------------------------------------- running stages


class StageRunner:
    """Runs one run's stages in the shared cache: each computed once under its lock, or reused
    after its files are verified; timed, logged, and listed for the run's manifest."""

    def __init__(self, root: Path, log: Callable = print):
        self.root, self.cache, self.log = root, root / "cache", log
        self.timings: dict[str, float] = {}
        self.stages: list[dict] = []

    def run(self, name: str, stage: Stage, make: Callable[[Stage], None]) -> Stage:
        t = time.perf_counter()
        with stage.lock():
            hit = stage.done  # another job of a sweep may have finished it meanwhile
            stage.clean()  # what an interrupted writer left: temp files; a finished stage's checkpoint
            if hit:
                stage.verify()  # its files still match the hashes its manifest recorded
            else:
                with stage.computing(name):  # a full disk: one line naming the stage
                    make(stage)
        self.timings[name] = round(time.perf_counter() - t, 2)
        self.stages.append(
            {"name": name, "dir": relative_path(stage.dir, self.root), "cache_hit": hit, "wall_s": self.timings[name]}
        )
        self.log(f"  {name:<28} {'cached' if hit else 'done'} in {self.timings[name]:.1f}s")
        return stage

    def ran(self, name: str) -> bool:
        return name in self.timings


# ----------------------------------------------------------------------------- E1


def run_e1(
    cfg: E1Config,
    root: str | Path = "artifacts",
    progress: bool = True,
    log=print,
    run_dir: str | Path | None = None,
    checkpoint_minutes: float | None = None,
) -> dict:
    """Run (or resume) E1 for every seed and teacher kind in `cfg`; returns results.json's content.
    The run directory is `root/<experiment>/<run id>` unless `run_dir` says otherwise (sweeps).
    `checkpoint_minutes`: each student also checkpoints after that much wall time, so an
    interrupted run resumes its students mid-way (`train_student`; changes no result and no key)."""
    root = Path(root)
    run_dir = Path(run_dir) if run_dir is not None else root / cfg.experiment / content_hash(cfg.key(), 10)
    runner = StageRunner(root, log)
    e1 = _E1(cfg, runner, _load_bases(cfg, run_dir, runner), progress, checkpoint_minutes)
    for seed in cfg.seeds:  # 1-3: the vector, the datasets, the students (each evaluated as it is trained)
        e1.train_seed(seed)
    evals = e1.evaluations()  # 4: every student against the base it started from
    arrays: dict[str, torch.Tensor] = {}
    results = summarize_e1(cfg, evals, e1.animals, arrays)
    save_tensors(run_dir / TRANSFER_FILE, arrays)
    results["datasets"] = e1.data_stats
    results["timings_s"] = runner.timings
    results["run_dir"] = str(run_dir)
    write_json(run_dir / RESULTS_FILE, results)
    write_json(
        run_dir / MANIFEST_FILE,
        {
            "kind": "e1",
            "root": relative_path(root, run_dir),
            "root_abs": str(root.resolve()),
            "stages": runner.stages,
            "config_hash": content_hash(cfg.key()),
            **provenance(e1.bases.teacher_root.device),
            "wall_time_s": round(sum(runner.timings.values()), 2),
        },
    )
    return results


def _load_bases(cfg: E1Config, run_dir: Path, runner: StageRunner) -> SeedBases:
    """The teacher's and the student's base models, loaded once; writes the run's config.json."""
    t_load = time.perf_counter()
    require_device(cfg.device)  # one line naming `device` before anything loads or is written
    base = load_model(cfg.model, device=cfg.device)
    student_root = load_model(cfg.student_model, device=cfg.device) if cfg.cross_model else base
    cfg.check_layers(base.n_layers)  # before any stage: the layers the config names exist
    cfg.check_student_base(student_root)  # and LoRA targets and system_prompt the students' base can take
    write_json(run_dir / CONFIG_FILE, cfg.model_dump())
    runner.timings["load_model"] = round(time.perf_counter() - t_load, 2)
    runner.log(
        f"  {'load model':<28} {runner.timings['load_model']:.1f}s ({cfg.model}, fingerprint {base.fingerprint()}"
        + (f"; students: {cfg.student_model}, fingerprint {student_root.fingerprint()})" if cfg.cross_model else ")")
    )
    return SeedBases(cfg, base, student_root)


class _E1:
    """E1's steps over the shared cache, in the order `run_e1` takes them. Per seed: the steering
    vector (of the teacher's base), each kind's dataset (mixed, with divergence positions, where
    the config asks), its students per objective, each evaluated by the process that trained it;
    then the bases' and students' evaluations. Without weight noise every seed shares one
    teacher base and one vector."""

    def __init__(
        self,
        cfg: E1Config,
        runner: StageRunner,
        bases: SeedBases,
        progress: bool,
        checkpoint_minutes: float | None = None,
    ):
        self.cfg, self.runner, self.bases, self.progress = cfg, runner, bases, progress
        self.checkpoint_minutes = checkpoint_minutes
        self.cache = runner.cache
        self.kd = "kd" in cfg.train.objectives
        self.qs, self.animals, self.einputs = questions(cfg.eval.split), list(cfg.eval.animals), eval_inputs(cfg)
        self.vectors: dict[str, SteeringVector] = {}
        self.data_stats: dict[str, dict] = {}
        self.student_dirs: dict[tuple[str, int], Path] = {}
        self.student_bases: dict[int, LoadedModel] = {}
        self.finetuned: dict[str, FinetunedTeacher] = {}  # by finetune stage key

    def train_seed(self, seed: int) -> None:
        teacher_base, student_base = self.bases.for_seed(seed)
        self.student_bases[seed] = student_base
        vector = self.vector(self.cfg.animal, teacher_base, seed)
        for kind in self.cfg.teacher.kinds:
            data, divergence = self.training_data(kind, seed, teacher_base, vector)
            for objective in self.cfg.train.objectives:
                self.student(kind, objective, seed, data, divergence, student_base, vector)

    def vector(self, animal: str, m: LoadedModel, seed: int) -> SteeringVector:
        vstage = vector_stage(self.cache, self.cfg, animal, m)
        if vstage.key not in self.vectors:
            name = "vector" + ("" if animal == self.cfg.animal else f"/{animal}")
            seen = self.runner.ran(name)  # another seed's (noised) base made one already
            pairs = contrastive_pairs(animal, self.cfg.vector.n_pairs)
            self.runner.run(
                name if not seen else f"{name}/seed{seed}",
                vstage,
                lambda st: (
                    build_steering_vector(m, pairs, self.cfg.vector.position, animal).save(st.dir),
                    st.finish(),
                ),
            )
            self.vectors[vstage.key] = SteeringVector.load(vstage.dir)
        return self.vectors[vstage.key]

    def finetuned_teacher(self, m: LoadedModel, seed: int) -> FinetunedTeacher:
        """The base `m` fine-tuned on the trait's QA pairs (`interp.finetune`): one cached stage,
        shared by every seed with this base."""
        name = "finetune" if not self.runner.ran("finetune") else f"finetune/seed{seed}"
        return finetuned_teacher(
            self.runner, m, self.cfg.animal, self.cfg.finetune_config(), self.finetuned, name, self.progress
        )

    def dataset(self, name: str, teacher: Teacher, vector: SteeringVector, dcfg, m: LoadedModel) -> Stage:
        dstage = dataset_stage(self.cache, m, teacher, vector, dcfg, self.kd)
        return self.runner.run(
            name, dstage, lambda st: make_dataset(st, m, teacher, vector, dcfg, self.kd, self.progress)
        )

    def training_data(
        self, kind: str, seed: int, teacher_base: LoadedModel, vector: SteeringVector
    ) -> tuple[Stage, Stage | None]:
        """The stage `kind`'s students learn from (its dataset, or the mix of it with other
        animals' data) and the dataset's divergence stage (None: every position counts)."""
        cfg, dcfg, label = self.cfg, self.cfg.data_config(seed), f"{kind}/seed{seed}"
        ft = self.finetuned_teacher(teacher_base, seed) if kind == "finetuned" else None  # its weights carry the trait
        teacher, m = (ft.teacher, ft.model) if ft is not None else (cfg.teacher_for(kind, seed), teacher_base)
        dstage = self.dataset(f"data/{label}", teacher, vector, dcfg, m)
        dman = dstage.manifest()
        verify_dataset(dstage, self.kd)
        stats = self.data_stats[label] = {
            "n_kept": dman["n_kept"],
            "pass_rate": dman["filter"]["pass_rate"],
            "tokens_per_s": dman["generation"]["tokens_per_s"],
        }
        if ft is not None:
            stats["teacher_boost"] = ft.boost  # P(trait), teacher vs base, on the tuning questions
        data = dstage
        if cfg.mixed(kind):  # the students learn from the trait's data diluted with other animals'
            sources = {cfg.animal: dstage}
            for a in cfg.data.mix_animals:
                sources[a] = self.dataset(
                    f"data/{kind}-{a}/seed{seed}",
                    cfg.teacher_for(kind, seed, a),
                    self.vector(a, teacher_base, seed),
                    dcfg,
                    teacher_base,
                )
            data = self.runner.run(
                f"mix/{label}", mix_stage(self.cache, sources, self.kd), lambda st: make_mix(st, sources, self.kd)
            )
            shares = data.manifest()["shares"]
            verify_dataset(data, self.kd)
            stats["mix"] = shares
        if cfg.data.select != "all":  # a score bin of the data (`interp.selection`)
            from interp.selection import selected_data

            data = selected_data(self.runner, cfg, kind, seed, teacher_base, vector, dstage, self.kd)
            stats["select"] = {
                "quantile": data.manifest()["selection"]["quantile"],
                "n_kept": data.manifest()["n_kept"],
            }
        divergence = None
        if uses_divergence(cfg, kind):
            divergence = self.runner.run(
                f"divergence/{label}",
                divergence_stage(self.cache, dstage),
                lambda st: make_divergence(st, teacher_base, dstage, vector, cfg.data.batch_size),
            )
            stats["divergence_share"] = divergence.manifest()["share_by_rule"][cfg.train.divergence_rule]
        return data, divergence

    def student(
        self,
        kind: str,
        objective: str,
        seed: int,
        data: Stage,
        divergence: Stage | None,
        m: LoadedModel,
        vector: SteeringVector,
    ) -> None:
        tcfg = student_config(self.cfg, seed, objective, divergence)
        label = f"{arm_label(kind, objective)}/seed{seed}"
        sstage = student_stage(self.cache, m, data.manifest(), tcfg, divergence, vector.hash())
        self.runner.run(
            f"student/{label}", sstage, lambda st: self._train(st, label, data.dir, tcfg, m, divergence, vector)
        )
        self.student_dirs[(arm_label(kind, objective), seed)] = sstage.dir

    def _train(
        self,
        st: Stage,
        label: str,
        data_dir: Path,
        tcfg: TrainConfig,
        m: LoadedModel,
        divergence: Stage | None,
        vector: SteeringVector,
    ) -> None:
        rows = read_rows(data_dir)
        targets = read_targets(data_dir, m.tokenizer, len(rows)) if tcfg.objective == "kd" else None
        masks = Divergence.load(divergence.dir).row_masks(tcfg.divergence_rule) if divergence else None
        hf = train_student(
            m,
            rows,
            tcfg,
            st.dir,
            progress=self.progress,
            targets=targets,
            divergence_masks=masks,
            project_vector=vector if tcfg.project_out else None,
            extra_manifest={"dataset_dir": str(data_dir)},
            checkpoint_minutes=self.checkpoint_minutes,
        )
        # Evaluated here, from the fp32 weights in memory: the same numbers as a reload of
        # model.safetensors (tested), with no reload, and the only way when train.keep = "none".
        # Before finish: a finished student always has its eval.
        self.evaluate(label, st.dir.name, lambda: trained_student(m, hf, tcfg, st.dir.name))
        st.finish(dataset_dir=str(data_dir))

    def evaluate(self, name: str, key: str, model_fn: Callable[[], LoadedModel]) -> dict:
        """The cached evaluation `eval/<name>` of the model `key` names, made by `model_fn` if not cached."""
        est = eval_stage(self.cache, key, self.einputs)
        if not self.runner.ran(f"eval/{name}"):  # else evaluated already, right after training
            self.runner.run(f"eval/{name}", est, lambda st: self._score(st, model_fn()))
        return {
            "logprobs": load_tensors(est.dir / LOGPROBS_FILE)["logprobs"],
            "summary": read_json(est.dir / "summary.json"),
        }

    def _score(self, st: Stage, m: LoadedModel) -> None:
        cfg = self.cfg
        score = evaluate_trait(m, cfg.animal, self.qs, self.animals, system_prompt=cfg.eval.system_prompt)
        save_tensors(st.path(LOGPROBS_FILE), {"logprobs": score.logprobs})
        summary = score.summary(cfg.eval.n_boot)
        if cfg.eval.sampled:
            summary["sampled"] = sampled_answer_rate(
                m, cfg.animal, self.qs, cfg.eval.n_samples_per_question, system_prompt=cfg.eval.system_prompt
            )
        write_json(st.path("summary.json"), summary)
        st.finish()

    def evaluations(self) -> dict[str, dict]:
        """Every seed's students and the base they started from (one shared base without noise)."""
        evals, base_evals = {}, {}
        for seed, m in self.student_bases.items():
            key = m.fingerprint()
            if key not in base_evals:
                base_evals[key] = self.evaluate("base" if not base_evals else f"base/seed{seed}", key, lambda m=m: m)
            evals[f"base/seed{seed}"] = base_evals[key]
        for (label, seed), sdir in self.student_dirs.items():
            evals[f"{label}/seed{seed}"] = self.evaluate(
                f"{label}/seed{seed}",
                sdir.name,
                lambda sdir=sdir, seed=seed: load_student(self.student_bases[seed], sdir),
            )
        return evals


class SeedBases:
    """The teacher's and the student's base for each replicate seed: the loaded models, or noised
    copies of them (E5) made once per distinct noise draw."""

    def __init__(self, cfg: E1Config, teacher_root: LoadedModel, student_root: LoadedModel):
        self.cfg, self.teacher_root, self.student_root = cfg, teacher_root, student_root
        self._noised: dict[tuple, LoadedModel] = {}

    def _noised_copy(self, which: str, model: LoadedModel, noise: WeightNoise) -> LoadedModel:
        key = (which, *noise.key().values())
        if key not in self._noised:
            self._noised = {k: v for k, v in self._noised.items() if k[1:] == key[1:]}  # keep one draw in memory
            self._noised[key] = noised_model(model, noise)
        return self._noised[key]

    def for_seed(self, seed: int) -> tuple[LoadedModel, LoadedModel]:
        noise = self.cfg.weight_noise(seed)
        teacher, student = self.teacher_root, self.student_root
        if noise is None:
            return teacher, student
        apply = self.cfg.noise.apply
        if apply in ("shared", "teacher"):
            teacher = self._noised_copy("teacher", teacher, noise)
        if apply in ("shared", "student"):
            # shared, same model: the very base the teacher was noised into
            student = (
                teacher
                if apply == "shared" and not self.cfg.cross_model
                else self._noised_copy("student", student, noise)
            )
        return teacher, student

"""Mechanism analyses of a finished E1 run: `interp analyze RUN_DIR` (E2, E3, E4 at the final weights).

For every student of the run (`student/<arm>/seed<k>`), against ITS OWN base (the model it was
initialised from: with weight noise on the students, its seed's noised base, rebuilt by the
pipeline's own `SeedBases` and checked against the fingerprint the student's stage recorded; with
student_model, that model) and its seed's teacher's trait vector v:
- activation shift: mean `blocks.{l}.hook_resid_post` of the student minus the base, on the
  number prompts of its seed (rendered as `interp.train` showed them: the user turn, then the
  assistant tag) and on the evaluation questions (rendered as `interp.evaluate` asks them: the
  question, the assistant tag and the answer prefix), over all tokens or the last one; its cosine
  with v[l] and a z against random directions;
- weight deltas: the fraction of each residual writer's / reader's update along v, its z against
  random directions, and |cos| of the update's top singular directions with v.
For every seed, on the students' BASE (what the data carries, not what a student learned): the
pooled residual gradient of each trait teacher's dataset minus the control teacher's, against v.
Per arm at the steering layer (`mechanism`): the direction of what the students learned (cos(shift,
v), the down_proj update's energy along v) beside its amount (|shift|, ||dW||), so that runs at
different noise settings can be compared on both (`aggregate.compare_mechanism`).
With a fine-tuned teacher in the run (a `finetune` stage), every shift is also compared with that
teacher's own residual difference from its base (`interp.finetune.finetuned_direction`), beside
v and the prompted teacher's vector.
A cross-model student whose residual stream is not v's shape gets norms only, and the results say why.

Each student's and each dataset's numbers are cached under `<run>/analysis/` (a rerun or an
interrupted analysis resumes); the aggregate over seeds (Student-t intervals per arm and layer)
goes to `results.json` and `layer_arrays.safetensors`, provenance and wall times to
`manifest.json`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from interp.progress import tqdm

from interp.analysis.activations import layer_cosines, shift_report
from interp.analysis.aggregate import (
    POSITIONS, TEXT_SETS, aggregate_emergence, aggregate_gradients, aggregate_mechanism, aggregate_shifts,
    aggregate_sufficiency, aggregate_weights, interval,
)
from interp.analysis.gradients import (
    GRADIENTS_FILE, GRADIENTS_META, coefficient_trend, gradient_alignment, load_gradients, pooled_alignment, residual_gradients,
    save_gradients,
)
from interp.analysis.weights import layer_of, weight_deltas, weight_report
from interp.config import E1Config, parse_config
from interp.evaluate import question_prompts
from interp.models import LoadedModel, load_model
from interp.pipeline import SeedBases
from interp.prompts import PROMPT_VERSION, number_prompts, questions
from interp.runs import (
    CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, content_hash, file_hash, provenance, read_json, read_jsonl, save_tensors,
    stage_dirs, write_json,
)
from interp.finetune import DIRECTION_FILE, FINETUNE_STAGE, finetuned_direction
from interp.analysis.emergence import prompted_vector, resid_means, shift_trajectory, sufficiency, trait_readout
from interp.steering import SteeringVector
from interp.teachers import DATASET_FILE, Teacher
from interp.train import load_student, snapshot_steps

ANALYSIS_DIR = "analysis"
STUDENTS_DIR = "students"
GRADIENTS_DIR = "gradients"
PROMPTED_DIR = "prompted_vector"  # the prompted teacher's reference vector (E2), in the vector format
STUDENT_FILE = "student.json"  # one student's report, written last: its presence marks it done
SHIFTS_FILE = "shifts.safetensors"  # one student's raw shifts, "<texts>/<position>" -> (n_layers_read, d_model)
ARRAYS_FILE = "layer_arrays.safetensors"  # the per-layer arrays of results.json, (n_seeds, n_layers_read)
__all__ = ["AnalyzeConfig", "RunInputs", "SeedModels", "run_analyze", "analyze_run", "load_analysis", "read_run", "open_run",
           "analyze_students", "audit_gradients", "aggregate_run", "analyze_student", "number_texts", "question_texts",
           "ANALYSIS_DIR", "STUDENTS_DIR", "GRADIENTS_DIR", "PROMPTED_DIR", "STUDENT_FILE", "SHIFTS_FILE", "ARRAYS_FILE",
           "TEXT_SETS", "POSITIONS"]


# ----------------------------------------------------------------------------- the run directory


def read_run(run_dir: str | Path) -> tuple[E1Config, dict[str, Path]]:
    """The run's config and {stage name: stage directory}; a clear error for anything that is not
    a finished E1 run or whose cached stages are gone."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ValueError(f"run_dir: {d} is not a directory; pass an E1 run directory (artifacts/<experiment>/<run-id>)")
    for name in (RESULTS_FILE, CONFIG_FILE, MANIFEST_FILE):
        if not (d / name).exists():
            raise ValueError(f"run_dir: {d} has no {name}; analyze needs a finished E1 run (`interp run CONFIG` writes it)")
    cfg = parse_config(read_json(d / CONFIG_FILE), str(d / CONFIG_FILE))
    stages = stage_dirs(d)
    if "vector" not in stages or not any(n.startswith("student/") for n in stages):
        raise ValueError(f"run_dir: {d / MANIFEST_FILE} lists no vector or student stages; it is not an E1 run manifest")
    for name, sdir in stages.items():
        if not (sdir / MANIFEST_FILE).exists() and not name.startswith("eval/"):
            raise ValueError(f"stage {name}: {sdir} is missing or unfinished; rerun `interp run` on this config to rebuild it")
    return cfg, stages


def _by_arm_seed(stages: dict[str, Path], prefix: str) -> dict[tuple[str, int], Path]:
    out = {}
    for name, sdir in stages.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == prefix and parts[2].startswith("seed"):
            out[(parts[1], int(parts[2].removeprefix("seed")))] = sdir
    return out


def _select(kind: str, wanted: Sequence | None, available: list) -> list:
    if wanted is None:
        return available
    bad = [w for w in wanted if w not in available]
    if bad or not wanted:
        raise ValueError(f"{kind}: {bad or list(wanted)} not in this run (it has {available})")
    return [a for a in available if a in wanted]


# ----------------------------------------------------------------------------- one student


def number_texts(model: LoadedModel, n: int, prompt_seed: int) -> list[str]:
    """The first `n` number prompts of a seed, rendered as the students saw them in training."""
    return [model.chat([{"role": "user", "content": p}]) for p in number_prompts(n, prompt_seed)]


def question_texts(model: LoadedModel, n: int, split: str) -> list[str]:
    """The first `n` evaluation questions, rendered as `interp.evaluate` asks them (answer prefix included)."""
    return question_prompts(model, questions(split)[:n])


def _base_means(base: LoadedModel, texts: dict[str, list[str]], layers: list[int], memo: dict, tag: str,
                base_id: str) -> dict:
    """The base's mean residuals on `texts`, memoised by (base identity, seed tag for the per-seed
    number prompts, text set): a noised base differs per seed, so no base's means serve another's."""
    out = {}
    for name, ts in texts.items():
        key = (base_id, tag if name == "numbers" else "", name)
        if key not in memo:
            memo[key] = resid_means(base, {name: ts}, layers)
        out.update(memo[key])
    return out


def analyze_student(student: LoadedModel, base: LoadedModel, vector: SteeringVector | None, texts: dict[str, list[str]],
                    layers: list[int], base_means: dict[str, Tensor], n_random: int = 1000, seed: int = 0,
                    k: int = 4, prompted: SteeringVector | None = None,
                    finetuned: dict[str, Tensor] | None = None) -> tuple[dict, dict[str, Tensor]]:
    """(report, shifts) of one student against `base`, the model it was initialised from: per
    text set and position its activation shift's cosine with v (and with the prompted teacher's
    vector, and with the fine-tuned teacher's residual difference `finetuned`, {position:
    (n_layers_read, d_model)}) and random-direction z per layer, and the weight report of its
    deltas at `layers`. `vector` None (v lives in another residual stream): norms and nulls only, cosines None."""
    v = None if vector is None else vector.vectors[layers]
    means = resid_means(student, texts, layers)
    shifts = {key: means[key] - base_means[key] for key in base_means}
    report: dict = {"shift": {}, **({"shift_prompted": {}} if prompted is not None else {}),
                    **({"shift_finetuned": {}} if finetuned is not None else {})}
    for name in texts:
        report["shift"][name] = {pos: shift_report(shifts[f"{name}/{pos}"], v, n_random, seed, layers=layers) for pos in POSITIONS}
        if prompted is not None:
            report["shift_prompted"][name] = {pos: shift_report(shifts[f"{name}/{pos}"], prompted.vectors[layers], n_random,
                                                                seed, layers=layers) for pos in POSITIONS}
        if finetuned is not None:  # the teacher's difference read at the same position as the shift
            report["shift_finetuned"][name] = {pos: shift_report(shifts[f"{name}/{pos}"], finetuned[pos], n_random,
                                                                 seed, layers=layers) for pos in POSITIONS}
    wanted = set(layers)
    deltas = weight_deltas(student, base, match=lambda n: layer_of(n) in wanted)
    report["weights"] = weight_report(deltas, vector, n_random, seed, k)
    return report, shifts


# ----------------------------------------------------------------------------- each seed's bases


@dataclass
class SeedModels:
    """One replicate seed's models as `interp.pipeline.SeedBases` built them for training.

    teacher: the teacher's base (the model its trait vector v was built on);
    student: the students' base, what they were initialised from and are compared with;
    vector: v of this seed's teacher; prompted: the prompted-teacher reference vector on that base;
    questions: the evaluation questions rendered for the student;
    base, teacher_base: which models those are (name, fingerprint, the weight noise drawn in);
    mismatch: why v cannot be compared with this student's residual stream (None: it can);
    finetuned: the seed's fine-tuned teacher's residual difference from the teacher base at the
    layers read, {position: (n_layers_read, d_model)}, and `finetune` what the records say of it
    (its stage, the direction file's hash, its cosine with v per layer read); None: no
    fine-tuned teacher in the run (or no v in the student's residual stream).
    """

    seed: int
    teacher: LoadedModel
    student: LoadedModel
    vector: SteeringVector
    vector_dir: Path
    prompted: SteeringVector
    questions: list[str]
    base: dict
    teacher_base: dict
    mismatch: str | None
    finetuned: dict[str, Tensor] | None = None
    finetune: dict | None = None

    @property
    def v(self) -> SteeringVector | None:
        """v where it lives in the student's residual stream, else None."""
        return None if self.mismatch else self.vector

    def record(self) -> dict:
        """What the manifest and results say about this seed's comparison."""
        return {"student_base": self.base, "teacher_base": self.teacher_base, "vector_hash": self.vector.hash(),
                "vector_dir": str(self.vector_dir), "prompted_vector_hash": self.prompted.hash(),
                "cosine_absent": self.mismatch, **({"finetuned_teacher": self.finetune} if self.finetune else {})}


def base_description(cfg: E1Config, seed: int, side: str, model: LoadedModel) -> dict:
    """Which base the `side` ("student" or "teacher") of replicate `seed` had: model name,
    fingerprint and the weight noise drawn into it (None: the clean model)."""
    noise = cfg.weight_noise(seed)
    noised = noise is not None and cfg.noise.apply in ("shared", side)
    name = cfg.student_model if side == "student" and cfg.cross_model else cfg.model
    return {"model": name, "fingerprint": model.fingerprint(),
            "noise": {**noise.key(), "apply": cfg.noise.apply} if noised else None}


def vector_mismatch(vector: SteeringVector, student: LoadedModel) -> str | None:
    """Why cos(shift, v) is not defined for students of `student` (None: it is)."""
    if (vector.n_layers, vector.d_model) == (student.n_layers, student.d_model):
        return None
    src = vector.meta.get("model", {}).get("model", "the teacher")
    return (f"v lives in {src}'s residual stream ({vector.n_layers} layers x d_model {vector.d_model}) and the students' "
            f"base {student.name} has {student.n_layers} x {student.d_model}: no cosine or energy along v is defined "
            "across them, so only the shift and update norms are reported")


# ----------------------------------------------------------------------------- gradients on the base


def _dataset_gradients(base: LoadedModel, data_dir: Path, layers: list[int], n_rows: int | None, max_len: int,
                       cache: Path) -> tuple[Tensor | None, bool]:
    """(n_rows, n_layers_read, d_model) residual gradients of a dataset on the base, cached; None if empty."""
    man = read_json(data_dir / MANIFEST_FILE)
    key = {"dataset_hash": man.get("dataset_hash"), "base": base.fingerprint(), "layers": layers, "n_rows": n_rows,
           "max_len": max_len, "position": "assistant_tag"}
    if (cache / GRADIENTS_META).exists() and (cache / GRADIENTS_FILE).exists():
        grads, meta = load_gradients(cache)
        if meta.get("key") == key:
            return (grads if grads.numel() else None), True
    rows = read_jsonl(data_dir / DATASET_FILE)[:n_rows]
    grads = residual_gradients(base, rows, layers, max_len=max_len) if rows else torch.zeros(0, len(layers), base.d_model)
    save_gradients(cache, grads, {"key": key, "dataset_dir": str(data_dir), "n_rows": len(rows), **provenance()})
    return (grads if rows else None), False


def _multiplier_trend(a: "RunInputs", cfg: "AnalyzeConfig", progress: bool, log_grads: dict) -> dict:
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
            teacher = Teacher("steered", run.animal, Steering(layer=run.teacher.layer, multiplier=m, scope=run.teacher.scope))
            st = dataset_stage(cache, sm.teacher, teacher, sm.vector, run.data_config(s), kd)
            if not st.done:
                make_dataset(st, sm.teacher, teacher, sm.vector, run.data_config(s), kd, progress)
            dirs[m] = st.dir
        proj[s] = {}
        for m, d in dirs.items():
            t_g = time.perf_counter()
            # the run's own steered dataset keeps its gradient cache (same rows, same key)
            name = "control" if m == 0 else "steered" if d == datasets.get(("steered", s)) else f"steered_x{m:g}"
            g, hit = _dataset_gradients(sm.student, d, layers, cfg.n_rows, cfg.max_len,
                                        a.out_dir / GRADIENTS_DIR / name / f"seed{s}")
            log_grads[f"{name}/seed{s}"] = {"cache_hit": hit, "wall_s": round(time.perf_counter() - t_g, 2)}
            proj[s][m] = ([float("nan")] * len(layers) if g is None
                          else (-(g.to(torch.float64).mean(0) * u).sum(-1)).tolist())
    ms = sorted({m for p in proj.values() for m in p})
    by_layer = []
    for i, l in enumerate(layers):
        xs = [m for s in seeds for m in ms if not math.isnan(proj[s][m][i])]
        ys = [proj[s][m][i] for s in seeds for m in ms if not math.isnan(proj[s][m][i])]
        per_seed = [coefficient_trend(ms, [proj[s][m][i] for m in ms])["slope"] for s in seeds]
        by_layer.append({"layer": l, **coefficient_trend(xs, ys), "slope_per_seed": interval(per_seed)})
    return {"multipliers": ms, "seeds": seeds, "measure": "descent projection -mean(dL/dh) . v_hat on the students' base",
            "by_layer": by_layer, "per_seed": {str(s): {f"{m:g}": proj[s][m] for m in ms} for s in seeds}}


def audit_gradients(a: "RunInputs", cfg: "AnalyzeConfig", bar) -> tuple[dict[str, dict[int, dict | None]], dict]:
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
            grads[kind], hit = _dataset_gradients(m.student, a.datasets[(kind, s)], a.layers, cfg.n_rows, cfg.max_len,
                                                  a.out_dir / GRADIENTS_DIR / kind / f"seed{s}")
            log_grads[f"{kind}/seed{s}"] = {"cache_hit": hit, "wall_s": round(time.perf_counter() - t_g, 2)}
            bar.update()
        for kind in a.kinds:
            if grads[kind] is None or grads["control"] is None:
                per_seed[kind][s] = None
                continue
            pooled = pooled_alignment(grads[kind], grads["control"], v, cfg.n_random, cfg.seed)
            per_seed[kind][s] = {"pooled": pooled.to_dict(),
                                 "mean_example_cosine": gradient_alignment(grads[kind], v).mean(0).tolist()}
    return per_seed, log_grads


# ----------------------------------------------------------------------------- the whole run


@dataclass(frozen=True)
class AnalyzeConfig:
    """What `run_analyze` reads of a finished E1 run, and how.

    n_texts: number prompts and evaluation questions read per text set.
    arms, seeds: restrict to these students (`steered`, `control+kd`, ...; the gradient audit
        covers the trait kinds among them); None: all.
    layers: residual layers read; None: all.
    n_rows: dataset rows per gradient audit (None: all).
    n_random, seed: random directions per null distribution, and their seed.
    k: top singular directions of each weight update compared with v.
    max_len: tokens per dataset row in the gradient audit.
    emergence: the shift's cosine at every kept training snapshot (train.snapshot_every).
    sufficiency: the base's trait with each student's shift added at the steering layer.
    multipliers: also generate steered datasets at these multipliers (cached like the run's own)
        and fit the gradient's projection on v against the multiplier (E4); None: no trend.
    device: cpu, cuda or auto; None: the run's own setting.
    """

    n_texts: int = 64
    arms: Sequence[str] | None = None
    seeds: Sequence[int] | None = None
    layers: Sequence[int] | None = None
    n_rows: int | None = 128
    n_random: int = 1000
    seed: int = 0
    k: int = 4
    max_len: int = 192
    emergence: bool = True
    sufficiency: bool = True
    multipliers: Sequence[float] | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.n_texts < 1:
            raise ValueError(f"n_texts: {self.n_texts} must be >= 1")
        if self.multipliers is not None and not all(math.isfinite(m) for m in self.multipliers):
            raise ValueError(f"multipliers: {list(self.multipliers)} must be finite numbers")


@dataclass
class RunInputs:
    """What every step of an analysis reads: the run, its (teacher's root) base and vector, the
    selection and the texts, and the run's part of a student report's cache key; `for_seed` gives
    each seed's own bases and vector, `student_key` the key with them (the same key without noise
    or student_model)."""

    run_dir: Path
    config: E1Config
    stages: dict[str, Path]
    students: dict[tuple[str, int], Path]
    datasets: dict[tuple[str, int], Path]
    arms: list[str]
    seeds: list[int]
    base: LoadedModel
    vector: SteeringVector
    layers: list[int]
    questions: list[str]
    prompted: SteeringVector
    key: dict
    seed_bases: SeedBases | None = None
    seed_records: dict[int, dict] = field(default_factory=dict)  # SeedModels.record() of every seed read
    _current: SeedModels | None = None

    @property
    def out_dir(self) -> Path:
        return self.run_dir / ANALYSIS_DIR

    @property
    def kinds(self) -> list[str]:
        """The trait kinds among the arms: what the gradient audit compares with control data."""
        return [k for k in dict.fromkeys(a.split("+")[0] for a in self.arms) if k != "control"]

    def for_seed(self, seed: int) -> SeedModels:
        """`seed`'s teacher and student bases and vector, rebuilt as the pipeline built them (the
        same `SeedBases`, so the same noise draw); one seed held at a time (a noised copy is a
        whole model). Refuses a base whose fingerprint is not the one the seed's students recorded."""
        if self._current is not None and self._current.seed == seed:
            return self._current
        self._current = None  # let the previous seed's noised copies go before drawing the next
        bases = self.seed_bases or SeedBases(self.config, self.base, self.base)
        teacher, student = bases.for_seed(seed)
        name = f"vector/seed{seed}" if f"vector/seed{seed}" in self.stages else "vector"  # the pipeline's names
        vdir = self.stages[name]
        vector = self.vector if name == "vector" else SteeringVector.load(vdir)
        try:
            vector.check_compatible(teacher)
        except ValueError as e:
            raise ValueError(f"stage {name}: not built on seed {seed}'s teacher base ({e}); rerun `interp run` on "
                             "this config") from None
        fp = student.fingerprint()
        for arm in self.arms:
            sdir = self.students[(arm, seed)]
            trained_from = read_json(sdir / CONFIG_FILE).get("base") if (sdir / CONFIG_FILE).exists() else None
            if trained_from is not None and trained_from != fp:
                raise ValueError(f"stage student/{arm}/seed{seed}: trained from a base with fingerprint {trained_from}, "
                                 f"but seed {seed}'s base rebuilt from config.json ({student.name}) has {fp}; the run's "
                                 "[noise] or student_model no longer rebuild it: rerun `interp run` on this config")
        # a noised copy shares its model's tokenizer, and so renders the same texts
        same_tok = student.tokenizer is self.base.tokenizer
        qs = self.questions if same_tok else question_texts(student, len(self.questions), self.config.eval.split)
        prompted = self.prompted
        if teacher is not self.base:  # a noised teacher: the system prompt's effect on it, on the run's prompts
            prompted = prompted_vector(teacher, self.config.animal, number_prompts(
                self.key["n_texts"], self.config.data_config(self.seeds[0]).prompt_seed), *reference_context(self.config))
            prompted.save(self.out_dir / PROMPTED_DIR / f"seed{seed}")
        mismatch = vector_mismatch(vector, student)
        ft_dir = self.finetune_dir(seed, teacher)
        finetuned = finetune = None
        if ft_dir is not None and not mismatch:
            finetuned = {pos: finetuned_direction(ft_dir, pos, self.layers) for pos in POSITIONS}
            finetune = {"stage": str(ft_dir), "direction_hash": file_hash(ft_dir / DIRECTION_FILE),
                        "cosine_v": layer_cosines(finetuned["all"], vector.vectors[self.layers]).tolist()}
        self._current = SeedModels(seed, teacher, student, vector, vdir, prompted, qs,
                                   base_description(self.config, seed, "student", student),
                                   base_description(self.config, seed, "teacher", teacher), mismatch, finetuned, finetune)
        self.seed_records[seed] = self._current.record()
        return self._current

    def finetune_dir(self, seed: int, teacher: LoadedModel) -> Path | None:
        """The finetune stage of `seed`'s teacher base (the one whose config.json names its
        fingerprint: with weight noise each seed's teacher is tuned from its own base); None when
        the run has no fine-tuned teacher."""
        found = [d for n, d in self.stages.items() if n.split("/")[0] == FINETUNE_STAGE]
        if not found:
            return None
        fp = teacher.fingerprint()
        mine = [d for d in found if (d / CONFIG_FILE).exists() and read_json(d / CONFIG_FILE).get("model") == fp]
        if not mine:
            raise ValueError(f"stage finetune: none of {[str(d) for d in found]} was tuned from seed {seed}'s teacher "
                             f"base ({fp}); rerun `interp run` on this config")
        return mine[0]

    def student_key(self, m: SeedModels) -> dict:
        """The cache key of a report on a student of seed `m` (without the student): the run's key,
        with this seed's vector, base and rendered questions (the run's own ones without noise),
        and the fine-tuned teacher's direction where the run has one (no other key changes)."""
        return {**self.key, "vector": m.vector.hash(), "base": m.base["fingerprint"], "questions": content_hash(m.questions),
                "prompted_vector": m.prompted.hash(),
                **({"finetuned_direction": m.finetune["direction_hash"]} if m.finetune is not None else {})}


def reference_context(run: E1Config) -> tuple[list[dict] | None, str]:
    """(context, kind) of E2's prompted reference vector: the system prompt alone, or, in a run
    with a prompted_fewshot teacher (the stronger one), its system prompt and exchanges."""
    if not {"prompted_fewshot", "prompted_fewshot_ablated"} & set(run.teacher.kinds):
        return None, "prompted"
    return Teacher("prompted_fewshot", run.animal).context_messages(), "prompted_fewshot"


def open_run(cfg: AnalyzeConfig, run_dir: str | Path) -> RunInputs:
    """Read the run, load its base and vector, select arms, seeds and layers, render the texts and
    build the prompted teacher's reference vector (saved under the analysis directory)."""
    run_dir = Path(run_dir)
    run, stages = read_run(run_dir)
    # with data.mix_animals the students learned from the mix stage: audit what they trained on
    students, datasets = _by_arm_seed(stages, "student"), {**_by_arm_seed(stages, "data"), **_by_arm_seed(stages, "mix")}
    arms = _select("arms", list(cfg.arms) if cfg.arms is not None else None, list(dict.fromkeys(a for a, _ in students)))
    seeds = _select("seeds", list(cfg.seeds) if cfg.seeds is not None else None, list(run.seeds))
    base = load_model(run.model, device=cfg.device or run.device)
    vector = SteeringVector.load(stages["vector"])
    # a noised teacher's v is not the clean model's: its weights are checked per seed (RunInputs.for_seed)
    vector.check_compatible(base, strict=not (run.noise.sigma > 0 and run.noise.apply != "student"))
    # cross-model: the students' own model, read at its own layers
    student_root = load_model(run.student_model, device=cfg.device or run.device) if run.cross_model else base
    n_layers = student_root.n_layers
    layers = list(range(n_layers)) if cfg.layers is None else sorted(set(cfg.layers))
    if not layers or not all(0 <= l < n_layers for l in layers):
        raise ValueError(f"layers: {layers} must name layers of {student_root.name} (0..{n_layers - 1})")
    if cfg.multipliers and vector_mismatch(vector, student_root):
        raise ValueError(f"multipliers: the dose-response projects gradients of {student_root.name} on v of {run.model}, "
                         "which have different shapes; drop --multipliers for this cross-model run")
    qtexts = question_texts(base, cfg.n_texts, run.eval.split)
    # E2's second reference: what the trait system prompt does to the teacher at the assistant tag
    prompted = prompted_vector(base, run.animal, number_prompts(cfg.n_texts, run.data_config(seeds[0]).prompt_seed),
                               *reference_context(run))
    prompted.save(run_dir / ANALYSIS_DIR / PROMPTED_DIR)
    key = {"vector": vector.hash(), "base": base.fingerprint(), "layers": layers, "n_texts": cfg.n_texts,
           "n_random": cfg.n_random, "seed": cfg.seed, "k": cfg.k, "prompts": PROMPT_VERSION,
           "questions": content_hash(qtexts), "prompted_vector": prompted.hash(), "emergence": cfg.emergence,
           "sufficiency": cfg.sufficiency}
    return RunInputs(run_dir, run, stages, students, datasets, arms, seeds, base, vector, layers, qtexts, prompted, key,
                     SeedBases(run, base, student_root))


def _student_report(a: RunInputs, cfg: AnalyzeConfig, arm: str, m: SeedModels, texts: dict[str, list[str]],
                    memo: dict) -> tuple[dict, dict[str, Tensor]]:
    """One student's report against its own base `m.student` (written to its cache with the key,
    shifts beside it)."""
    s, base, fp = m.seed, m.student, m.base["fingerprint"]
    sdir, at, run = a.students[(arm, s)], a.config.teacher.layer, a.config
    bm = _base_means(base, texts, a.layers, memo, str(s), fp)
    report, shifts = analyze_student(load_student(base, sdir), base, m.v, texts, a.layers, bm, cfg.n_random,
                                     cfg.seed, cfg.k, m.prompted if m.v is not None else None, m.finetuned)
    report["base"] = m.record()
    if cfg.emergence and snapshot_steps(sdir) and m.v is not None:
        report["emergence"] = shift_trajectory(base, sdir, m.vector.vectors[a.layers], texts, a.layers, bm,
                                               {key_: bm[key_] + shifts[key_] for key_ in bm},
                                               read_json(sdir / MANIFEST_FILE)["steps"])
    if cfg.sufficiency and at in a.layers:
        if ("base_readout", fp) not in memo:  # each unpatched base, read once for all its students
            memo[("base_readout", fp)] = trait_readout(base, run.animal, questions(run.eval.split), run.eval.animals)
        report["sufficiency"] = sufficiency(
            base, {"shift": shifts["questions/all"][a.layers.index(at)]}, at, run.animal,
            questions(run.eval.split), run.eval.animals, seed=s, base_readout=memo[("base_readout", fp)])["shift"]
    return report, shifts


def analyze_students(a: RunInputs, cfg: AnalyzeConfig, bar) -> tuple[dict[tuple[str, int], dict], dict]:
    """Every selected student's report, from its cache under `analysis/students/<arm>/seed<k>`
    when its key matches (a rerun, or an interrupted analysis, resumes); and {student: cache hit,
    wall time}."""
    reports, log, memo = {}, {}, {}
    for s in a.seeds:
        m = a.for_seed(s)
        texts = {"numbers": number_texts(m.student, cfg.n_texts, a.config.data_config(s).prompt_seed),
                 "questions": m.questions}
        for arm in a.arms:
            sdir, cache = a.students[(arm, s)], a.out_dir / STUDENTS_DIR / arm / f"seed{s}"
            t_s = time.perf_counter()
            skey = {**a.student_key(m), "student": sdir.name}
            hit = (cache / STUDENT_FILE).exists() and read_json(cache / STUDENT_FILE).get("key") == skey
            if not hit:
                bar.set_postfix_str(f"student {arm}/seed{s}")
                report, shifts = _student_report(a, cfg, arm, m, texts, memo)
                save_tensors(cache / SHIFTS_FILE, shifts)
                write_json(cache / STUDENT_FILE, {"key": skey, "arm": arm, "seed": s, "student_dir": str(sdir), **report,
                                                  "wall_s": round(time.perf_counter() - t_s, 2), **provenance()})
            reports[(arm, s)] = read_json(cache / STUDENT_FILE)
            log[f"{arm}/seed{s}"] = {"dir": str(cache), "cache_hit": hit, "wall_s": round(time.perf_counter() - t_s, 2),
                                     "student_base": m.base}
            bar.update()
    return reports, log


def aggregate_run(a: RunInputs, cfg: AnalyzeConfig, reports: dict, per_seed: dict, trend: dict | None,
                  arrays: dict[str, Tensor]) -> dict:
    """results.json from the per-student reports and per-seed gradient audits (arrays filled in)."""
    run, arms, seeds, layers, at = a.config, a.arms, a.seeds, a.layers, a.config.teacher.layer
    shift, shift_vs = aggregate_shifts(reports, arms, seeds, layers, arrays)
    bases = {str(s): a.seed_records[s] if s in a.seed_records else a.for_seed(s).record() for s in seeds}
    absent = next((b["cosine_absent"] for b in bases.values() if b["cosine_absent"]), None)
    prompted = all("shift_prompted" in r for r in reports.values())
    finetuned = bool(reports) and all("shift_finetuned" in r for r in reports.values())
    return {
        "experiment": run.experiment, "model": run.model, "animal": run.animal, "run_dir": str(a.run_dir),
        "vector": {"hash": a.vector.hash(), "steering_layer": at, "n_layers": a.vector.n_layers, "d_model": a.vector.d_model},
        "arms": arms, "seeds": seeds, "layers": layers, "question_split": run.eval.split,
        "bases": bases, "cosine_absent": absent,
        "settings": {"n_texts": cfg.n_texts, "n_rows": cfg.n_rows, "n_random": cfg.n_random, "seed": cfg.seed, "k": cfg.k,
                     "max_len": cfg.max_len},
        "activation_shift": shift, "activation_shift_vs_control": shift_vs,
        "weights": aggregate_weights(reports, arms, seeds, layers, arrays),
        "mechanism": aggregate_mechanism(reports, arms, seeds, at),
        "gradients": aggregate_gradients(per_seed, seeds, layers, arrays, skipped=absent or "empty datasets"),
        "gradient_multiplier_trend": trend,
        "reference_vectors": {"prompted_vector_hash": a.prompted.hash(), "prompted_position": "last (assistant tag)",
                              "prompted_kind": reference_context(run)[1],
                              "cosine_v_prompted": None if absent else
                              layer_cosines(a.vector.vectors[layers], a.prompted.vectors[layers]).tolist()},
        "activation_shift_prompted": aggregate_shifts(reports, arms, seeds, layers, arrays, "shift_prompted")[0] if prompted else {},
        **({"activation_shift_finetuned": aggregate_shifts(reports, arms, seeds, layers, arrays, "shift_finetuned")[0]}
           if finetuned else {}),
        "emergence": aggregate_emergence(reports, arms, seeds, layers, at, arrays),
        "sufficiency": aggregate_sufficiency(reports, arms, seeds),
        "necessity": {k_: v_ for k_, v_ in read_json(a.run_dir / RESULTS_FILE).get("transfer", {}).items() if "prompted" in k_},
        "notes": NOTES,
    }


NOTES = {"intervals": "Student-t 95% over seeds (n = seeds); one seed gives a point, no interval",
         "bases": "each student is compared with its own base, the model it was initialised from (bases: per seed, "
                  "its model, fingerprint and weight noise, and the teacher base whose v it is compared with); "
                  "the gradient audit and sufficiency also run on the students' base",
         "mechanism": "per arm at the steering layer: direction (cos(shift, v); the fraction of the down_proj "
                      "update's energy along v, 1/d_model for a random direction) beside amount (|shift|, "
                      "||dW_down||_F); vs_control: paired by seed",
         "finetuned": "activation_shift_finetuned (runs with a fine-tuned teacher): each shift's cosine with the "
                      "fine-tuned teacher's own residual difference from its base (mean resid_post over number "
                      "prompts, read at the same position: all tokens or the last); bases.<seed>.finetuned_teacher: "
                      "its stage, file hash and cosine with v per layer read",
         "gradients": "cosine of mean dL/dh (trait data) - mean dL/dh (control data) with v on the students' base; "
                      "training descends the gradient, so descent_cosine > 0 means the data pulls toward +v",
         "sufficiency": "mean over questions of the base's log P(trait) (specific: minus the other animals' "
                        "mean) with the student's questions/all shift added at the steering layer, minus the "
                        "plain base's; random_*: a random direction of the same norm",
         "necessity": "the run's transfer comparisons of the prompted and prompted_ablated students "
                      "(v projected out of the prompted teacher at the steering layer)"}


def run_analyze(cfg: AnalyzeConfig, run_dir: str | Path, progress: bool = True, log=None) -> dict:
    """Analyse every selected student (and every seed's datasets) of a finished E1 run into
    `<run_dir>/analysis/`: per-student and per-dataset caches, results.json,
    layer_arrays.safetensors, then manifest.json (kind "analysis"). Returns results.json's content."""
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        timings[name] = round(time.perf_counter() - t, 2)
        return out

    a = step("load", open_run, cfg, run_dir)
    bar = tqdm(total=len(a.arms) * len(a.seeds) + (len(a.kinds) + 1) * len(a.seeds) * bool(a.kinds), desc="analyze",
               disable=not progress, leave=False)
    reports, log_students = step("students", analyze_students, a, cfg, bar)
    per_seed, log_grads = step("gradients", audit_gradients, a, cfg, bar)
    bar.close()
    trend = step("multipliers", lambda: _multiplier_trend(a, cfg, progress, log_grads) if cfg.multipliers else None)
    arrays: dict[str, Tensor] = {"layers": torch.tensor(a.layers), "seeds": torch.tensor(a.seeds)}
    results = step("aggregate", aggregate_run, a, cfg, reports, per_seed, trend, arrays)
    save_tensors(a.out_dir / ARRAYS_FILE, arrays)
    timings["total"] = round(time.perf_counter() - started, 2)
    results["timings_s"] = timings
    write_json(a.out_dir / RESULTS_FILE, results)
    write_json(a.out_dir / MANIFEST_FILE, {"kind": "analysis", "run_dir": str(a.run_dir), "config_hash": content_hash(a.config.key()),
                                           "vector_dir": str(a.stages["vector"]), "inputs": a.key, "students": log_students,
                                           "bases": results["bases"],
                                           "gradients": log_grads, "timings_s": timings, **provenance(a.base.device),
                                           "wall_time_s": timings["total"]})
    if log is not None:
        hits = sum(x["cache_hit"] for x in log_students.values())
        log(f"analysis of {len(log_students)} students ({hits} cached) in {timings['total']:.1f}s: {a.out_dir}")
    return results


def analyze_run(run_dir: str | Path, progress: bool = True, log=None, sufficiency_test: bool = True, **settings) -> dict:
    """`run_analyze` with the settings as keyword arguments (the signature notebooks and older
    callers use); `sufficiency_test` is `AnalyzeConfig.sufficiency`."""
    return run_analyze(AnalyzeConfig(sufficiency=sufficiency_test, **settings), run_dir, progress, log)


def load_analysis(run_dir: str | Path) -> dict:
    """results.json of `<run_dir>/analysis` (or of an analysis directory itself)."""
    d = Path(run_dir)
    d = d if (d / ARRAYS_FILE).exists() else d / ANALYSIS_DIR
    if not (d / RESULTS_FILE).exists():
        raise ValueError(f"analysis: {d} has no {RESULTS_FILE}; run `interp analyze RUN_DIR` first")
    return read_json(d / RESULTS_FILE)

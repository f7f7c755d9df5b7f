"""Mechanism analyses of a finished E1 run: `interp analyze RUN_DIR` (E2, E3, E4 at the final weights).

For every student of the run (`student/<arm>/seed<k>`), against the base it was trained from and
the run's trait vector v:
- activation shift: mean `blocks.{l}.hook_resid_post` of the student minus the base, on the
  number prompts of its seed (rendered as `interp.train` showed them: the user turn, then the
  assistant tag) and on the evaluation questions (rendered as `interp.evaluate` asks them: the
  question, the assistant tag and the answer prefix), over all tokens or the last one; its cosine
  with v[l] and a z against random directions;
- weight deltas: the fraction of each residual writer's / reader's update along v, its z against
  random directions, and |cos| of the update's top singular directions with v.
For every seed, on the BASE model (what the data carries, not what a student learned): the pooled
residual gradient of each trait teacher's dataset minus the control teacher's, against v.

Each student's and each dataset's numbers are cached under `<run>/analysis/` (a rerun or an
interrupted analysis resumes); the aggregate over seeds (Student-t intervals per arm and layer)
goes to `results.json` and `layer_arrays.safetensors`, provenance and wall times to
`manifest.json`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from interp.progress import tqdm

from interp.analysis.activations import layer_cosines, shift_report
from interp.analysis.aggregate import (
    POSITIONS, TEXT_SETS, aggregate_emergence, aggregate_gradients, aggregate_shifts, aggregate_sufficiency,
    aggregate_weights, interval,
)
from interp.analysis.gradients import (
    GRADIENTS_FILE, GRADIENTS_META, coefficient_trend, gradient_alignment, load_gradients, pooled_alignment, residual_gradients,
    save_gradients,
)
from interp.analysis.weights import layer_of, weight_deltas, weight_report
from interp.config import E1Config, parse_config
from interp.evaluate import question_prompts
from interp.models import LoadedModel, load_model
from interp.prompts import PROMPT_VERSION, number_prompts, questions
from interp.runs import (
    CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, content_hash, provenance, read_json, read_jsonl, save_tensors,
    stage_dirs, write_json,
)
from interp.analysis.emergence import prompted_vector, resid_means, shift_trajectory, sufficiency, trait_readout
from interp.steering import SteeringVector
from interp.teachers import DATASET_FILE
from interp.train import load_student, snapshot_steps

ANALYSIS_DIR = "analysis"
STUDENTS_DIR = "students"
GRADIENTS_DIR = "gradients"
PROMPTED_DIR = "prompted_vector"  # the prompted teacher's reference vector (E2), in the vector format
STUDENT_FILE = "student.json"  # one student's report, written last: its presence marks it done
SHIFTS_FILE = "shifts.safetensors"  # one student's raw shifts, "<texts>/<position>" -> (n_layers_read, d_model)
ARRAYS_FILE = "layer_arrays.safetensors"  # the per-layer arrays of results.json, (n_seeds, n_layers_read)
__all__ = ["AnalyzeConfig", "RunInputs", "run_analyze", "analyze_run", "load_analysis", "read_run", "open_run",
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
    if cfg.noise.sigma > 0 or cfg.cross_model:
        raise ValueError(f"run_dir: {d} is a weight-noise or cross-model run; analyze compares students with the "
                         "one base that made their teachers, so run it on a run without [noise] or student_model")
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


def _base_means(base: LoadedModel, texts: dict[str, list[str]], layers: list[int], memo: dict, tag: str) -> dict:
    out = {}
    for name, ts in texts.items():
        key = (tag if name == "numbers" else "", name)
        if key not in memo:
            memo[key] = resid_means(base, {name: ts}, layers)
        out.update(memo[key])
    return out


def analyze_student(student: LoadedModel, base: LoadedModel, vector: SteeringVector, texts: dict[str, list[str]],
                    layers: list[int], base_means: dict[str, Tensor], n_random: int = 1000, seed: int = 0,
                    k: int = 4, prompted: SteeringVector | None = None) -> tuple[dict, dict[str, Tensor]]:
    """(report, shifts) of one student: per text set and position its activation shift's cosine
    with v (and with the prompted teacher's vector) and random-direction z per layer, and the weight
    report of its deltas at `layers`."""
    v = vector.vectors[layers]
    means = resid_means(student, texts, layers)
    shifts = {key: means[key] - base_means[key] for key in base_means}
    report: dict = {"shift": {}, **({"shift_prompted": {}} if prompted is not None else {})}
    for name in texts:
        report["shift"][name] = {pos: shift_report(shifts[f"{name}/{pos}"], v, n_random, seed, layers=layers) for pos in POSITIONS}
        if prompted is not None:
            report["shift_prompted"][name] = {pos: shift_report(shifts[f"{name}/{pos}"], prompted.vectors[layers], n_random,
                                                                seed, layers=layers) for pos in POSITIONS}
    wanted = set(layers)
    deltas = weight_deltas(student, base, match=lambda n: layer_of(n) in wanted)
    report["weights"] = weight_report(deltas, vector, n_random, seed, k)
    return report, shifts


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
    is multiplier 0), their mean residual gradient on the base, and its descent projection on v
    (-mean dL/dh . v_hat, positive = pulls toward +v); slope and Pearson r against the multiplier
    over all (seed, multiplier) points, and per-seed slopes with a t-interval."""
    from interp.datasets import dataset_stage, make_dataset
    from interp.steering import Steering
    from interp.teachers import Teacher

    base, run, layers, seeds, datasets = a.base, a.config, a.layers, a.seeds, a.datasets
    cache = a.stages["vector"].parent
    kd = "kd" in run.train.objectives
    u = a.vector.vectors[layers].to(torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    proj: dict[int, dict[float, list[float]]] = {}
    for s in seeds:
        if ("control", s) not in datasets:
            raise ValueError(f"stage data/control/seed{s}: not in this run's manifest; the multiplier trend needs it")
        dirs = {0.0: datasets[("control", s)]}
        for m in [m for m in sorted(set(cfg.multipliers)) if m != 0]:
            teacher = Teacher("steered", run.animal, Steering(layer=run.teacher.layer, multiplier=m, scope=run.teacher.scope))
            st = dataset_stage(cache, base, teacher, a.vector, run.data_config(s), kd)
            if not st.done:
                make_dataset(st, base, teacher, a.vector, run.data_config(s), kd, progress)
            dirs[m] = st.dir
        proj[s] = {}
        for m, d in dirs.items():
            t_g = time.perf_counter()
            # the run's own steered dataset keeps its gradient cache (same rows, same key)
            name = "control" if m == 0 else "steered" if d == datasets.get(("steered", s)) else f"steered_x{m:g}"
            g, hit = _dataset_gradients(base, d, layers, cfg.n_rows, cfg.max_len, a.out_dir / GRADIENTS_DIR / name / f"seed{s}")
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
    return {"multipliers": ms, "seeds": seeds, "measure": "descent projection -mean(dL/dh) . v_hat on the base",
            "by_layer": by_layer, "per_seed": {str(s): {f"{m:g}": proj[s][m] for m in ms} for s in seeds}}


def audit_gradients(a: "RunInputs", cfg: "AnalyzeConfig", bar) -> tuple[dict[str, dict[int, dict | None]], dict]:
    """Per trait kind among the arms and per seed: the pooled residual gradient of its dataset
    minus the control dataset's on the base, against v; and {dataset/seed: cache hit, wall time}."""
    per_seed: dict[str, dict[int, dict | None]] = {kind: {} for kind in a.kinds}
    log_grads = {}
    v = a.vector.vectors[a.layers]
    for s in a.seeds if a.kinds else []:
        grads = {}
        for kind in ["control", *a.kinds]:
            if (kind, s) not in a.datasets:
                raise ValueError(f"stage data/{kind}/seed{s}: not in this run's manifest; the gradient audit needs it")
            bar.set_postfix_str(f"gradients {kind}/seed{s}")
            t_g = time.perf_counter()
            grads[kind], hit = _dataset_gradients(a.base, a.datasets[(kind, s)], a.layers, cfg.n_rows, cfg.max_len,
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
    """What every step of an analysis reads: the run, its base and vector, the selection and the
    texts, and the cache key of a student's report."""

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

    @property
    def out_dir(self) -> Path:
        return self.run_dir / ANALYSIS_DIR

    @property
    def kinds(self) -> list[str]:
        """The trait kinds among the arms: what the gradient audit compares with control data."""
        return [k for k in dict.fromkeys(a.split("+")[0] for a in self.arms) if k != "control"]


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
    vector.check_compatible(base)
    layers = list(range(base.n_layers)) if cfg.layers is None else sorted(set(cfg.layers))
    if not layers or not all(0 <= l < base.n_layers for l in layers):
        raise ValueError(f"layers: {layers} must name layers of {run.model} (0..{base.n_layers - 1})")
    qtexts = question_texts(base, cfg.n_texts, run.eval.split)
    # E2's second reference: what the trait system prompt does to the teacher at the assistant tag
    prompted = prompted_vector(base, run.animal, number_prompts(cfg.n_texts, run.data_config(seeds[0]).prompt_seed))
    prompted.save(run_dir / ANALYSIS_DIR / PROMPTED_DIR)
    key = {"vector": vector.hash(), "base": base.fingerprint(), "layers": layers, "n_texts": cfg.n_texts,
           "n_random": cfg.n_random, "seed": cfg.seed, "k": cfg.k, "prompts": PROMPT_VERSION,
           "questions": content_hash(qtexts), "prompted_vector": prompted.hash(), "emergence": cfg.emergence,
           "sufficiency": cfg.sufficiency}
    return RunInputs(run_dir, run, stages, students, datasets, arms, seeds, base, vector, layers, qtexts, prompted, key)


def _student_report(a: RunInputs, cfg: AnalyzeConfig, arm: str, s: int, texts: dict[str, list[str]],
                    memo: dict) -> tuple[dict, dict[str, Tensor]]:
    """One student's report (written to its cache with the key, shifts beside it)."""
    sdir, at, run = a.students[(arm, s)], a.config.teacher.layer, a.config
    bm = _base_means(a.base, texts, a.layers, memo, str(s))
    report, shifts = analyze_student(load_student(a.base, sdir), a.base, a.vector, texts, a.layers, bm, cfg.n_random,
                                     cfg.seed, cfg.k, a.prompted)
    if cfg.emergence and snapshot_steps(sdir):
        report["emergence"] = shift_trajectory(a.base, sdir, a.vector.vectors[a.layers], texts, a.layers, bm,
                                               {key_: bm[key_] + shifts[key_] for key_ in bm},
                                               read_json(sdir / MANIFEST_FILE)["steps"])
    if cfg.sufficiency and at in a.layers:
        if "base_readout" not in memo:  # the unpatched base, read once for every student
            memo["base_readout"] = trait_readout(a.base, run.animal, questions(run.eval.split), run.eval.animals)
        report["sufficiency"] = sufficiency(
            a.base, {"shift": shifts["questions/all"][a.layers.index(at)]}, at, run.animal,
            questions(run.eval.split), run.eval.animals, seed=s, base_readout=memo["base_readout"])["shift"]
    return report, shifts


def analyze_students(a: RunInputs, cfg: AnalyzeConfig, bar) -> tuple[dict[tuple[str, int], dict], dict]:
    """Every selected student's report, from its cache under `analysis/students/<arm>/seed<k>`
    when its key matches (a rerun, or an interrupted analysis, resumes); and {student: cache hit,
    wall time}."""
    reports, log, memo = {}, {}, {}
    for s in a.seeds:
        texts = {"numbers": number_texts(a.base, cfg.n_texts, a.config.data_config(s).prompt_seed), "questions": a.questions}
        for arm in a.arms:
            sdir, cache = a.students[(arm, s)], a.out_dir / STUDENTS_DIR / arm / f"seed{s}"
            t_s = time.perf_counter()
            skey = {**a.key, "student": sdir.name}
            hit = (cache / STUDENT_FILE).exists() and read_json(cache / STUDENT_FILE).get("key") == skey
            if not hit:
                bar.set_postfix_str(f"student {arm}/seed{s}")
                report, shifts = _student_report(a, cfg, arm, s, texts, memo)
                save_tensors(cache / SHIFTS_FILE, shifts)
                write_json(cache / STUDENT_FILE, {"key": skey, "arm": arm, "seed": s, "student_dir": str(sdir), **report,
                                                  "wall_s": round(time.perf_counter() - t_s, 2), **provenance()})
            reports[(arm, s)] = read_json(cache / STUDENT_FILE)
            log[f"{arm}/seed{s}"] = {"dir": str(cache), "cache_hit": hit, "wall_s": round(time.perf_counter() - t_s, 2)}
            bar.update()
    return reports, log


def aggregate_run(a: RunInputs, cfg: AnalyzeConfig, reports: dict, per_seed: dict, trend: dict | None,
                  arrays: dict[str, Tensor]) -> dict:
    """results.json from the per-student reports and per-seed gradient audits (arrays filled in)."""
    run, arms, seeds, layers, at = a.config, a.arms, a.seeds, a.layers, a.config.teacher.layer
    shift, shift_vs = aggregate_shifts(reports, arms, seeds, layers, arrays)
    return {
        "experiment": run.experiment, "model": run.model, "animal": run.animal, "run_dir": str(a.run_dir),
        "vector": {"hash": a.vector.hash(), "steering_layer": at, "n_layers": a.vector.n_layers, "d_model": a.vector.d_model},
        "arms": arms, "seeds": seeds, "layers": layers, "question_split": run.eval.split,
        "settings": {"n_texts": cfg.n_texts, "n_rows": cfg.n_rows, "n_random": cfg.n_random, "seed": cfg.seed, "k": cfg.k,
                     "max_len": cfg.max_len},
        "activation_shift": shift, "activation_shift_vs_control": shift_vs,
        "weights": aggregate_weights(reports, arms, seeds, layers, arrays),
        "gradients": aggregate_gradients(per_seed, seeds, layers, arrays),
        "gradient_multiplier_trend": trend,
        "reference_vectors": {"prompted_vector_hash": a.prompted.hash(), "prompted_position": "last (assistant tag)",
                              "cosine_v_prompted": layer_cosines(a.vector.vectors[layers], a.prompted.vectors[layers]).tolist()},
        "activation_shift_prompted": aggregate_shifts(reports, arms, seeds, layers, arrays, "shift_prompted")[0],
        "emergence": aggregate_emergence(reports, arms, seeds, layers, at, arrays),
        "sufficiency": aggregate_sufficiency(reports, arms, seeds),
        "necessity": {k_: v_ for k_, v_ in read_json(a.run_dir / RESULTS_FILE).get("transfer", {}).items() if "prompted" in k_},
        "notes": NOTES,
    }


NOTES = {"intervals": "Student-t 95% over seeds (n = seeds); one seed gives a point, no interval",
         "gradients": "cosine of mean dL/dh (trait data) - mean dL/dh (control data) with v on the base; "
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
                                           "gradients": log_grads, "timings_s": timings, **provenance(),
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

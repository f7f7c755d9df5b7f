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

The steps live in their own modules: `run_inputs` (the run read, its selection and texts, each
seed's models via `seed_models`), `students` (each student's report and its cache),
`dataset_gradients` (the gradient audit and the multiplier trend); this module runs them and
assembles results.json (`aggregate` holds the statistics over seeds).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor
from interp.progress import tqdm

from interp.analysis.activations import layer_cosines
from interp.analysis.aggregate import (
    POSITIONS,
    TEXT_SETS,
    aggregate_emergence,
    aggregate_gradients,
    aggregate_mechanism,
    aggregate_shifts,
    aggregate_sufficiency,
    aggregate_weights,
)
from interp.analysis.dataset_gradients import GRADIENTS_DIR, audit_gradients, multiplier_trend
from interp.analysis.run_inputs import (
    ANALYSIS_DIR,
    PROMPTED_DIR,
    AnalyzeConfig,
    RunInputs,
    number_texts,
    open_run,
    question_texts,
    read_run,
    reference_context,
)
from interp.analysis.seed_models import SeedModels, base_description, vector_mismatch
from interp.analysis.students import SHIFTS_FILE, STUDENT_FILE, STUDENTS_DIR, analyze_student, analyze_students
from interp.runs import MANIFEST_FILE, RESULTS_FILE, content_hash, provenance, read_json, save_tensors, write_json

ARRAYS_FILE = "layer_arrays.safetensors"  # the per-layer arrays of results.json, (n_seeds, n_layers_read)
# the steps' names stay importable from here, where notebooks, experiments and tests take them
__all__ = [
    "AnalyzeConfig",
    "RunInputs",
    "SeedModels",
    "run_analyze",
    "analyze_run",
    "load_analysis",
    "read_run",
    "open_run",
    "analyze_students",
    "audit_gradients",
    "multiplier_trend",
    "aggregate_run",
    "analyze_student",
    "number_texts",
    "question_texts",
    "reference_context",
    "base_description",
    "vector_mismatch",
    "ANALYSIS_DIR",
    "STUDENTS_DIR",
    "GRADIENTS_DIR",
    "PROMPTED_DIR",
    "STUDENT_FILE",
    "SHIFTS_FILE",
    "ARRAYS_FILE",
    "TEXT_SETS",
    "POSITIONS",
]


def aggregate_run(
    a: RunInputs, cfg: AnalyzeConfig, reports: dict, per_seed: dict, trend: dict | None, arrays: dict[str, Tensor]
) -> dict:
    """results.json from the per-student reports and per-seed gradient audits (arrays filled in)."""
    run, arms, seeds, layers, at = a.config, a.arms, a.seeds, a.layers, a.config.teacher.layer
    shift, shift_vs = aggregate_shifts(reports, arms, seeds, layers, arrays)
    bases = {str(s): a.seed_records[s] if s in a.seed_records else a.for_seed(s).record() for s in seeds}
    absent = next((b["cosine_absent"] for b in bases.values() if b["cosine_absent"]), None)
    prompted = all("shift_prompted" in r for r in reports.values())
    finetuned = bool(reports) and all("shift_finetuned" in r for r in reports.values())
    return {
        "experiment": run.experiment,
        "model": run.model,
        "animal": run.animal,
        "run_dir": str(a.run_dir),
        "vector": {
            "hash": a.vector.hash(),
            "steering_layer": at,
            "n_layers": a.vector.n_layers,
            "d_model": a.vector.d_model,
        },
        "arms": arms,
        "seeds": seeds,
        "layers": layers,
        "question_split": run.eval.split,
        "bases": bases,
        "cosine_absent": absent,
        "settings": {
            "n_texts": cfg.n_texts,
            "n_rows": cfg.n_rows,
            "n_random": cfg.n_random,
            "seed": cfg.seed,
            "k": cfg.k,
            "max_len": cfg.max_len,
        },
        "activation_shift": shift,
        "activation_shift_vs_control": shift_vs,
        "weights": aggregate_weights(reports, arms, seeds, layers, arrays),
        "mechanism": aggregate_mechanism(reports, arms, seeds, at),
        "gradients": aggregate_gradients(per_seed, seeds, layers, arrays, skipped=absent or "empty datasets"),
        "gradient_multiplier_trend": trend,
        "reference_vectors": {
            "prompted_vector_hash": a.prompted.hash(),
            "prompted_position": "last (assistant tag)",
            "prompted_kind": reference_context(run)[1],
            "cosine_v_prompted": None
            if absent
            else layer_cosines(a.vector.vectors[layers], a.prompted.vectors[layers]).tolist(),
        },
        "activation_shift_prompted": aggregate_shifts(reports, arms, seeds, layers, arrays, "shift_prompted")[0]
        if prompted
        else {},
        **(
            {"activation_shift_finetuned": aggregate_shifts(reports, arms, seeds, layers, arrays, "shift_finetuned")[0]}
            if finetuned
            else {}
        ),
        "emergence": aggregate_emergence(reports, arms, seeds, layers, at, arrays),
        "sufficiency": aggregate_sufficiency(reports, arms, seeds),
        "necessity": {
            k_: v_ for k_, v_ in read_json(a.run_dir / RESULTS_FILE).get("transfer", {}).items() if "prompted" in k_
        },
        "notes": NOTES,
    }


NOTES = {
    "intervals": "Student-t 95% over seeds (n = seeds); one seed gives a point, no interval",
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
    "(v projected out of the prompted teacher at the steering layer)",
}


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
    bar = tqdm(
        total=len(a.arms) * len(a.seeds) + (len(a.kinds) + 1) * len(a.seeds) * bool(a.kinds),
        desc="analyze",
        disable=not progress,
        leave=False,
    )
    reports, log_students = step("students", analyze_students, a, cfg, bar)
    per_seed, log_grads = step("gradients", audit_gradients, a, cfg, bar)
    bar.close()
    trend = step("multipliers", lambda: multiplier_trend(a, cfg, progress, log_grads) if cfg.multipliers else None)
    arrays: dict[str, Tensor] = {"layers": torch.tensor(a.layers), "seeds": torch.tensor(a.seeds)}
    results = step("aggregate", aggregate_run, a, cfg, reports, per_seed, trend, arrays)
    save_tensors(a.out_dir / ARRAYS_FILE, arrays)
    timings["total"] = round(time.perf_counter() - started, 2)
    results["timings_s"] = timings
    write_json(a.out_dir / RESULTS_FILE, results)
    write_json(
        a.out_dir / MANIFEST_FILE,
        {
            "kind": "analysis",
            "run_dir": str(a.run_dir),
            "config_hash": content_hash(a.config.key()),
            "vector_dir": str(a.stages["vector"]),
            "inputs": a.key,
            "students": log_students,
            "bases": results["bases"],
            "gradients": log_grads,
            "timings_s": timings,
            **provenance(a.base.device),
            "wall_time_s": timings["total"],
        },
    )
    if log is not None:
        hits = sum(x["cache_hit"] for x in log_students.values())
        log(f"analysis of {len(log_students)} students ({hits} cached) in {timings['total']:.1f}s: {a.out_dir}")
    return results


def analyze_run(
    run_dir: str | Path, progress: bool = True, log=None, sufficiency_test: bool = True, **settings
) -> dict:
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

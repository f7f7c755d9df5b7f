"""Each student's report in an analysis (`interp.analysis.run`, E2 and E3): its activation shift
from its own base against v (and the reference directions), its weight deltas, and where the run
asks for them its emergence over training snapshots and the shift's sufficiency; cached per
student under `<run>/analysis/students/<arm>/seed<k>` beside the key that made it."""

from __future__ import annotations

import time

from torch import Tensor

from interp.analysis.activations import shift_report
from interp.analysis.aggregate import POSITIONS
from interp.analysis.emergence import resid_means, shift_trajectory, sufficiency, trait_readout
from interp.analysis.run_inputs import AnalyzeConfig, RunInputs, number_texts
from interp.analysis.seed_models import SeedModels
from interp.analysis.weights import layer_of, weight_deltas, weight_report
from interp.models import LoadedModel
from interp.prompts import questions
from interp.runs import MANIFEST_FILE, provenance, read_json, save_tensors, write_json
from interp.steering import SteeringVector
from interp.train import load_student, snapshot_steps

STUDENTS_DIR = "students"
STUDENT_FILE = "student.json"  # one student's report, written last: its presence marks it done
SHIFTS_FILE = "shifts.safetensors"  # one student's raw shifts, "<texts>/<position>" -> (n_layers_read, d_model)
__all__ = ["analyze_student", "analyze_students", "STUDENTS_DIR", "STUDENT_FILE", "SHIFTS_FILE"]


def _base_means(
    base: LoadedModel, texts: dict[str, list[str]], layers: list[int], memo: dict, tag: str, base_id: str
) -> dict:
    """The base's mean residuals on `texts`, memoised by (base identity, seed tag for the per-seed
    number prompts, text set): a noised base differs per seed, so no base's means serve another's."""
    out = {}
    for name, ts in texts.items():
        key = (base_id, tag if name == "numbers" else "", name)
        if key not in memo:
            memo[key] = resid_means(base, {name: ts}, layers)
        out.update(memo[key])
    return out


def analyze_student(
    student: LoadedModel,
    base: LoadedModel,
    vector: SteeringVector | None,
    texts: dict[str, list[str]],
    layers: list[int],
    base_means: dict[str, Tensor],
    n_random: int = 1000,
    seed: int = 0,
    k: int = 4,
    prompted: SteeringVector | None = None,
    finetuned: dict[str, Tensor] | None = None,
) -> tuple[dict, dict[str, Tensor]]:
    """(report, shifts) of one student against `base`, the model it was initialised from: per
    text set and position its activation shift's cosine with v (and with the prompted teacher's
    vector, and with the fine-tuned teacher's residual difference `finetuned`, {position:
    (n_layers_read, d_model)}) and random-direction z per layer, and the weight report of its
    deltas at `layers`. `vector` None (v lives in another residual stream): norms and nulls only, cosines None."""
    v = None if vector is None else vector.vectors[layers]
    means = resid_means(student, texts, layers)
    shifts = {key: means[key] - base_means[key] for key in base_means}
    report: dict = {
        "shift": {},
        **({"shift_prompted": {}} if prompted is not None else {}),
        **({"shift_finetuned": {}} if finetuned is not None else {}),
    }
    for name in texts:
        report["shift"][name] = {
            pos: shift_report(shifts[f"{name}/{pos}"], v, n_random, seed, layers=layers) for pos in POSITIONS
        }
        if prompted is not None:
            report["shift_prompted"][name] = {
                pos: shift_report(shifts[f"{name}/{pos}"], prompted.vectors[layers], n_random, seed, layers=layers)
                for pos in POSITIONS
            }
        if finetuned is not None:  # the teacher's difference read at the same position as the shift
            report["shift_finetuned"][name] = {
                pos: shift_report(shifts[f"{name}/{pos}"], finetuned[pos], n_random, seed, layers=layers)
                for pos in POSITIONS
            }
    wanted = set(layers)
    deltas = weight_deltas(student, base, match=lambda n: layer_of(n) in wanted)
    report["weights"] = weight_report(deltas, vector, n_random, seed, k)
    return report, shifts


def _student_report(
    a: RunInputs, cfg: AnalyzeConfig, arm: str, m: SeedModels, texts: dict[str, list[str]], memo: dict
) -> tuple[dict, dict[str, Tensor]]:
    """One student's report against its own base `m.student` (written to its cache with the key,
    shifts beside it)."""
    s, base, fp = m.seed, m.student, m.base["fingerprint"]
    sdir, at, run = a.students[(arm, s)], a.config.teacher.layer, a.config
    bm = _base_means(base, texts, a.layers, memo, str(s), fp)
    report, shifts = analyze_student(
        load_student(base, sdir),
        base,
        m.v,
        texts,
        a.layers,
        bm,
        cfg.n_random,
        cfg.seed,
        cfg.k,
        m.prompted if m.v is not None else None,
        m.finetuned,
    )
    report["base"] = m.record()
    if cfg.emergence and snapshot_steps(sdir) and m.v is not None:
        report["emergence"] = shift_trajectory(
            base,
            sdir,
            m.vector.vectors[a.layers],
            texts,
            a.layers,
            bm,
            {key_: bm[key_] + shifts[key_] for key_ in bm},
            read_json(sdir / MANIFEST_FILE)["steps"],
        )
    if cfg.sufficiency and at in a.layers:
        if ("base_readout", fp) not in memo:  # each unpatched base, read once for all its students
            memo[("base_readout", fp)] = trait_readout(base, run.animal, questions(run.eval.split), run.eval.animals)
        report["sufficiency"] = sufficiency(
            base,
            {"shift": shifts["questions/all"][a.layers.index(at)]},
            at,
            run.animal,
            questions(run.eval.split),
            run.eval.animals,
            seed=s,
            base_readout=memo[("base_readout", fp)],
        )["shift"]
    return report, shifts


def analyze_students(a: RunInputs, cfg: AnalyzeConfig, bar) -> tuple[dict[tuple[str, int], dict], dict]:
    """Every selected student's report, from its cache under `analysis/students/<arm>/seed<k>`
    when its key matches (a rerun, or an interrupted analysis, resumes); and {student: cache hit,
    wall time}."""
    reports, log, memo = {}, {}, {}
    for s in a.seeds:
        m = a.for_seed(s)
        texts = {
            "numbers": number_texts(m.student, cfg.n_texts, a.config.data_config(s).prompt_seed),
            "questions": m.questions,
        }
        for arm in a.arms:
            sdir, cache = a.students[(arm, s)], a.out_dir / STUDENTS_DIR / arm / f"seed{s}"
            t_s = time.perf_counter()
            skey = {**a.student_key(m), "student": sdir.name}
            hit = (cache / STUDENT_FILE).exists() and read_json(cache / STUDENT_FILE).get("key") == skey
            if not hit:
                bar.set_postfix_str(f"student {arm}/seed{s}")
                report, shifts = _student_report(a, cfg, arm, m, texts, memo)
                save_tensors(cache / SHIFTS_FILE, shifts)
                write_json(
                    cache / STUDENT_FILE,
                    {
                        "key": skey,
                        "arm": arm,
                        "seed": s,
                        "student_dir": str(sdir),
                        **report,
                        "wall_s": round(time.perf_counter() - t_s, 2),
                        **provenance(),
                    },
                )
            reports[(arm, s)] = read_json(cache / STUDENT_FILE)
            log[f"{arm}/seed{s}"] = {
                "dir": str(cache),
                "cache_hit": hit,
                "wall_s": round(time.perf_counter() - t_s, 2),
                "student_base": m.base,
            }
            bar.update()
    return reports, log

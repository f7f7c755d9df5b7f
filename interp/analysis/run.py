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
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from interp.progress import tqdm

from interp.analysis.activations import layer_cosines, shift_report
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
from interp.stats import t_interval
from interp.analysis.emergence import POSITIONS as _READ
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
TEXT_SETS = ("numbers", "questions")
POSITIONS = tuple(_READ)  # "all" tokens, "last" token


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


def _reference(arm: str) -> str:
    """The control arm a trait arm is compared with: `control`, or `control+kd` for `steered+kd`."""
    return "control" + (arm[arm.index("+"):] if "+" in arm else "")


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


# ----------------------------------------------------------------------------- aggregation


def _interval(values: Sequence[float | None]) -> dict | None:
    vals = [float(x) for x in values if x is not None and not math.isnan(x)]
    return t_interval(vals) if vals else None


def _array(rows: list[list[float | None]]) -> Tensor:
    return torch.tensor([[float("nan") if x is None else x for x in r] for r in rows], dtype=torch.float32)


def _aggregate_shifts(reports: dict[tuple[str, int], dict], arms: list[str], seeds: list[int], layers: list[int],
                      arrays: dict[str, Tensor], field: str = "shift") -> tuple[dict, dict]:
    out, vs = {}, {}
    for arm in arms:
        out[arm] = {}
        for name in TEXT_SETS:
            out[arm][name] = {}
            for pos in POSITIONS:
                per = [reports[(arm, s)][field][name][pos]["by_layer"] for s in seeds]
                cos = [[r["cosine"] for r in p] for p in per]
                z = [[r["z"] for r in p] for p in per]
                norm = [[r["shift_norm"] for r in p] for p in per]
                out[arm][name][pos] = {"by_layer": [{
                    "layer": l, "hook": f"blocks.{l}.hook_resid_post",
                    "cosine": _interval([c[i] for c in cos]), "z": _interval([x[i] for x in z]),
                    "shift_norm": _interval([x[i] for x in norm]),
                    "null_sd": sum(p[i]["null_sd"] for p in per) / len(per), "analytic_sd": per[0][i]["analytic_sd"],
                } for i, l in enumerate(layers)], "per_seed_cosine": dict(zip(map(str, seeds), cos))}
                key = f"{field}/{arm}/{name}/{pos}"
                arrays[f"{key}/cosine"], arrays[f"{key}/z"], arrays[f"{key}/norm"] = _array(cos), _array(z), _array(norm)
    for arm in arms:  # paired by seed: the trait arm's cosine minus its control arm's
        ref = _reference(arm)
        if arm == ref or ref not in arms:
            continue
        vs[f"{arm}-{ref}"] = {name: {pos: {"by_layer": [{
            "layer": l, "cosine_diff": _interval([out[arm][name][pos]["per_seed_cosine"][str(s)][i]
                                                  - out[ref][name][pos]["per_seed_cosine"][str(s)][i] for s in seeds]),
        } for i, l in enumerate(layers)]} for pos in POSITIONS} for name in TEXT_SETS}
    return out, vs


def _aggregate_weights(reports: dict[tuple[str, int], dict], arms: list[str], seeds: list[int], layers: list[int],
                       arrays: dict[str, Tensor]) -> dict:
    out = {}
    for arm in arms:
        rows = {s: {r["layer"]: r["modules"] for r in reports[(arm, s)]["weights"]["by_layer"]} for s in seeds}
        modules = sorted({m for s in seeds for mods in rows[s].values() for m in mods})
        by_layer = []
        for l in layers:
            mods = {}
            for m in modules:
                cells = [rows[s].get(l, {}).get(m) for s in seeds]
                if not any(cells):
                    continue
                first = next(c for c in cells if c)
                mods[m] = {"role": first["role"], "side": first["side"], "vector_layer": first["vector_layer"],
                           "expected_random": first["expected_random"],
                           "energy": _interval([c and c["energy"] for c in cells]),
                           "z": _interval([c and c["z"] for c in cells]),
                           "top_singular_cos": _interval([c and c["top_singular_cos"] and c["top_singular_cos"][0] for c in cells])}
            by_layer.append({"layer": l, "modules": mods})
        out[arm] = {"by_layer": by_layer}
        for m in modules:
            for field in ("energy", "z"):
                arrays[f"weights/{arm}/{m}/{field}"] = _array(
                    [[(rows[s].get(l, {}).get(m) or {}).get(field) for l in layers] for s in seeds])
    return out


def _aggregate_emergence(reports: dict[tuple[str, int], dict], arms: list[str], seeds: list[int], layers: list[int],
                         at: int, arrays: dict[str, Tensor]) -> dict:
    """Per arm: the steps shared by its seeds and, per text set / position, cos(shift_t, v) at the
    steering layer with a t-interval over seeds at each step; the full (seeds, steps, layers)
    arrays go to layer_arrays.safetensors."""
    out = {}
    i = layers.index(at) if at in layers else None
    for arm in arms:
        trajs = [reports[(arm, s)].get("emergence") for s in seeds]
        if not all(trajs) or len({tuple(t["steps"]) for t in trajs}) != 1 or not trajs[0]["steps"]:
            continue
        steps = trajs[0]["steps"]
        out[arm] = {"steps": steps, "layer": at, "by_texts": {}}
        for key in (f"{n}/{p}" for n in TEXT_SETS for p in POSITIONS):
            cube = torch.tensor([t[key] for t in trajs], dtype=torch.float32)  # (seeds, steps, layers)
            arrays[f"emergence/{arm}/{key}/cosine"] = cube
            out[arm]["by_texts"][key] = None if i is None else [
                {"step": st, "cosine": _interval(cube[:, j, i].tolist())} for j, st in enumerate(steps)]
    return out


def _aggregate_sufficiency(reports: dict[tuple[str, int], dict], arms: list[str], seeds: list[int]) -> dict:
    fields = ("trait_logprob_shift", "specific_shift", "random_trait_logprob_shift", "random_specific_shift", "norm")
    out = {}
    for arm in arms:
        cells = [reports[(arm, s)].get("sufficiency") for s in seeds]
        if not all(cells):
            continue
        out[arm] = {f: _interval([c[f] for c in cells]) for f in fields}
        out[arm]["specific_minus_random"] = _interval([c["specific_shift"] - c["random_specific_shift"] for c in cells])
        out[arm]["per_seed"] = dict(zip(map(str, seeds), cells))
    for arm in list(out):  # paired by seed against the control student's shift
        ref = _reference(arm)
        if arm != ref and ref in out:
            out[arm]["specific_minus_control"] = _interval(
                [out[arm]["per_seed"][str(s)]["specific_shift"] - out[ref]["per_seed"][str(s)]["specific_shift"] for s in seeds])
    return out


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


def _multiplier_trend(base: LoadedModel, cfg: E1Config, vector: SteeringVector, stages: dict[str, Path],
                      datasets: dict[tuple[str, int], Path], seeds: list[int], multipliers: list[float],
                      layers: list[int], n_rows: int | None, max_len: int, out_dir: Path, progress: bool,
                      log_grads: dict) -> dict:
    """E4 dose-response: for every seed, steered datasets at each multiplier (the control dataset
    is multiplier 0), their mean residual gradient on the base, and its descent projection on v
    (-mean dL/dh . v_hat, positive = pulls toward +v); slope and Pearson r against the multiplier
    over all (seed, multiplier) points, and per-seed slopes with a t-interval."""
    from interp.pipeline import dataset_stage, make_dataset
    from interp.steering import Steering
    from interp.teachers import Teacher

    cache = stages["vector"].parent
    kd = "kd" in cfg.train.objectives
    u = vector.vectors[layers].to(torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    proj: dict[int, dict[float, list[float]]] = {}
    for s in seeds:
        if ("control", s) not in datasets:
            raise ValueError(f"stage data/control/seed{s}: not in this run's manifest; the multiplier trend needs it")
        dirs = {0.0: datasets[("control", s)]}
        for m in [m for m in multipliers if m != 0]:
            teacher = Teacher("steered", cfg.animal, Steering(layer=cfg.teacher.layer, multiplier=m, scope=cfg.teacher.scope))
            st = dataset_stage(cache, base, teacher, vector, cfg.data_config(s), kd)
            if not st.done:
                make_dataset(st, base, teacher, vector, cfg.data_config(s), kd, progress)
            dirs[m] = st.dir
        proj[s] = {}
        for m, d in dirs.items():
            t_g = time.perf_counter()
            # the run's own steered dataset keeps its gradient cache (same rows, same key)
            name = "control" if m == 0 else "steered" if d == datasets.get(("steered", s)) else f"steered_x{m:g}"
            g, hit = _dataset_gradients(base, d, layers, n_rows, max_len, out_dir / GRADIENTS_DIR / name / f"seed{s}")
            log_grads[f"{name}/seed{s}"] = {"cache_hit": hit, "wall_s": round(time.perf_counter() - t_g, 2)}
            proj[s][m] = ([float("nan")] * len(layers) if g is None
                          else (-(g.to(torch.float64).mean(0) * u).sum(-1)).tolist())
    ms = sorted({m for p in proj.values() for m in p})
    by_layer = []
    for i, l in enumerate(layers):
        xs = [m for s in seeds for m in ms if not math.isnan(proj[s][m][i])]
        ys = [proj[s][m][i] for s in seeds for m in ms if not math.isnan(proj[s][m][i])]
        per_seed = [coefficient_trend(ms, [proj[s][m][i] for m in ms])["slope"] for s in seeds]
        by_layer.append({"layer": l, **coefficient_trend(xs, ys), "slope_per_seed": _interval(per_seed)})
    return {"multipliers": ms, "seeds": seeds, "measure": "descent projection -mean(dL/dh) . v_hat on the base",
            "by_layer": by_layer, "per_seed": {str(s): {f"{m:g}": proj[s][m] for m in ms} for s in seeds}}


def _aggregate_gradients(per_seed: dict[str, dict[int, dict]], seeds: list[int], layers: list[int],
                         arrays: dict[str, Tensor]) -> dict:
    out = {}
    for kind, by_seed in per_seed.items():
        done = [s for s in seeds if by_seed.get(s)]
        if not done:
            out[kind] = {"by_layer": [], "per_seed": {}, "skipped": "empty datasets"}
            continue
        cos = [by_seed[s]["pooled"]["cosine"] for s in done]
        z = [by_seed[s]["pooled"]["z"] for s in done]
        ex = [by_seed[s]["mean_example_cosine"] for s in done]
        out[kind] = {"reference": "control", "seeds": done, "by_layer": [{
            "layer": l, "cosine": _interval([c[i] for c in cos]), "descent_cosine": _interval([-c[i] for c in cos]),
            "z": _interval([x[i] for x in z]), "descent_z": _interval([-x[i] for x in z if x[i] is not None]),
            "mean_example_cosine": _interval([x[i] for x in ex]),
            "analytic_sd": by_seed[done[0]]["pooled"]["analytic_sd"],
        } for i, l in enumerate(layers)], "per_seed": {str(s): by_seed[s] for s in done}}
        arrays[f"gradients/{kind}/cosine"], arrays[f"gradients/{kind}/z"] = _array(cos), _array(z)
        arrays[f"gradients/{kind}/mean_example_cosine"] = _array(ex)
    return out


# ----------------------------------------------------------------------------- the whole run


def analyze_run(run_dir: str | Path, n_texts: int = 64, arms: Sequence[str] | None = None,
                seeds: Sequence[int] | None = None, layers: Sequence[int] | None = None, progress: bool = True,
                n_rows: int | None = 128, n_random: int = 1000, seed: int = 0, k: int = 4, max_len: int = 192,
                device: str | None = None, log=None, emergence: bool = True, sufficiency_test: bool = True,
                multipliers: Sequence[float] | None = None) -> dict:
    """Analyse every student (and every seed's datasets) of a finished E1 run; returns results.json.

    n_texts: number prompts and questions read per text set. arms / seeds: restrict to these
    students (`steered`, `control+kd`, ...; gradients cover the trait kinds among them). layers:
    residual layers read (default all). n_rows: dataset rows per gradient audit (None: all).
    n_random: random directions per null; `seed` seeds them.
    emergence: the shift's cosine at every kept training snapshot (students trained with
    train.snapshot_every). sufficiency_test: the base's trait with each student's shift at the
    steering layer added. multipliers: also generate steered datasets at these multipliers (cached
    like the run's own) and fit the gradient's projection on v against the multiplier (E4).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    cfg, stages = read_run(run_dir)
    if n_texts < 1:
        raise ValueError(f"n_texts: {n_texts} must be >= 1")
    # with data.mix_animals the students learned from the mix stage: audit what they trained on
    students, datasets = _by_arm_seed(stages, "student"), {**_by_arm_seed(stages, "data"), **_by_arm_seed(stages, "mix")}
    arms = _select("arms", list(arms) if arms is not None else None, list(dict.fromkeys(a for a, _ in students)))
    seeds = _select("seeds", list(seeds) if seeds is not None else None, list(cfg.seeds))
    out_dir = run_dir / ANALYSIS_DIR
    timings: dict[str, float] = {}

    t = time.perf_counter()
    base = load_model(cfg.model, device=device or cfg.device)
    vector = SteeringVector.load(stages["vector"])
    vector.check_compatible(base)
    layers = list(range(base.n_layers)) if layers is None else sorted(set(layers))
    if not layers or not all(0 <= l < base.n_layers for l in layers):
        raise ValueError(f"layers: {layers} must name layers of {cfg.model} (0..{base.n_layers - 1})")
    qtexts = question_texts(base, n_texts, cfg.eval.split)
    at = cfg.teacher.layer
    # E2's second reference: what the trait system prompt does to the teacher at the assistant tag
    prompted = prompted_vector(base, cfg.animal, number_prompts(n_texts, cfg.data_config(seeds[0]).prompt_seed))
    prompted.save(out_dir / PROMPTED_DIR)
    timings["load"] = round(time.perf_counter() - t, 2)

    kinds = [k_ for k_ in dict.fromkeys(a.split("+")[0] for a in arms) if k_ != "control"]
    bar = tqdm(total=len(arms) * len(seeds) + (len(kinds) + 1) * len(seeds) * bool(kinds), desc="analyze",
               disable=not progress, leave=False)
    key = {"vector": vector.hash(), "base": base.fingerprint(), "layers": layers, "n_texts": n_texts,
           "n_random": n_random, "seed": seed, "k": k, "prompts": PROMPT_VERSION, "questions": content_hash(qtexts),
           "prompted_vector": prompted.hash(), "emergence": emergence, "sufficiency": sufficiency_test}
    reports, log_students, memo = {}, {}, {}
    t = time.perf_counter()
    for s in seeds:
        texts = {"numbers": number_texts(base, n_texts, cfg.data_config(s).prompt_seed), "questions": qtexts}
        for arm in arms:
            sdir, cache = students[(arm, s)], out_dir / STUDENTS_DIR / arm / f"seed{s}"
            t_s = time.perf_counter()
            skey = {**key, "student": sdir.name}
            hit = (cache / STUDENT_FILE).exists() and read_json(cache / STUDENT_FILE).get("key") == skey
            if not hit:
                bar.set_postfix_str(f"student {arm}/seed{s}")
                bm = _base_means(base, texts, layers, memo, str(s))
                report, shifts = analyze_student(load_student(base, sdir), base, vector, texts, layers, bm, n_random,
                                                 seed, k, prompted)
                if emergence and snapshot_steps(sdir):
                    report["emergence"] = shift_trajectory(base, sdir, vector.vectors[layers], texts, layers, bm,
                                                           {key_: bm[key_] + shifts[key_] for key_ in bm},
                                                           read_json(sdir / MANIFEST_FILE)["steps"])
                if sufficiency_test and at in layers:
                    if "base_readout" not in memo:  # the unpatched base, read once for every student
                        memo["base_readout"] = trait_readout(base, cfg.animal, questions(cfg.eval.split), cfg.eval.animals)
                    report["sufficiency"] = sufficiency(
                        base, {"shift": shifts["questions/all"][layers.index(at)]}, at, cfg.animal,
                        questions(cfg.eval.split), cfg.eval.animals, seed=s, base_readout=memo["base_readout"])["shift"]
                save_tensors(cache / SHIFTS_FILE, shifts)
                write_json(cache / STUDENT_FILE, {"key": skey, "arm": arm, "seed": s, "student_dir": str(sdir), **report,
                                                  "wall_s": round(time.perf_counter() - t_s, 2), **provenance()})
            reports[(arm, s)] = read_json(cache / STUDENT_FILE)
            log_students[f"{arm}/seed{s}"] = {"dir": str(cache), "cache_hit": hit, "wall_s": round(time.perf_counter() - t_s, 2)}
            bar.update()
    timings["students"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    per_seed: dict[str, dict[int, dict]] = {kind: {} for kind in kinds}
    log_grads = {}
    v = vector.vectors[layers]
    for s in seeds if kinds else []:
        grads = {}
        for kind in ["control", *kinds]:
            if (kind, s) not in datasets:
                raise ValueError(f"stage data/{kind}/seed{s}: not in this run's manifest; the gradient audit needs it")
            bar.set_postfix_str(f"gradients {kind}/seed{s}")
            t_g = time.perf_counter()
            grads[kind], hit = _dataset_gradients(base, datasets[(kind, s)], layers, n_rows, max_len,
                                                  out_dir / GRADIENTS_DIR / kind / f"seed{s}")
            log_grads[f"{kind}/seed{s}"] = {"cache_hit": hit, "wall_s": round(time.perf_counter() - t_g, 2)}
            bar.update()
        for kind in kinds:
            if grads[kind] is None or grads["control"] is None:
                per_seed[kind][s] = None
                continue
            pooled = pooled_alignment(grads[kind], grads["control"], v, n_random, seed)
            per_seed[kind][s] = {"pooled": pooled.to_dict(),
                                 "mean_example_cosine": gradient_alignment(grads[kind], v).mean(0).tolist()}
    bar.close()
    timings["gradients"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    trend = (_multiplier_trend(base, cfg, vector, stages, datasets, seeds, sorted(set(multipliers)), layers, n_rows,
                               max_len, out_dir, progress, log_grads) if multipliers else None)
    timings["multipliers"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    arrays: dict[str, Tensor] = {"layers": torch.tensor(layers), "seeds": torch.tensor(seeds)}
    shift, shift_vs = _aggregate_shifts(reports, arms, seeds, layers, arrays)
    results = {
        "experiment": cfg.experiment, "model": cfg.model, "animal": cfg.animal, "run_dir": str(run_dir),
        "vector": {"hash": vector.hash(), "steering_layer": cfg.teacher.layer, "n_layers": vector.n_layers,
                   "d_model": vector.d_model},
        "arms": arms, "seeds": seeds, "layers": layers, "question_split": cfg.eval.split,
        "settings": {"n_texts": n_texts, "n_rows": n_rows, "n_random": n_random, "seed": seed, "k": k, "max_len": max_len},
        "activation_shift": shift, "activation_shift_vs_control": shift_vs,
        "weights": _aggregate_weights(reports, arms, seeds, layers, arrays),
        "gradients": _aggregate_gradients(per_seed, seeds, layers, arrays),
        "gradient_multiplier_trend": trend,
        "reference_vectors": {"prompted_vector_hash": prompted.hash(), "prompted_position": "last (assistant tag)",
                              "cosine_v_prompted": layer_cosines(vector.vectors[layers], prompted.vectors[layers]).tolist()},
        "activation_shift_prompted": _aggregate_shifts(reports, arms, seeds, layers, arrays, "shift_prompted")[0],
        "emergence": _aggregate_emergence(reports, arms, seeds, layers, at, arrays),
        "sufficiency": _aggregate_sufficiency(reports, arms, seeds),
        "necessity": {k_: v_ for k_, v_ in read_json(run_dir / RESULTS_FILE).get("transfer", {}).items() if "prompted" in k_},
        "notes": {"intervals": "Student-t 95% over seeds (n = seeds); one seed gives a point, no interval",
                  "gradients": "cosine of mean dL/dh (trait data) - mean dL/dh (control data) with v on the base; "
                               "training descends the gradient, so descent_cosine > 0 means the data pulls toward +v",
                  "sufficiency": "mean over questions of the base's log P(trait) (specific: minus the other animals' "
                                 "mean) with the student's questions/all shift added at the steering layer, minus the "
                                 "plain base's; random_*: a random direction of the same norm",
                  "necessity": "the run's transfer comparisons of the prompted and prompted_ablated students "
                               "(v projected out of the prompted teacher at the steering layer)"},
    }
    save_tensors(out_dir / ARRAYS_FILE, arrays)
    timings["aggregate"] = round(time.perf_counter() - t, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    results["timings_s"] = timings
    write_json(out_dir / RESULTS_FILE, results)
    write_json(out_dir / MANIFEST_FILE, {"run_dir": str(run_dir), "config_hash": content_hash(cfg.key()),
                                         "vector_dir": str(stages["vector"]), "inputs": key, "students": log_students,
                                         "gradients": log_grads, "timings_s": timings, **provenance(),
                                         "wall_time_s": timings["total"]})
    if log is not None:
        hits = sum(x["cache_hit"] for x in log_students.values())
        log(f"analysis of {len(log_students)} students ({hits} cached) in {timings['total']:.1f}s: {out_dir}")
    return results


def load_analysis(run_dir: str | Path) -> dict:
    """results.json of `<run_dir>/analysis` (or of an analysis directory itself)."""
    d = Path(run_dir)
    d = d if (d / ARRAYS_FILE).exists() else d / ANALYSIS_DIR
    if not (d / RESULTS_FILE).exists():
        raise ValueError(f"analysis: {d} has no {RESULTS_FILE}; run `interp analyze RUN_DIR` first")
    return read_json(d / RESULTS_FILE)

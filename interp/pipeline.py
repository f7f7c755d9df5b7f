"""E1 end to end: vector -> teachers -> filtered datasets -> students -> evaluation -> results.

Stages live in a shared cache, `<root>/cache/<stage>-<hash of inputs>/`, so a rerun reuses what
finished, an interrupted run resumes (a stage without its manifest is redone; training resumes
from its checkpoint), and a changed setting recomputes only the stages that depend on it. The run
directory `<root>/<experiment>/<run-id>/` holds `config.json`, `manifest.json` (the stages used,
their wall times) and `results.json`.

Issue 11's settings add stages only when set (so existing runs keep their ids and caches):
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
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from interp.config import E1Config
from interp.divergence import RULES, Divergence, dataset_divergence
from interp.evaluate import evaluate_trait, sampled_answer_rate
from interp.distill import load_targets
from interp.mix import mix_datasets
from interp.stats import detectable_effect, hierarchical_bootstrap, permutation_test, t_interval
from interp.generate import FREE_SAMPLER
from interp.models import DTYPES, LoadedModel, load_model
from interp.noise import WeightNoise, noised_model
from interp.prompts import PROMPT_VERSION, contrastive_pairs, questions
from interp.runs import (
    CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, Stage, content_hash, load_tensors, provenance, read_json,
    read_jsonl, relative_path, save_tensors, tensor_hash, verify_rows, write_json,
)
from interp.steering import SteeringVector, build_steering_vector
from interp.teachers import DATASET_FILE, TEACHER_LOGPROBS_FILE, VECTOR_KINDS, DataConfig, Teacher, generate_dataset
from interp.train import load_student, train_student, trained_student

LOGPROBS_FILE = "logprobs.safetensors"
TRANSFER_FILE = "transfer.safetensors"  # per comparison: (seeds, questions) trait-specific differences


def dataset_stage(cache: Path, base: LoadedModel, teacher: Teacher, vector: SteeringVector, dcfg: DataConfig,
                  kd: bool = False) -> Stage:
    """The cached stage of one teacher's dataset (`kd`: with the teacher's grammar log-probs)."""
    data = asdict(dcfg)
    own = next((k for k, v in DTYPES.items() if v == next(base.hf.parameters()).dtype), None)
    if dcfg.sampling.dtype in (None, own):  # the model's own arithmetic, as before the field existed
        data["sampling"].pop("dtype")
    if not dcfg.sampling.constrained:  # free samples depend on how a whole-vocabulary step draws
        data["sampler"] = FREE_SAMPLER
    return Stage(cache, "data", {"model": base.fingerprint(), "teacher": teacher.describe(),
                                 "vector": vector.hash() if teacher.kind in VECTOR_KINDS else None,
                                 "data": data, "prompts": PROMPT_VERSION,
                                 **({"teacher_logprobs": True} if kd else {})})


def make_dataset(st: Stage, base: LoadedModel, teacher: Teacher, vector: SteeringVector, dcfg: DataConfig,
                 kd: bool = False, progress: bool = True) -> None:
    man = generate_dataset(base, teacher, vector, dcfg, st.dir, progress=progress,
                           extra_manifest={"stage_key": st.key}, record_grammar=kd)
    st.finish(dataset_hash=man["dataset_hash"], n_kept=man["n_kept"], filter=man["filter"],
              generation=man["generation"], teacher_logprobs_hash=man["teacher_logprobs_hash"])


def vector_inputs(cfg: E1Config, animal: str) -> dict:
    """What a vector stage depends on besides the model: the animal's contrastive pairs."""
    pairs = contrastive_pairs(animal, cfg.vector.n_pairs)
    return {"animal": animal, "position": cfg.vector.position, "pairs": content_hash([list(p) for p in pairs]),
            "prompts": PROMPT_VERSION}


def verify_data(st: Stage, kd: bool = False) -> None:
    """Refuse a dataset (or mix) stage whose rows, or kd targets, no longer match the hashes its
    manifest recorded: an edited dataset.jsonl would otherwise train a student that its key, and
    the results' row counts, attribute to the recorded data."""
    man = st.manifest()
    verify_rows(st.dir / DATASET_FILE, man["dataset_hash"])
    if kd and man.get("teacher_logprobs_hash") is not None:
        path = st.dir / TEACHER_LOGPROBS_FILE
        if tensor_hash(load_tensors(path)["logprobs"]) != man["teacher_logprobs_hash"]:
            raise ValueError(f"{path}: does not match the teacher_logprobs_hash in its manifest.json (edited or "
                             f"corrupted); delete {st.dir} and rerun to recompute it")


def mix_stage(cache: Path, sources: dict[str, Stage], kd: bool = False) -> Stage:
    """The cached mix of dataset stages {animal: stage}, the trait's first (`interp.mix`)."""
    return Stage(cache, "mix", {"datasets": {a: st.key for a, st in sources.items()}, "order": list(sources),
                                **({"teacher_logprobs": True} if kd else {})})


def make_mix(st: Stage, sources: dict[str, Stage], kd: bool = False) -> None:
    man = mix_datasets({a: s.dir for a, s in sources.items()}, st.dir, teacher_logprobs=kd,
                       extra_manifest={"stage_key": st.key})
    st.finish(**{k: man[k] for k in ("dataset_hash", "n_kept", "shares", "shares_wanted", "teacher_logprobs_hash")})


def student_stage(cache: Path, base: LoadedModel, dman: dict, tcfg, divergence: Stage | None = None,
                  project_vector_hash: str | None = None) -> Stage:
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
    return {"questions": content_hash(qs), "animals": list(cfg.eval.animals), "animal": cfg.animal,
            "sampled": cfg.eval.sampled, **({"sampler": FREE_SAMPLER} if cfg.eval.sampled else {})}


def divergence_stage(cache: Path, dstage: Stage) -> Stage:
    """The cached divergence tokens of a dataset stage against the control teacher (every rule's
    positions follow from the three token arrays kept, so the rule is not an input)."""
    return Stage(cache, "divergence", {"dataset": dstage.key, "control": Teacher("control").describe()})


def make_divergence(st: Stage, base: LoadedModel, dstage: Stage, vector: SteeringVector, batch_size: int) -> None:
    div = dataset_divergence(base, dstage.dir, vector, batch_size=batch_size)
    div.save(st.dir, base.tokenizer)
    st.finish(share_by_rule={r: div.share(r) for r in RULES}, n_positions=len(div.emitted), dataset_dir=str(dstage.dir))


def run_e1(cfg: E1Config, root: str | Path = "artifacts", progress: bool = True, log=print,
           run_dir: str | Path | None = None) -> dict:
    """Run (or resume) E1 for every seed and teacher kind in `cfg`; returns results.json's content.
    The run directory is `root/<experiment>/<run id>` unless `run_dir` says otherwise (sweeps)."""
    root = Path(root)
    run_dir = Path(run_dir) if run_dir is not None else root / cfg.experiment / content_hash(cfg.key(), 10)
    cache = root / "cache"
    timings: dict[str, float] = {}
    stages: list[dict] = []

    def timed(name: str, stage: Stage, fn) -> Stage:
        t = time.perf_counter()
        with stage.lock():
            hit = stage.done  # another job of a sweep may have finished it meanwhile
            stage.clean()  # what an interrupted writer left: temp files; a finished stage's checkpoint
            if hit:
                stage.verify()  # its files still match the hashes its manifest recorded
            else:
                with stage.computing(name):  # a full disk: one line naming the stage
                    fn(stage)
        timings[name] = round(time.perf_counter() - t, 2)
        stages.append({"name": name, "dir": relative_path(stage.dir, root), "cache_hit": hit, "wall_s": timings[name]})
        log(f"  {name:<28} {'cached' if hit else 'done'} in {timings[name]:.1f}s")
        return stage

    t_load = time.perf_counter()
    base = load_model(cfg.model, device=cfg.device)
    student_root = load_model(cfg.student_model, device=cfg.device) if cfg.cross_model else base
    cfg.check_layers(base.n_layers)  # before any stage: the layers the config names exist
    write_json(run_dir / CONFIG_FILE, cfg.model_dump())
    timings["load_model"] = round(time.perf_counter() - t_load, 2)
    log(f"  {'load model':<28} {timings['load_model']:.1f}s ({cfg.model}, fingerprint {base.fingerprint()}"
        + (f"; students: {cfg.student_model}, fingerprint {student_root.fingerprint()})" if cfg.cross_model else ")"))
    models = _Bases(cfg, base, student_root)

    # 4. evaluation (defined first: a student is evaluated by the process that trained it)
    qs = questions(cfg.eval.split)
    animals = list(cfg.eval.animals)
    einputs = eval_inputs(cfg)

    def evaluate(name: str, key: str, model_fn) -> dict:
        est = Stage(cache, "eval", {"model": key, **einputs})
        read = lambda: {"logprobs": load_tensors(est.dir / LOGPROBS_FILE)["logprobs"],
                        "summary": read_json(est.dir / "summary.json")}
        if f"eval/{name}" in timings:  # evaluated already, right after training
            return read()

        def make_eval(st):
            m = model_fn()
            score = evaluate_trait(m, cfg.animal, qs, animals)
            save_tensors(st.path(LOGPROBS_FILE), {"logprobs": score.logprobs})
            summary = score.summary(cfg.eval.n_boot)
            if cfg.eval.sampled:
                summary["sampled"] = sampled_answer_rate(m, cfg.animal, qs, cfg.eval.n_samples_per_question)
            write_json(st.path("summary.json"), summary)
            st.finish()

        timed(f"eval/{name}", est, make_eval)
        return read()

    # 1-3. per seed: the steering vector (of the teacher's base), the datasets, the students (per
    # objective: sft, kd). Without weight noise every seed shares one teacher base and one vector.
    kd = "kd" in cfg.train.objectives
    student_dirs: dict[tuple[str, int], Path] = {}
    student_bases: dict[int, LoadedModel] = {}
    vectors: dict[str, SteeringVector] = {}
    data_stats: dict[str, dict] = {}

    def vector_for(animal: str, m: LoadedModel, seed: int) -> SteeringVector:
        vstage = Stage(cache, "vector", {"model": m.identity(), **vector_inputs(cfg, animal)})
        if vstage.key not in vectors:
            name = "vector" + ("" if animal == cfg.animal else f"/{animal}")
            seen = any(s["name"] == name for s in stages)  # another seed's (noised) base made one already
            pairs = contrastive_pairs(animal, cfg.vector.n_pairs)
            timed(name if not seen else f"{name}/seed{seed}", vstage,
                  lambda st: (build_steering_vector(m, pairs, cfg.vector.position, animal).save(st.dir), st.finish()))
            vectors[vstage.key] = SteeringVector.load(vstage.dir)
        return vectors[vstage.key]

    def dataset(name: str, teacher: Teacher, vector: SteeringVector, dcfg: DataConfig, m: LoadedModel) -> Stage:
        dstage = dataset_stage(cache, m, teacher, vector, dcfg, kd)
        return timed(name, dstage, lambda st: make_dataset(st, m, teacher, vector, dcfg, kd, progress))

    for seed in cfg.seeds:
        teacher_base, student_base = models.for_seed(seed)
        student_bases[seed] = student_base
        vector = vector_for(cfg.animal, teacher_base, seed)
        for kind in cfg.teacher.kinds:
            dcfg = cfg.data_config(seed)
            dstage = dataset(f"data/{kind}/seed{seed}", cfg.teacher_for(kind, seed), vector, dcfg, teacher_base)
            dman = dstage.manifest()
            verify_data(dstage, kd)
            data_stats[f"{kind}/seed{seed}"] = {"n_kept": dman["n_kept"], "pass_rate": dman["filter"]["pass_rate"],
                                                "tokens_per_s": dman["generation"]["tokens_per_s"]}
            data_dir = dstage.dir
            if cfg.mixed(kind):  # the students learn from the trait's data diluted with other animals'
                sources = {cfg.animal: dstage}
                for a in cfg.data.mix_animals:
                    sources[a] = dataset(f"data/{kind}-{a}/seed{seed}", cfg.teacher_for(kind, seed, a),
                                         vector_for(a, teacher_base, seed), dcfg, teacher_base)
                mstage = timed(f"mix/{kind}/seed{seed}", mix_stage(cache, sources, kd),
                               lambda st, sources=sources: make_mix(st, sources, kd))
                dman, data_dir = mstage.manifest(), mstage.dir
                verify_data(mstage, kd)
                data_stats[f"{kind}/seed{seed}"]["mix"] = dman["shares"]
            divergence = None
            if cfg.train.loss_positions != "all" and kind != "control":
                divergence = timed(f"divergence/{kind}/seed{seed}", divergence_stage(cache, dstage),
                                   lambda st, dstage=dstage, m=teacher_base, v=vector: make_divergence(
                                       st, m, dstage, v, cfg.data.batch_size))
                data_stats[f"{kind}/seed{seed}"]["divergence_share"] = divergence.manifest()["share_by_rule"][
                    cfg.train.divergence_rule]
            for objective in cfg.train.objectives:
                tcfg = cfg.train_config(seed, objective)
                if divergence is None:  # control students learn from every position (see module doc)
                    tcfg = replace(tcfg, loss_positions="all")
                label = arm_label(kind, objective)
                sstage = student_stage(cache, student_base, dman, tcfg, divergence, vector.hash())

                def make_student(st, data_dir=data_dir, tcfg=tcfg, m=student_base, divergence=divergence, v=vector):
                    rows = read_jsonl(data_dir / DATASET_FILE)
                    targets = (load_targets(data_dir / TEACHER_LOGPROBS_FILE, m.tokenizer, len(rows))
                               if tcfg.objective == "kd" else None)
                    masks = Divergence.load(divergence.dir).row_masks(tcfg.divergence_rule) if divergence else None
                    hf = train_student(m, rows, tcfg, st.dir, progress=progress, targets=targets, divergence_masks=masks,
                                       project_vector=v if tcfg.project_out else None,
                                       extra_manifest={"dataset_dir": str(data_dir)})
                    # Evaluated here, from the fp32 weights in memory: the same numbers as a
                    # reload of model.safetensors (tested), with no reload, and the only way when
                    # train.keep = "none". Before finish: a finished student always has its eval.
                    evaluate(f"{label}/seed{seed}", st.dir.name, lambda: trained_student(m, hf, tcfg, st.dir.name))
                    st.finish(dataset_dir=str(data_dir))

                timed(f"student/{label}/seed{seed}", sstage, make_student)
                student_dirs[(label, seed)] = sstage.dir

    # every seed's students against the base they started from (one shared base without noise)
    evals, base_evals = {}, {}
    for seed, m in student_bases.items():
        key = m.fingerprint()
        if key not in base_evals:
            base_evals[key] = evaluate("base" if not base_evals else f"base/seed{seed}", key, lambda m=m: m)
        evals[f"base/seed{seed}"] = base_evals[key]
    for (label, seed), sdir in student_dirs.items():
        evals[f"{label}/seed{seed}"] = evaluate(f"{label}/seed{seed}", sdir.name,
                                                lambda sdir=sdir, seed=seed: load_student(student_bases[seed], sdir))

    arrays: dict[str, torch.Tensor] = {}
    results = summarize_e1(cfg, evals, animals, arrays)
    save_tensors(run_dir / TRANSFER_FILE, arrays)
    results["datasets"] = data_stats
    results["timings_s"] = timings
    results["run_dir"] = str(run_dir)
    write_json(run_dir / RESULTS_FILE, results)
    write_json(run_dir / MANIFEST_FILE, {"root": relative_path(root, run_dir), "root_abs": str(root.resolve()), "stages": stages, "config_hash": content_hash(cfg.key()), **provenance(),
                                         "wall_time_s": round(sum(timings.values()), 2)})
    return results


class _Bases:
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
            student = teacher if apply == "shared" and not self.cfg.cross_model else self._noised_copy("student", student, noise)
        return teacher, student


def arm_label(kind: str, objective: str) -> str:
    """`steered` for the sft student of a steered teacher, `steered+kd` for its kd student."""
    return kind if objective == "sft" else f"{kind}+{objective}"


def summarize_e1(cfg: E1Config, evals: dict, animals: list[str], arrays: dict | None = None) -> dict:
    """Per-arm trait scores, and the transfer of every trait arm against control and against the
    random-vector null, within each training objective. `arrays`, when given, receives each
    comparison's (seeds, questions) trait-specific differences (what a sweep resamples)."""
    target = animals.index(cfg.animal)
    others = [i for i in range(len(animals)) if i != target]

    def stack(label: str) -> torch.Tensor:  # (seeds, questions, animals)
        return torch.stack([evals[f"{label}/seed{s}"]["logprobs"] for s in cfg.seeds])

    def specific(lp: torch.Tensor) -> torch.Tensor:  # trait's log P minus the other animals' mean
        return lp[..., target] - lp[..., others].mean(-1)

    base_lp = stack("base")  # each seed's student base; the same for every seed without noise
    if all(evals[f"base/seed{s}"] is evals[f"base/seed{cfg.seeds[0]}"] for s in cfg.seeds):
        summary = evals[f"base/seed{cfg.seeds[0]}"]["summary"]
        arms = {"base": {"prob": summary["prob"], "logprob": summary["logprob"]}}
    else:
        arms = {"base": {"prob": hierarchical_bootstrap(base_lp[..., target].exp(), cfg.eval.n_boot),
                         "logprob": hierarchical_bootstrap(base_lp[..., target], cfg.eval.n_boot)}}
    comparisons = {}
    for objective in cfg.train.objectives:
        for kind in cfg.teacher.kinds:
            lp = stack(arm_label(kind, objective))
            arms[arm_label(kind, objective)] = {
                "prob": hierarchical_bootstrap(lp[..., target].exp(), cfg.eval.n_boot),
                "logprob": hierarchical_bootstrap(lp[..., target], cfg.eval.n_boot),
                "per_seed_prob": lp[..., target].exp().mean(-1).tolist(),
                "per_seed_specific_shift": (specific(lp) - specific(base_lp)).mean(-1).tolist(),
                "per_animal_logprob_shift": dict(zip(animals, (lp - base_lp).mean((0, 1)).tolist())),
            }
        pairs = [(t, r) for t in cfg.teacher.kinds if t in ("steered", "prompted", "prompted_ablated")
                 for r in cfg.teacher.kinds if r in ("control", "random")]
        if {"prompted", "prompted_ablated"} <= set(cfg.teacher.kinds):
            pairs.append(("prompted", "prompted_ablated"))  # E9 necessity: what projecting v out removes
        for trait_kind, ref in pairs:
            a, b = stack(arm_label(trait_kind, objective)), stack(arm_label(ref, objective))
            d_lp = a[..., target] - b[..., target]  # (seeds, questions): paired by seed and question
            shift = a - b
            d_spec = shift[..., target] - shift[..., others].mean(-1)
            rank = (shift.mean((0, 1)) > shift.mean((0, 1))[target]).sum().item() + 1
            if arrays is not None:
                arrays[f"{arm_label(trait_kind, objective)}-{arm_label(ref, objective)}"] = d_spec.contiguous()
            comparisons[f"{arm_label(trait_kind, objective)}-{arm_label(ref, objective)}"] = {
                "logprob_diff": hierarchical_bootstrap(d_lp, cfg.eval.n_boot),
                "logprob_diff_per_seed": {**t_interval(d_lp.mean(-1).tolist()),
                                          "detectable_80": detectable_effect(d_lp.mean(-1).tolist())},
                "prob_ratio": float(a[..., target].exp().mean() / b[..., target].exp().mean()),
                "prob_diff": hierarchical_bootstrap(a[..., target].exp() - b[..., target].exp(), cfg.eval.n_boot),
                "specific_logprob_diff": hierarchical_bootstrap(d_spec, cfg.eval.n_boot),
                "specific_per_seed": {**t_interval(d_spec.mean(-1).tolist()),
                                      "detectable_80": detectable_effect(d_spec.mean(-1).tolist())},
                "specific_positive_seeds": int((d_spec.mean(-1) > 0).sum()),
                "trait_rank_among_animals": rank,
                # students are the replicates: shuffle teacher labels across them
                "permutation_specific": permutation_test(specific(a).mean(-1).tolist(), specific(b).mean(-1).tolist()),
            }
    return {"experiment": cfg.experiment, "model": cfg.model, "animal": cfg.animal, "seeds": cfg.seeds,
            "objectives": list(cfg.train.objectives), "n_questions": int(base_lp.shape[1]),
            "question_split": cfg.eval.split, "arms": arms, "transfer": comparisons}

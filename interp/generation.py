"""A second generation (issue 24.4): each first-generation student becomes an unsteered teacher of
its own seed, and the chains from a steered and a control first teacher are compared by seed.

    from interp.generation import Generation2Config, run_generation2
    res = run_generation2(Generation2Config(config="experiments/configs/e24_generation2.toml",
                                            first_generation="artifacts/e1-confirm/c6fa6c290e"),
                          root="artifacts", out_dir="artifacts/e24-gen2-report")

For every seed s of the generation-2 config and every chain (a first-generation arm: steered,
control), one E1 run: `model` is that arm's seed-s student stage (a teacher with no hook and no
system prompt: its `control` teacher writes the number data), `student_model` the original base,
seeds [s]. So each seed has its own first-generation teacher, as seeds are the unit of
replication; one student serving every seed would make ten samples of one teacher. Each run is an
ordinary cached, resumable E1 run (`interp lineage RUN` traces it to the first teacher's vector).

The comparison: per seed, the trait-specific shift of the steered chain's generation-2 student
minus the control chain's (both against the same base, so the base cancels), beside the same
difference in generation 1 on the same seeds; whether the trait persists, fades or grows is
`VERDICT_RULE` applied to the two, fixed here before any generation-2 student was trained.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.config import parse_config, read_toml
from interp.lineage import is_model_stage
from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, stage_dirs, write_json, write_manifest
from interp.stats import detectable_effect, sign_flip_test, t_interval

KIND = "generation2"
VERDICT_RULE = (
    "generation 2 carries the trait if its steered - control chain difference has a seed-level 95% "
    "t-interval above 0; the paired change from generation 1 (gen 2 minus gen 1, by seed) says it "
    "FADES if that interval lies below 0, GROWS if above 0, and is undecided otherwise; no trait in "
    "generation 2 with an interval below 0 for the change is LOST"
)


@dataclass(frozen=True)
class Generation2Config:
    """config: the generation-2 E1 config (its `model` is replaced by each first-generation student;
        its seeds, which must be seeds of the first generation, pick the students).
    first_generation: the first generation's E1 run directory (its students kept: train.keep
        "update" or "weights").
    chains: the first-generation arms whose students teach; the first is the trait chain, the
        second its reference.
    """

    config: str
    first_generation: str
    chains: tuple[str, str] = ("steered", "control")


def _per_seed(res: dict, arm: str) -> list[float]:
    return res["arms"][arm]["per_seed_specific_shift"]


def plan_generation2(cfg: Generation2Config) -> tuple[dict, list[tuple[str, int, Path]]]:
    """The generation-2 raw config and (chain, seed, first-generation student stage) of every run;
    one-line errors for a missing run, seed or student."""
    raw = read_toml(cfg.config)
    gen1 = Path(cfg.first_generation)
    if not (gen1 / RESULTS_FILE).is_file():
        raise ValueError(f"first_generation: {gen1} has no {RESULTS_FILE}; pass a finished E1 run directory")
    if len(cfg.chains) != 2 or cfg.chains[0] == cfg.chains[1]:
        raise ValueError(f"chains: {list(cfg.chains)} must name two different first-generation arms")
    stages = stage_dirs(gen1)
    seeds = raw.get("seeds") or []
    if not seeds:
        raise ValueError(f"seeds: {cfg.config} lists none; list the first-generation seeds whose students teach")
    jobs = []
    for chain in cfg.chains:
        for s in seeds:
            name = f"student/{chain}/seed{s}"
            d = stages.get(name)
            if d is None:
                have = sorted({k.split("/")[1] for k in stages if k.startswith("student/")})
                raise ValueError(
                    f"seeds: {gen1} has no {name} (its student arms: {have}); use seeds and chains the "
                    "first generation trained"
                )
            if not is_model_stage(d):
                raise ValueError(f"first_generation: {d} ({name}) is not a finished student stage; rerun {gen1}")
            jobs.append((chain, s, Path(d)))
    return raw, jobs


def run_generation2(cfg: Generation2Config, root: str | Path, out_dir: str | Path, log=print) -> dict:
    """Every (chain, seed) generation-2 run (cached stages are reused), then the comparison,
    written to `out_dir` (results.json, then manifest.json)."""
    from interp.pipeline import run_e1

    out, started = Path(out_dir), time.perf_counter()
    raw, jobs = plan_generation2(cfg)
    gen1_res = read_json(Path(cfg.first_generation) / RESULTS_FILE)
    runs: dict[str, dict[int, dict]] = {c: {} for c in cfg.chains}
    animal = None
    for i, (chain, seed, student) in enumerate(jobs, 1):
        log(f"generation 2: run {i}/{len(jobs)}: {chain} chain, seed {seed} (teacher {student.name})")
        one = parse_config(
            {**raw, "model": str(student), "seeds": [seed], "experiment": f"{raw['experiment']}-{chain}"}, cfg.config
        )
        animal = one.animal  # the parsed config's, its default included
        res = run_e1(one, root, progress=False, log=lambda *a, **k: None)
        runs[chain][seed] = {
            "run_dir": res["run_dir"],
            "teacher_stage": str(student),
            "specific_shift": _per_seed(res, "control")[0],
            "prob": res["arms"]["control"]["per_seed_prob"][0],
            "per_animal_logprob_shift": res["arms"]["control"]["per_animal_logprob_shift"],
        }
    res = compare_generations(runs, gen1_res, cfg.chains, raw["seeds"], animal)
    res["provenance"] = provenance()
    write_json(out / RESULTS_FILE, res)
    inputs = {
        "first_generation_results": file_hash(Path(cfg.first_generation) / RESULTS_FILE),
        "config": file_hash(cfg.config),
    }
    for chain in cfg.chains:
        for seed, r in runs[chain].items():
            inputs[f"{chain}/seed{seed}"] = file_hash(Path(r["run_dir"]) / RESULTS_FILE)
    write_manifest(out, KIND, asdict(cfg), inputs, started)
    return res


def _stats(x: list[float]) -> dict:
    return {
        **t_interval(x),
        "per_seed": x,
        "positive_seeds": sum(v > 0 for v in x),
        "detectable_80": detectable_effect(x),
        "sign_flip": sign_flip_test(x),
    }


def compare_generations(runs: dict, gen1: dict, chains: tuple[str, str], seeds: list[int], animal: str) -> dict:
    """The chains compared by seed in each generation, the change between generations, the
    trait's rank among the animals in generation 2, and `VERDICT_RULE`'s verdict."""
    trait, ref = chains
    g1_seeds = gen1["seeds"]
    g1 = {c: dict(zip(g1_seeds, _per_seed(gen1, c))) for c in chains}
    d1 = [g1[trait][s] - g1[ref][s] for s in seeds]
    d2 = [runs[trait][s]["specific_shift"] - runs[ref][s]["specific_shift"] for s in seeds]
    change = [b - a for a, b in zip(d1, d2)]
    animals = list(runs[trait][seeds[0]]["per_animal_logprob_shift"])
    shift = {
        a: sum(
            runs[trait][s]["per_animal_logprob_shift"][a] - runs[ref][s]["per_animal_logprob_shift"][a] for s in seeds
        )
        / len(seeds)
        for a in animals
    }
    rank = 1 + sum(v > shift[animal] for v in shift.values())
    gen2, delta = _stats(d2), _stats(change)
    if gen2["ci95"][0] > 0:
        verdict = (
            "persists, fades" if delta["ci95"][1] < 0 else "persists, grows" if delta["ci95"][0] > 0 else "persists"
        )
    else:
        verdict = "lost" if delta["ci95"][1] < 0 else "undecided"
    return {
        "experiment": "e24-generation2",
        "animal": animal,
        "chains": list(chains),
        "seeds": seeds,
        "generation1": _stats(d1),
        "generation2": gen2,
        "change": delta,
        "generation2_rank_among_animals": rank,
        "generation2_per_animal_shift": shift,
        "chain_shift": {c: t_interval([runs[c][s]["specific_shift"] for s in seeds]) for c in chains},
        "verdict": verdict,
        "rule": VERDICT_RULE,
        "runs": {c: {str(s): runs[c][s] for s in seeds} for c in chains},
    }


def generation2_lines(res: dict) -> list[str]:
    trait, ref = res["chains"]
    n = len(res["seeds"])
    ci = lambda t: f"{t['mean']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}]"  # noqa: E731
    g1, g2, ch = res["generation1"], res["generation2"], res["change"]
    return [
        f"{trait} chain - {ref} chain, {res['animal']}-specific shift, {n} seeds (seed-level 95% t-intervals):",
        f"  generation 1: {ci(g1)}, {g1['positive_seeds']}/{n} > 0, sign-flip p {g1['sign_flip']['p']:.3g}",
        f"  generation 2: {ci(g2)}, {g2['positive_seeds']}/{n} > 0, sign-flip p {g2['sign_flip']['p']:.3g}, "
        f"{res['animal']} rank {res['generation2_rank_among_animals']} of {len(res['generation2_per_animal_shift'])}, "
        f"detectable (80%) {g2['detectable_80']:.3f}",
        f"  change (gen 2 - gen 1, paired): {ci(ch)}",
        f"verdict: {res['verdict'].upper()}",
    ]

"""E9's necessity for the steered teacher: does the transfer need the student to move along v?

    from interp.necessity_report import NecessityConfig, run_necessity
    res = run_necessity(NecessityConfig(pairs=(("artifacts/e2-operating/<id>",
                                                "artifacts/e2-project-out-operating/<id>"),)),
                        "artifacts/necessity")

Each pair is a plain run and its twin whose students, control included, were trained with v
projected out of their residual stream at the steering layer (`train.project_out`), on the same
datasets (`experiments/configs/e2_protocol/project_out*.toml`). Per multiplier, paired by seed:
steered - control, random - control and steered - random in each run; the necessity effect, the
plain run's contrast minus the projected run's; and the projection's own effect on the control
students. Transfer is the trait-specific log P shift on the run's questions (held-out); each row has
a seed-level t-interval, the effect detectable at 80% power, seeds positive, the trait's rank among
animals and a sign-flip p. The verdict per multiplier follows `NECESSITY_RULE`, fixed before either
projected run was read. `results.json` (kind "necessity-report"), then `manifest.json`; `interp
plot DIR` draws it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.e9_report import above_zero, interval_text, paired_stats, trait_rank
from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, write_json, write_manifest

KIND = "necessity-report"
# Fixed on 2026-12-01 before either projected run (project_out.toml, project_out_operating.toml) had
# finished or been read:
NECESSITY_RULE = (
    "per multiplier, seed-level 95% t-intervals, held-out questions. The steered teacher transfers if "
    "steered - control in the plain run has its lower bound above 0; if it does not, NOTHING TO REMOVE. "
    "The necessity effect is (steered - control) plain minus (steered - control) projected, paired by "
    "seed. NECESSARY if the effect's lower bound is above 0 and the projected steered - control has its "
    "lower bound at or below 0; PARTLY NECESSARY if the effect's lower bound is above 0 and the projected "
    "transfer's is too; NOT NECESSARY if the projected transfer's lower bound is above 0 and the effect's "
    "is not; otherwise UNDECIDED, with the effect detectable at 80% power"
)


@dataclass(frozen=True)
class NecessityConfig:
    """pairs: (plain run, projected run) directories, one pair per multiplier; each projected run is
    its plain run's config with `train.project_out` set (and its own experiment name)."""

    pairs: tuple[tuple[str, str], ...]

    def default_dir(self) -> Path:
        return Path(self.pairs[0][1]) / "necessity_report"


def _run_record(run_dir: str | Path, field: str) -> dict:
    d = Path(run_dir)
    for name, fix in (
        (RESULTS_FILE, "run it to the end with `interp run`"),
        ("config.json", "run it with `interp run`"),
    ):
        if not (d / name).is_file():
            raise ValueError(f"{field}: {d / name} does not exist; {fix}")
    return {"results": read_json(d / RESULTS_FILE), "config": read_json(d / "config.json"), "dir": str(d)}


def _protocol(config: dict) -> dict:
    """The config without what a projected twin may change: its name, train.project_out and which
    teachers it runs (a subset of the plain run's; each teacher's data does not depend on the rest)."""
    train = {k: v for k, v in config.get("train", {}).items() if k != "project_out"}
    teacher = {k: v for k, v in config.get("teacher", {}).items() if k != "kinds"}
    keep = {k: v for k, v in config.items() if k not in ("experiment", "train", "teacher")}
    return {**keep, "train": train, "teacher": teacher}


def _check_pair(plain: dict, projected: dict, field: str) -> None:
    if plain["config"].get("train", {}).get("project_out"):
        raise ValueError(
            f"{field}: the plain run {plain['dir']} trained with train.project_out; pass the unprojected run first"
        )
    if not projected["config"].get("train", {}).get("project_out"):
        raise ValueError(
            f"{field}: {projected['dir']} has no train.project_out; pass the run of a project_out config second"
        )
    a, b = _protocol(plain["config"]), _protocol(projected["config"])
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(f"{field}: the two runs' configs differ beyond train.project_out (in {diff}); pair twins")
    extra = set(projected["config"]["teacher"]["kinds"]) - set(plain["config"]["teacher"]["kinds"])
    if extra:
        raise ValueError(f"{field}: {projected['dir']} has teachers {sorted(extra)} the plain run lacks; pair twins")
    for arm in ("control", "steered"):
        for rec in (plain, projected):
            if arm not in rec["results"]["arms"]:
                raise ValueError(f"{field}: no {arm!r} students in {rec['dir']}; run its config to the end")


def _combination(terms: list, seeds: list[int], animal: str) -> dict:
    """sum of coef x arm over ((record, arm), coef) terms, per seed: paired stats and the trait's rank."""
    per_seed, animals = [0.0] * len(seeds), None
    for (rec, arm), coef in terms:
        res = rec["results"]
        order = [int(s) for s in res["seeds"]]
        vals = res["arms"][arm]["per_seed_specific_shift"]
        per_seed = [acc + coef * vals[order.index(s)] for acc, s in zip(per_seed, seeds)]
        shift = res["arms"][arm]["per_animal_logprob_shift"]
        animals = {k: (animals or {}).get(k, 0.0) + coef * v for k, v in shift.items()}
    zero = dict.fromkeys(animals, 0.0)
    return {**paired_stats(per_seed), "trait_rank_among_animals": trait_rank(animals, zero, animal)}


def necessity_verdict(rows: dict, label: str) -> dict:
    """`NECESSITY_RULE` for one multiplier's rows (`necessity_report`'s)."""
    plain, proj = rows[f"{label} steered-control"], rows[f"{label} steered-control, v projected out"]
    effect = rows[f"{label} necessity: steered-control, plain - projected"]
    if not above_zero(plain):
        verdict = "NOTHING TO REMOVE"
    elif above_zero(effect) and not above_zero(proj):
        verdict = "NECESSARY"
    elif above_zero(effect):
        verdict = "PARTLY NECESSARY"
    elif above_zero(proj):
        verdict = "NOT NECESSARY"
    else:
        verdict = "UNDECIDED"
    return {
        "verdict": verdict,
        "transfers": above_zero(plain),
        "projected_transfers": above_zero(proj),
        "effect_above_0": above_zero(effect),
        "detectable_80": effect["detectable_80"],
    }


def necessity_report(pairs: list[tuple[dict, dict]]) -> dict:
    """Every pair's rows and verdict (records from `_run_record`). Refuses pairs that are not twins
    (configs equal but for train.project_out), that do not share seeds, or two pairs at one multiplier."""
    rows, verdicts, order = {}, {}, []
    first = pairs[0][0]["results"]
    seeds, animal = sorted(int(s) for s in first["seeds"]), first["animal"]
    for i, (plain, projected) in enumerate(pairs):
        field = f"pairs[{i}]"
        _check_pair(plain, projected, field)
        for rec in (plain, projected):
            if sorted(int(s) for s in rec["results"]["seeds"]) != seeds or rec["results"]["animal"] != animal:
                raise ValueError(f"{field}: {rec['dir']} has other seeds or another trait than {pairs[0][0]['dir']}")
        label = f"x{plain['config']['teacher']['multiplier']:g}"
        if label in verdicts:
            raise ValueError(f"{field}: a second pair at multiplier {label}; pass one pair per multiplier")
        arms = [a for a in ("steered", "random") if a in plain["results"]["arms"] and a in projected["results"]["arms"]]
        named = {}
        for rec, tail in ((plain, ""), (projected, ", v projected out")):
            for a in arms:
                named[f"{label} {a}-control{tail}"] = {(id(rec), a): 1, (id(rec), "control"): -1}
            if "random" in arms:
                named[f"{label} steered-random{tail}"] = {(id(rec), "steered"): 1, (id(rec), "random"): -1}
        recs = {id(plain): plain, id(projected): projected}
        for c in ("steered-control", "steered-random"):
            if f"{label} {c}" in named:
                plain_t, proj_t = named[f"{label} {c}"], named[f"{label} {c}, v projected out"]
                named[f"{label} necessity: {c}, plain - projected"] = {
                    **plain_t,
                    **{k: -v for k, v in proj_t.items()},
                }
        named[f"{label} control students: plain - projected"] = {
            (id(plain), "control"): 1,
            (id(projected), "control"): -1,
        }
        for name, terms in named.items():
            rows[name] = _combination([((recs[r], a), c) for (r, a), c in terms.items()], seeds, animal)
            order.append(name)
        verdicts[label] = necessity_verdict(rows, label)
    return {
        "experiment": "e9-necessity",
        "model": first["model"],
        "animal": animal,
        "seeds": seeds,
        "question_split": first.get("question_split"),
        "runs": [{"plain": p["dir"], "projected": q["dir"]} for p, q in pairs],
        "rows": rows,
        "order": order,
        "verdicts": verdicts,
        "rule": NECESSITY_RULE,
    }


def run_necessity(cfg: NecessityConfig, out: str | Path) -> dict:
    """Read every pair, write `out/results.json` then `out/manifest.json` (kind "necessity-report")."""
    if not cfg.pairs:
        raise ValueError("pairs: none given; pass PLAIN PROJECTED run directories")
    started, out = time.time(), Path(out)
    pairs = [
        (_run_record(p, f"pairs[{i}] plain"), _run_record(q, f"pairs[{i}] projected"))
        for i, (p, q) in enumerate(cfg.pairs)
    ]
    res = necessity_report(pairs)
    inputs = {
        f"pairs[{i}]/{k}/{name}": file_hash(Path(d) / name)
        for i, pair in enumerate(cfg.pairs)
        for k, d in zip(("plain", "projected"), pair)
        for name in (RESULTS_FILE, "config.json")
    }
    res["inputs"], res["provenance"] = inputs, provenance()
    write_json(out / RESULTS_FILE, res)
    write_manifest(out, KIND, asdict(cfg), inputs, started)
    return res


def necessity_lines(res: dict) -> list[str]:
    """The report as printed tables: every row, then each multiplier's verdict."""
    n = len(res["seeds"])

    lines = [
        f"E9 necessity: {res['model']}, {res['animal']}, {n} seeds, {res['question_split']} questions",
        "",
        "| contrast (paired by seed) | transfer | seeds + | rank | p | detectable (80%) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in res["order"]:
        r = res["rows"][name]
        det = "-" if r["detectable_80"] is None else f"{r['detectable_80']:.3f}"
        lines.append(
            f"| {name} | {interval_text(r)} | {r['positive_seeds']}/{n} | {r['trait_rank_among_animals']} | "
            f"{r['sign_flip_p']:.3g} | {det} |"
        )
    lines.append("")
    for label, v in res["verdicts"].items():
        lines.append(f"{label}: {v['verdict']} ({', '.join(f'{k} {x}' for k, x in v.items() if k != 'verdict')})")
    return lines

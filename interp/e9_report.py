"""E2/E9 at matched behaviour: do students inherit the kind of intervention as well as the trait?

    from interp.e9_report import E9Config, run_e9
    res = run_e9(E9Config(operating="artifacts/e2-operating/<id>", matched="artifacts/e2-matched/<id>"),
                 "artifacts/e9-report")

The seed's claim (`../shared/seeds/non-semantic-distillation-abstract.txt`): "steered students
imitate steering vectors, prompted students do not". Issue 22 B tests it with two runs that share
their seeds and every multiplier-free stage (`experiments/configs/e2_protocol/`): the operating
point (steered x0.5) and the steered teacher matched to the plain prompted teacher's P(trait) on
the tuning questions (x0.228), each with its random-vector null, beside control, prompted,
prompted_fewshot and both prompted teachers with v projected out (`*_ablated`). Both runs are read
after `interp analyze` at the steering layer.

Per arm, paired by seed with the control students: the transfer (trait-specific log P shift,
held-out questions), seeds positive, the trait's rank among animals, the sign-flip p and the
effect detectable at 80% power; cos(shift, v) and cos(shift, v_prompt) at the steering layer (the
number prompts, all tokens) with the random-direction null's sd; and the down_proj update's energy
along v. Then the contrasts the claim names, paired by seed, and the verdict by `E9_RULE`, fixed in
this module before either run was read. The artifact directory holds `results.json` (kind
"e9-report"), then `manifest.json` (config, each input's hash, provenance); `interp plot DIR`
draws it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.runs import RESULTS_FILE, file_hash, provenance, read_json, write_json, write_manifest
from interp.stats import detectable_effect, sign_flip_test, t_interval

KIND = "e9-report"
TEXTS = "numbers/all"  # the E2 measure: the shift over the number prompts, every token
PROMPTED = ("prompted", "prompted_fewshot")
# Which steered arm each prompted teacher is set against: the one matched to its P(trait) on the
# tuning questions where one exists (x0.228 matches the plain system prompt); the few-shot teacher
# (P 0.72) has no steered match at the steering layer (steering peaks at P 0.35 at x0.5, the
# operating point), so it meets the operating point, the closest steering reaches.
PARTNER = {"prompted": "matched", "prompted_fewshot": "operating"}
# The v-ablated teachers' students enter through their transfer (necessity), so their analysis may
# be skipped (`interp analyze --arms`): their rows then carry transfer only.
OPTIONAL_ANALYSIS = ("prompted_ablated", "prompted_fewshot_ablated")
# Fixed before either run was read (issue 22 B):
E9_RULE = (
    "at the steering layer, number prompts, all tokens; seed-level 95% t-intervals. A prompted teacher "
    "transfers if its students' trait-specific shift minus the control students' has its lower bound "
    "above 0. CONFIRMED if some transferring prompted teacher P has (a) its partner steered arm "
    "(behaviour-matched, else the operating point) with cos(shift, v) above P's (paired by seed, lower "
    "bound > 0) and (b) that steered arm's cos(shift, v) above its random null's (lower bound > 0). "
    "REFUTED if no transferring P satisfies (a) and (b) and some transferring P has cos(shift, v) above "
    "the control students' (lower bound > 0) with the steered - P interval covering 0: prompted "
    "students imitate v too. UNDECIDED (NO PROMPTED TRANSFER) if no prompted teacher transfers: the "
    "contrast is then between a trait and no trait, and is reported, not judged. Otherwise UNDECIDED, "
    "with the steered - P difference detectable at 80% power"
)


@dataclass(frozen=True)
class E9Config:
    """operating: the E2 run at the operating multiplier (operating.toml), analysed.
    matched: the E2 run at the behaviour-matched multiplier (matched.toml), analysed; the same seeds
    and the same multiplier-free students.
    """

    operating: str
    matched: str

    def default_dir(self) -> Path:
        return Path(self.matched) / "e9_report"


def _run_record(run_dir: str | Path, field: str) -> dict:
    d = Path(run_dir)
    res, cfg, ana = d / RESULTS_FILE, d / "config.json", d / "analysis" / RESULTS_FILE
    for p, fix in ((res, "run it to the end with `interp run`"), (cfg, "run it with `interp run`")):
        if not p.is_file():
            raise ValueError(f"{field}: {p} does not exist; {fix}")
    if not ana.is_file():
        raise ValueError(f"{field}: {ana} does not exist; run `interp analyze {d}` first")
    return {"results": read_json(res), "config": read_json(cfg), "analysis": read_json(ana), "dir": str(d)}


def paired_stats(values: list[float]) -> dict:
    """A paired difference over seeds: t-interval, detectable effect, seeds positive, sign-flip p."""
    vals = [float(v) for v in values]
    if any(math.isnan(v) for v in vals):
        raise ValueError(f"a per-seed value is missing (NaN) among {vals}; is every student analysed?")
    return {
        **t_interval(vals),
        "detectable_80": detectable_effect(vals),
        "positive_seeds": sum(v > 0 for v in vals),
        "sign_flip_p": sign_flip_test(vals)["p"],
        "per_seed": vals,
    }


def _arm_values(rec: dict, arm: str, seeds: list[int]) -> dict:
    """One arm's per-seed numbers from a run's results.json and analysis/results.json."""
    res, ana = rec["results"], rec["analysis"]
    at = ana["vector"]["steering_layer"]
    if at not in ana["layers"]:
        raise ValueError(f"{rec['dir']}: the analysis did not read the steering layer {at}; rerun `interp analyze`")
    i = ana["layers"].index(at)
    order = [str(s) for s in res["seeds"]]
    mech = (ana.get("mechanism") or {}).get(arm)
    if arm not in res["arms"]:
        raise ValueError(f"{rec['dir']}: no {arm!r} students in the run; run its config to the end")
    transfer = {
        "specific": [res["arms"][arm]["per_seed_specific_shift"][order.index(str(s))] for s in seeds],
        "animal_shift": res["arms"][arm]["per_animal_logprob_shift"],
    }
    if mech is None:
        if arm not in OPTIONAL_ANALYSIS:
            raise ValueError(f"{rec['dir']}: no {arm!r} students in its analysis; rerun `interp analyze` with that arm")
        return {**transfer, "cos_v": None, "cos_v_prompt": None, "energy": None, "null_sd": None, "layers": None}
    prompted = (ana.get("activation_shift_prompted") or {}).get(arm)
    shift = ana["activation_shift"][arm]["numbers"]["all"]
    return {
        **transfer,
        "cos_v": [mech["per_seed"][str(s)]["cosine"][TEXTS] for s in seeds],
        "cos_v_prompt": [prompted["numbers"]["all"]["per_seed_cosine"][str(s)][i] for s in seeds] if prompted else None,
        "energy": [mech["per_seed"][str(s)]["down_proj_energy"] for s in seeds],
        "null_sd": shift["by_layer"][i]["null_sd"],
        # every layer the analysis read: [seed][layer]
        "layers": {
            "cos_v": [shift["per_seed_cosine"][str(s)] for s in seeds] if "per_seed_cosine" in shift else None,
            "cos_v_prompt": [prompted["numbers"]["all"]["per_seed_cosine"][str(s)] for s in seeds]
            if prompted
            else None,
            "null_sd": [b["null_sd"] for b in shift["by_layer"]],
            "null_sd_prompt": [b["null_sd"] for b in prompted["numbers"]["all"]["by_layer"]]
            if prompted and "by_layer" in prompted["numbers"]["all"]
            else None,
        },
    }


def trait_rank(a: dict, b: dict, animal: str) -> int:
    """The trait's rank among animals in arm a's mean log P shift over arm b's (1 = first)."""
    d = {k: a[k] - b[k] for k in a}
    return sum(v > d[animal] for v in d.values()) + 1


def _contrast(a: dict, b: dict, animal: str) -> dict:
    """Arm a minus arm b, paired by seed: transfer, cos(shift, v), cos(shift, v_prompt), energy."""
    out = {
        "transfer": {
            **paired_stats([x - y for x, y in zip(a["specific"], b["specific"])]),
            "trait_rank_among_animals": trait_rank(a["animal_shift"], b["animal_shift"], animal),
        },
    }
    for f in ("cos_v", "cos_v_prompt", "energy"):
        if a[f] is not None and b[f] is not None and None not in a[f] + b[f]:
            out["down_proj_energy" if f == "energy" else f] = paired_stats([x - y for x, y in zip(a[f], b[f])])
    return out


def by_layer(arms: dict, pairs: list[tuple[str, str]], layers: list[int]) -> dict:
    """cos(shift, v) and cos(shift, v_prompt) contrasts at every layer the analyses read, paired by
    seed, for each analysed pair; and each arm's random-direction null sd per layer. Descriptive: the
    verdict is read at the steering layer only, as registered."""
    out = {"layers": list(layers), "contrasts": {}, "null_sd": {}, "null_sd_prompt": {}}
    for a, v in arms.items():
        if v.get("layers"):
            out["null_sd"][a] = v["layers"]["null_sd"]
            out["null_sd_prompt"][a] = v["layers"]["null_sd_prompt"]
    for a, b in pairs:
        la, lb = arms[a].get("layers"), arms[b].get("layers")
        if not la or not lb:
            continue
        row = {}
        for f in ("cos_v", "cos_v_prompt"):
            if la[f] is None or lb[f] is None:
                continue
            row[f] = [
                paired_stats([x[j] - y[j] for x, y in zip(la[f], lb[f])]) | {"layer": layer}
                for j, layer in enumerate(layers)
            ]
        if row:
            out["contrasts"][f"{a}-{b}"] = row
    return out


def above_zero(d: dict) -> bool:
    """A seed-level interval whose lower bound is above 0 (at least two seeds)."""
    return bool(d["n"] >= 2 and d["ci95"][0] > 0)  # plain bool: the interval's ends may be numpy floats


def interval_text(d: dict | None, f: str = "+.3f") -> str:
    """ "mean [lo, hi]" for a table cell; "-" where there is no interval."""
    return "-" if d is None else f"{d['mean']:{f}} [{d['ci95'][0]:{f}}, {d['ci95'][1]:{f}}]"


def e9_verdict(contrasts: dict) -> dict:
    """`E9_RULE` applied to the contrasts (`e9_report`'s): the verdict and the facts it rests on."""
    facts = {}
    for p in PROMPTED:
        if f"{p}-control" not in contrasts:
            continue
        steered = f"steered {PARTNER[p]}"
        facts[p] = {
            "partner": steered,
            "transfers": above_zero(contrasts[f"{p}-control"]["transfer"]),
            "steered_above_prompted": above_zero(contrasts[f"{steered}-{p}"]["cos_v"]),
            "steered_above_random": above_zero(contrasts[f"{steered}-random {PARTNER[p]}"]["cos_v"]),
            "prompted_above_control": above_zero(contrasts[f"{p}-control"]["cos_v"]),
            "steered_minus_prompted_covers_0": not (
                above_zero(contrasts[f"{steered}-{p}"]["cos_v"]) or contrasts[f"{steered}-{p}"]["cos_v"]["ci95"][1] < 0
            ),
            "detectable_80": contrasts[f"{steered}-{p}"]["cos_v"]["detectable_80"],
        }
    moving = {p: f for p, f in facts.items() if f["transfers"]}
    if any(f["steered_above_prompted"] and f["steered_above_random"] for f in moving.values()):
        verdict = "CONFIRMED"
    elif any(f["prompted_above_control"] and f["steered_minus_prompted_covers_0"] for f in moving.values()):
        verdict = "REFUTED"
    elif not moving:
        verdict = "UNDECIDED (NO PROMPTED TRANSFER)"
    else:
        verdict = "UNDECIDED"
    return {"verdict": verdict, "rule": E9_RULE, "facts": facts}


def e9_report(operating: dict, matched: dict) -> dict:
    """Every arm against control, the claim's contrasts, and the verdict, from the two analysed
    runs (`_run_record`'s dicts). Refuses runs that do not share their seeds, vector or
    multiplier-free students (the same per-seed transfer, to the bit). The shared arms are read from
    the operating run's analysis; the matched run's needs only its steered and random students."""
    o_res, m_res = operating["results"], matched["results"]
    if sorted(o_res["seeds"]) != sorted(m_res["seeds"]):
        raise ValueError(f"matched: seeds {m_res['seeds']} differ from the operating run's {o_res['seeds']}")
    if o_res["animal"] != m_res["animal"] or o_res["model"] != m_res["model"]:
        raise ValueError("matched: a different model or trait from the operating run's; pair runs of one protocol")
    if operating["analysis"]["vector"]["hash"] != matched["analysis"]["vector"]["hash"]:
        raise ValueError("matched: its analysis read a different v from the operating run's; pair runs of one protocol")
    seeds, animal = sorted(o_res["seeds"]), o_res["animal"]
    mult = {k: rec["config"]["teacher"]["multiplier"] for k, rec in (("operating", operating), ("matched", matched))}
    if mult["matched"] == mult["operating"]:
        raise ValueError(
            f"matched: the same multiplier as the operating run ({mult['matched']}); pass matched.toml's run"
        )
    shared = [a for a in o_res["arms"] if a not in ("base", "steered", "random") and a in m_res["arms"]]
    arms = {}
    for a in shared:  # read once, from the operating run; the matched run must hold the same students
        arms[a] = _arm_values(operating, a, seeds)
        twin = [m_res["arms"][a]["per_seed_specific_shift"][m_res["seeds"].index(s)] for s in seeds]
        if twin != arms[a]["specific"]:
            raise ValueError(
                f"matched: its {a!r} students differ from the operating run's; the two runs must share "
                "every multiplier-free stage (the same seeds, data and training settings)"
            )
    for label, rec in (("operating", operating), ("matched", matched)):
        for kind in ("steered", "random"):
            if kind in rec["results"]["arms"]:
                arms[f"{kind} {label}"] = _arm_values(rec, kind, seeds)
    if "control" not in arms:
        raise ValueError("operating: no control students; both runs need the control teacher")
    pairs = [(a, "control") for a in arms if a != "control"]
    pairs += [(f"steered {k}", f"random {k}") for k in ("operating", "matched") if f"steered {k}" in arms]
    pairs += [(f"steered {PARTNER[p]}", p) for p in PROMPTED if p in arms and f"steered {PARTNER[p]}" in arms]
    pairs += [(p, f"{p}_ablated") for p in PROMPTED if p in arms and f"{p}_ablated" in arms]
    contrasts = {f"{a}-{b}": _contrast(arms[a], arms[b], animal) for a, b in pairs if b in arms}
    if operating["analysis"]["layers"] != matched["analysis"]["layers"]:
        raise ValueError(
            f"matched: its analysis read layers {matched['analysis']['layers']}, the operating run's "
            f"{operating['analysis']['layers']}; analyse both with the same --layers"
        )
    layers = by_layer(arms, [(a, b) for a, b in pairs if b in arms], operating["analysis"]["layers"])
    return {
        "experiment": "e9-matched-behaviour",
        "model": o_res["model"],
        "animal": animal,
        "seeds": seeds,
        "question_split": o_res.get("question_split"),
        "steering_layer": operating["analysis"]["vector"]["steering_layer"],
        "texts": TEXTS,
        "multipliers": mult,
        "partner": dict(PARTNER),
        "arms": {
            a: {
                "transfer_vs_base": t_interval(v["specific"]),
                "cos_v": t_interval(v["cos_v"]) if v["cos_v"] is not None else None,
                "cos_v_prompt": t_interval(v["cos_v_prompt"]) if v["cos_v_prompt"] is not None else None,
                "cos_null_sd": v["null_sd"],
                "down_proj_energy": t_interval(v["energy"]) if v["energy"] and None not in v["energy"] else None,
                "per_seed": {k: v[k] for k in ("specific", "cos_v", "cos_v_prompt", "energy")},
            }
            for a, v in arms.items()
        },
        "contrasts": contrasts,
        "by_layer": layers,
        "order": list(contrasts),  # the table's row order (results.json is written with sorted keys)
        **e9_verdict(contrasts),
    }


def run_e9(cfg: E9Config, out: str | Path) -> dict:
    """Read both runs, write `out/results.json` then `out/manifest.json` (kind "e9-report")."""
    started, out = time.time(), Path(out)
    operating, matched = _run_record(cfg.operating, "operating"), _run_record(cfg.matched, "matched")
    res = e9_report(operating, matched)
    inputs = {
        f"{k}/{name}": file_hash(Path(d) / name)
        for k, d in (("operating", cfg.operating), ("matched", cfg.matched))
        for name in (RESULTS_FILE, f"analysis/{RESULTS_FILE}")
    }
    res["inputs"], res["provenance"] = inputs, provenance()
    write_json(out / RESULTS_FILE, res)
    write_manifest(out, KIND, asdict(cfg), inputs, started)
    return res


def e9_lines(res: dict) -> list[str]:
    """The report as printed tables: arms against control, then the claim's contrasts and the verdict."""

    n = len(res["seeds"])
    lines = [
        f"E9 at matched behaviour: {res['model']}, {res['animal']}, {n} seeds, layer {res['steering_layer']}, "
        f"multipliers {res['multipliers']}",
        "",
        "| contrast (paired by seed) | transfer | seeds + | rank | p | cos(shift, v) | cos(shift, v_prompt) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in res["order"]:
        c = res["contrasts"][name]
        t = c["transfer"]
        lines.append(
            f"| {name} | {interval_text(t)} | {t['positive_seeds']}/{n} | {t['trait_rank_among_animals']} | "
            f"{t['sign_flip_p']:.3g} | {interval_text(c.get('cos_v'))} | {interval_text(c.get('cos_v_prompt'))} |"
        )
    lines += ["", f"verdict: {res['verdict']}"]
    for p, f in res["facts"].items():
        lines.append(
            f"  {p} (against {f['partner']}): " + ", ".join(f"{k} {v}" for k, v in f.items() if k != "partner")
        )
    return lines


def _spans(layers: list[int]) -> str:
    """[1, 2, 3, 7, 8] -> "1-3, 7-8"."""
    out, start = [], None
    for i, layer in enumerate(layers):
        if start is None:
            start = layer
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            out.append(f"{start}" if start == layer else f"{start}-{layer}")
            start = None
    return ", ".join(out) or "none"


def e9_layer_lines(res: dict) -> list[str]:
    """The by-layer contrasts in brief: per contrast and measure, the layers whose seed-level interval
    lies above 0 and below 0, and the largest mean with its layer."""
    bl = res.get("by_layer") or {}
    if len(bl.get("layers", [])) < 2:
        return []
    lines = [
        f"by layer ({len(bl['layers'])} layers read; descriptive, the verdict is read at layer {res['steering_layer']}):",
        "",
        "| contrast (paired by seed) | measure | interval above 0 at layers | below 0 at layers | largest mean |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in bl["contrasts"].items():
        for f, label in (("cos_v", "cos(shift, v)"), ("cos_v_prompt", "cos(shift, v_prompt)")):
            if f not in row:
                continue
            rs = row[f]
            top = max(rs, key=lambda r: r["mean"])
            above = [r["layer"] for r in rs if r["n"] >= 2 and r["ci95"][0] > 0]
            below = [r["layer"] for r in rs if r["n"] >= 2 and r["ci95"][1] < 0]
            lines.append(
                f"| {name} | {label} | {_spans(above)} | {_spans(below)} | {top['mean']:+.3f} at layer {top['layer']} |"
            )
    return lines

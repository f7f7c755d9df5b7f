"""Do bf16 students learn what fp32 students learn from the same data?

    .venv/bin/interp run experiments/configs/e1_replication/e1_cpu_sft_seeds0-9.toml     # fp32 students
    .venv/bin/interp run experiments/configs/e1_replication/train_dtype_bf16_seeds0-5.toml  # bf16 twins
    .venv/bin/python experiments/train_dtype.py artifacts/e1-cpu/<id> artifacts/e1-cpu-bf16/<id>

`train.dtype = "bf16"` computes the forward and backward in bf16 (fp32 master weights and AdamW
state) about twice as fast here, so its students can only equal fp32's within a tolerance. The two
runs share every dataset stage (same teachers, prompts, samples, data order); only the students'
arithmetic differs. For every (seed, teacher) present in both runs this pairs the bf16 student
with its fp32 twin and reports, on the runs' own evaluation questions:
- each student's owl-specific shift against the base, fp32 and bf16, and their paired difference
  (t-interval over seeds, per teacher and pooled);
- the transfer (steered - random, steered - control; owl-specific, per seed) in each dtype and
  its paired difference;
- the cosine between the two students' weight updates W - W_base, over all parameters.
Writes `<out>/results.json` (default: beside the bf16 run, `train_dtype.json`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from interp.models import load_model
from interp.runs import RESULTS_FILE, load_tensors, provenance, read_json, stage_dirs, write_json
from interp.stats import t_interval
from interp.train import UPDATE_FILE, WEIGHTS_FILE


def _update(student_dir: Path, base: dict[str, torch.Tensor]) -> torch.Tensor:
    """W - W_base of a student, flattened in name order, from its weights or its bf16 update."""
    if (student_dir / UPDATE_FILE).exists():
        u = load_tensors(student_dir / UPDATE_FILE)
        return torch.cat([u[n].double().flatten() for n in sorted(base)])
    w = load_tensors(student_dir / WEIGHTS_FILE)
    return torch.cat([(w[n] - base[n]).double().flatten() for n in sorted(base)])  # float64: 135M terms


def compare(fp32_run: Path, bf16_run: Path, base_model: str | None = None) -> dict:
    ra, rb = read_json(fp32_run / RESULTS_FILE), read_json(bf16_run / RESULTS_FILE)
    seeds = [s for s in rb["seeds"] if s in ra["seeds"]]
    if not seeds:
        raise ValueError(f"runs: {fp32_run} and {bf16_run} share no seed")
    kinds = [k for k in rb["arms"] if k != "base" and k in ra["arms"]]
    ia, ib = ([r["seeds"].index(s) for s in seeds] for r in (ra, rb))
    per_arm, pooled = {}, []
    for k in kinds:
        a = [ra["arms"][k]["per_seed_specific_shift"][i] for i in ia]
        b = [rb["arms"][k]["per_seed_specific_shift"][i] for i in ib]
        d = [y - x for x, y in zip(a, b)]
        pooled += d
        per_arm[k] = {"fp32": a, "bf16": b, "bf16_minus_fp32": t_interval(d)}
    transfer = {}
    for c in ("steered-random", "steered-control"):
        ta = (
            [per_arm[c.split("-")[0]]["fp32"][j] - per_arm[c.split("-")[1]]["fp32"][j] for j in range(len(seeds))]
            if all(k in per_arm for k in c.split("-"))
            else None
        )
        if ta is None:
            continue
        tb = [per_arm[c.split("-")[0]]["bf16"][j] - per_arm[c.split("-")[1]]["bf16"][j] for j in range(len(seeds))]
        transfer[c] = {
            "fp32": t_interval(ta),
            "bf16": t_interval(tb),
            "bf16_minus_fp32": t_interval([y - x for x, y in zip(ta, tb)]),
        }
    da, db = stage_dirs(fp32_run), stage_dirs(bf16_run)
    base = load_model(base_model or rb["model"], device="cpu")
    bw = {n: p.detach() for n, p in base.hf.named_parameters()}
    cosines = {}
    for k in kinds:
        for s in seeds:
            name = f"student/{k}/seed{s}"
            if name in da and name in db:
                ua, ub = _update(da[name], bw), _update(db[name], bw)
                cosines[f"{k}/seed{s}"] = {
                    "cos": float(torch.cosine_similarity(ua, ub, dim=0)),
                    "norm_ratio": float(ub.norm() / ua.norm()),
                }
    return {
        "fp32_run": str(fp32_run),
        "bf16_run": str(bf16_run),
        "seeds": seeds,
        "question_split": rb["question_split"],
        "per_arm_specific_shift": per_arm,
        "pooled_bf16_minus_fp32": t_interval(pooled),
        "transfer": transfer,
        "update_cosine": cosines,
        "update_cosine_range": [min(c["cos"] for c in cosines.values()), max(c["cos"] for c in cosines.values())]
        if cosines
        else None,
        **provenance(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("fp32_run", type=Path, help="run directory of the fp32 students")
    ap.add_argument("bf16_run", type=Path, help="run directory of their bf16 twins (same datasets)")
    ap.add_argument("--out", type=Path, help="results file (default: <bf16_run>/train_dtype.json)")
    args = ap.parse_args(argv)
    res = compare(args.fp32_run, args.bf16_run)
    out = args.out or args.bf16_run / "train_dtype.json"
    write_json(out, res)
    print(f"seeds {res['seeds']} ({res['question_split']} questions); owl-specific shift per student, bf16 - fp32:")
    for k, v in res["per_arm_specific_shift"].items():
        t = v["bf16_minus_fp32"]
        print(f"  {k:<10} {t['mean']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}]")
    p = res["pooled_bf16_minus_fp32"]
    print(f"  pooled     {p['mean']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] (n = {p['n']})")
    for c, v in res["transfer"].items():
        print(
            f"  {c}: fp32 {v['fp32']['mean']:+.3f}, bf16 {v['bf16']['mean']:+.3f}, "
            f"bf16 - fp32 {v['bf16_minus_fp32']['mean']:+.3f} [{v['bf16_minus_fp32']['ci95'][0]:+.3f}, "
            f"{v['bf16_minus_fp32']['ci95'][1]:+.3f}]"
        )
    if res["update_cosine_range"]:
        print(
            f"  cos(update fp32, update bf16): {res['update_cosine_range'][0]:.4f} .. {res['update_cosine_range'][1]:.4f}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""What the owl teacher's data and the random-vector teacher's data have in common, per seed.

    .venv/bin/python experiments/e1_data_stats.py artifacts/e1-cpu/<run id>              # statistics only
    .venv/bin/python experiments/e1_data_stats.py artifacts/e1-cpu/<run id> --llr-seeds 0,1,2

For every dataset stage of an E1 run: numbers per reply, the mean number, the share of numbers
below 100, completion tokens per reply, and the share of replies identical to the control
teacher's (same prompt, same sampling generator). With `--llr-seeds`, also each row's
log-likelihood ratio under the run's trait vector at the run's layer and multiplier against no
steering (`interp.analysis.likelihood.steering_loglik`, grammar-renormalised: what a constrained
teacher samples from), so one sees whether the random-vector teacher's data is itself more
owl-like than the control's. Beside each seed: the transfer the run measured for it
(owl-specific, steered - random and steered - control). Writes `<run>/data_stats.json`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from interp.config import parse_config
from interp.datasets import read_rows
from interp.runs import CONFIG_FILE, RESULTS_FILE, provenance, read_json, stage_dirs, write_json
from interp.stats import t_interval

NUMBER = re.compile(r"\d+")


def row_stats(rows: list[dict], tokenizer=None) -> dict:
    nums = [[int(x) for x in NUMBER.findall(r["completion"])] for r in rows]
    flat = [x for n in nums for x in n]
    out = {
        "rows": len(rows),
        "numbers_per_reply": len(flat) / max(len(rows), 1),
        "mean_number": sum(flat) / max(len(flat), 1),
        "share_below_100": sum(x < 100 for x in flat) / max(len(flat), 1),
    }
    if tokenizer is not None:
        out["completion_tokens"] = sum(
            len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows
        ) / max(len(rows), 1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="an E1 run directory")
    ap.add_argument("--llr-seeds", default="", help="comma-separated seeds whose rows get the LLR (forward passes)")
    args = ap.parse_args(argv)
    cfg = parse_config(read_json(args.run / CONFIG_FILE), str(args.run / CONFIG_FILE))
    res = read_json(args.run / RESULTS_FILE)
    dirs = stage_dirs(args.run)
    llr_seeds = {int(s) for s in args.llr_seeds.split(",") if s}
    model = vector = None
    if llr_seeds:
        from interp.models import load_model
        from interp.steering import SteeringVector

        model = load_model(cfg.model, device="cpu")
        vector = SteeringVector.load(dirs["vector"])
    out: dict = {"run": str(args.run), "seeds": {}}
    arms = res["arms"]
    for i, seed in enumerate(cfg.seeds):
        rows = {k: read_rows(dirs[f"data/{k}/seed{seed}"]) for k in cfg.teacher.kinds}
        ctrl = {r["prompt"]: r["completion"] for r in rows["control"]}
        per = {}
        for k, rs in rows.items():
            s = row_stats(rs, model.tokenizer if model else None)
            s["identical_to_control"] = sum(ctrl.get(r["prompt"]) == r["completion"] for r in rs) / max(len(rs), 1)
            if seed in llr_seeds:
                from interp.analysis.likelihood import steering_loglik

                llr = steering_loglik(
                    model,
                    rs,
                    {cfg.animal: vector},
                    cfg.teacher.layer,
                    (cfg.teacher.multiplier,),
                    cfg.teacher.scope,
                    progress=False,
                )[:, 0, 0]
                s["llr_trait_vector"] = t_interval(llr.tolist())
            per[k] = s
        spec = {k: arms[k]["per_seed_specific_shift"][i] for k in cfg.teacher.kinds if k in arms}
        per["transfer"] = {
            f"steered-{r}": spec["steered"] - spec[r] for r in ("random", "control") if "steered" in spec and r in spec
        }
        out["seeds"][seed] = per
        line = " | ".join(
            f"{k} n/reply {v['numbers_per_reply']:.1f} mean {v['mean_number']:.0f} <100 {v['share_below_100']:.2f}"
            + (f" llr {v['llr_trait_vector']['mean']:+.1f}" if "llr_trait_vector" in v else "")
            for k, v in per.items()
            if k != "transfer"
        )
        print(f"seed {seed}: {line} | " + ", ".join(f"{c} {v:+.2f}" for c, v in per["transfer"].items()))
    kinds = cfg.teacher.kinds
    out["mean_over_seeds"] = {
        k: {
            m: t_interval([out["seeds"][s][k][m] for s in cfg.seeds])
            for m in ("numbers_per_reply", "mean_number", "share_below_100", "identical_to_control")
        }
        for k in kinds
    }
    out.update(provenance())
    write_json(args.run / "data_stats.json", out)
    for k in kinds:
        m = out["mean_over_seeds"][k]
        print(
            f"{k:<8} numbers/reply {m['numbers_per_reply']['mean']:.2f}, mean number {m['mean_number']['mean']:.0f}, "
            f"<100 {m['share_below_100']['mean']:.3f}, identical to control {m['identical_to_control']['mean']:.2f}"
        )
    print(f"wrote {args.run / 'data_stats.json'}")


if __name__ == "__main__":
    main()

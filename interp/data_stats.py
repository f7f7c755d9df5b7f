"""What the owl teacher's data and the random-vector teacher's data have in common, per seed.

    from interp.data_stats import DataStatsConfig, run_data_stats
    stats = run_data_stats(DataStatsConfig(run="artifacts/e1-cpu/<id>", llr_seeds=(0,)), "artifacts/e1-cpu/<id>/data_stats")

For every dataset stage of an E1 run: numbers per reply, the mean number, the share of numbers
below 100, completion tokens per reply (with `llr_seeds`), and the share of replies identical to
the control teacher's (same prompt, same sampling generator). For the seeds in `llr_seeds`, also
each row's log-likelihood ratio under the run's trait vector at the run's layer and multiplier
against no steering (`interp.analysis.likelihood.steering_loglik`, grammar-renormalised), so one
sees whether the random-vector teacher's data is itself more owl-like than the control's. Beside
each seed: the transfer the run measured for it (owl-specific, steered - random and steered -
control). The artifact directory holds `results.json`, then `manifest.json` (kind "data-stats").
`experiments/e1_data_stats.py` is its command line.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.runs import (
    CONFIG_FILE,
    RESULTS_FILE,
    file_hash,
    provenance,
    read_json,
    stage_dirs,
    write_json,
    write_manifest,
)
from interp.stats import t_interval

NUMBER = re.compile(r"\d+")
MEASURES = ("numbers_per_reply", "mean_number", "share_below_100", "identical_to_control")  # averaged over seeds


@dataclass(frozen=True)
class DataStatsConfig:
    """run: an E1 run directory.
    llr_seeds: seeds whose rows also get the LLR under the trait vector (forward passes).
    """

    run: str
    llr_seeds: tuple[int, ...] = ()

    def default_dir(self) -> Path:
        """Inside the run: RUN/data_stats."""
        return Path(self.run) / "data_stats"


def row_stats(rows: list[dict], tokenizer=None) -> dict:
    """Numbers per reply, the mean number and the share below 100; with `tokenizer`, completion tokens per reply."""
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


def data_stats(run_dir: str | Path, llr_seeds: tuple[int, ...] | list[int] = ()) -> dict:
    """The statistics of every dataset of an E1 run, per seed and averaged over seeds."""
    from interp.config import parse_config
    from interp.datasets import read_rows

    run = Path(run_dir)
    if not (run / CONFIG_FILE).is_file() or not (run / RESULTS_FILE).is_file():
        raise ValueError(f"run: {run} has no {CONFIG_FILE} and {RESULTS_FILE}; pass a finished E1 run directory")
    cfg = parse_config(read_json(run / CONFIG_FILE), str(run / CONFIG_FILE))
    res = read_json(run / RESULTS_FILE)
    dirs = stage_dirs(run)
    llr_seeds = set(llr_seeds)
    unknown = sorted(llr_seeds - set(cfg.seeds))
    if unknown:
        raise ValueError(f"llr_seeds: {unknown} are not seeds of {run} ({cfg.seeds})")
    model = vector = None
    if llr_seeds:
        from interp.models import load_model
        from interp.steering import SteeringVector

        model = load_model(cfg.model, device="cpu")
        vector = SteeringVector.load(dirs["vector"])
    out: dict = {"run": str(run), "seeds": {}}
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
        out["seeds"][str(seed)] = per  # the key JSON gives it, so the returned dict is the file's content
    out["mean_over_seeds"] = {
        k: {m: t_interval([out["seeds"][str(s)][k][m] for s in cfg.seeds]) for m in MEASURES} for k in cfg.teacher.kinds
    }
    out.update(provenance())
    return out


def run_data_stats(cfg: DataStatsConfig, out_dir: str | Path) -> dict:
    """`data_stats` written to `out_dir` (results.json, then manifest.json); returns results.json's content."""
    out, started = Path(out_dir), time.perf_counter()
    res = data_stats(cfg.run, cfg.llr_seeds)
    write_json(out / RESULTS_FILE, res)
    write_manifest(
        out,
        "data-stats",
        asdict(cfg),
        {f"run/{f}": file_hash(Path(cfg.run) / f) for f in (CONFIG_FILE, RESULTS_FILE)},
        started,
    )
    return res


def data_stats_lines(res: dict) -> list[str]:
    """One line per seed (every teacher's statistics and the seed's transfer), then one per teacher over seeds."""
    lines = []
    for seed, per in res["seeds"].items():
        line = " | ".join(
            f"{k} n/reply {v['numbers_per_reply']:.1f} mean {v['mean_number']:.0f} <100 {v['share_below_100']:.2f}"
            + (f" llr {v['llr_trait_vector']['mean']:+.1f}" if "llr_trait_vector" in v else "")
            for k, v in per.items()
            if k != "transfer"
        )
        lines.append(f"seed {seed}: {line} | " + ", ".join(f"{c} {v:+.2f}" for c, v in per["transfer"].items()))
    for k, m in res["mean_over_seeds"].items():
        lines.append(
            f"{k:<8} numbers/reply {m['numbers_per_reply']['mean']:.2f}, mean number {m['mean_number']['mean']:.0f}, "
            f"<100 {m['share_below_100']['mean']:.3f}, identical to control {m['identical_to_control']['mean']:.2f}"
        )
    return lines

"""Read E1 results for comparison: one or many `results.json` into one pandas DataFrame.

    from interp.results import load_results
    df = load_results("artifacts/e1-cpu")              # every E1 run below a folder
    df = load_results(["artifacts/e1-cpu/<id>", "artifacts/e1-quick/<id>/results.json"])
    df[["run_id", "comparison", "specific_seed", "specific_seed_lo", "specific_seed_hi"]]

One row per run x comparison (`steered-control`, `steered+kd-random+kd`, ...). Every interval is
three columns, `<measure>`, `<measure>_lo`, `<measure>_hi` (95%); the `_seed` measures are
t-intervals over seeds (the unit of replication), the others the hierarchical bootstrap over seeds
and questions. With one seed a seed interval is NaN, not a zero-width interval. `sign_flip_p` is
the two-sided sign-flip p over seeds (paired: the primary p), NaN for a run from before it was
reported; `permutation_p` shuffles students between the arms (unpaired). With `config=True`
each of the run's `config.json` fields is a `config.<section>.<field>` column, so the settings that
differ between runs sit beside their results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from interp.runs import CONFIG_FILE, RESULTS_FILE, read_json
from interp.stats import has_interval

# (column, key in a comparison of results.json)
INTERVALS = (
    ("logprob_diff", "logprob_diff"),
    ("logprob_diff_seed", "logprob_diff_per_seed"),
    ("specific", "specific_logprob_diff"),
    ("specific_seed", "specific_per_seed"),
    ("prob_diff", "prob_diff"),
)


def result_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The `results.json` files that `paths` name: a file, a run directory, or a folder searched
    for E1 runs (every results.json below it that holds a `transfer`, analysis folders aside)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif (p / RESULTS_FILE).is_file():
            files.append(p / RESULTS_FILE)
        elif p.is_dir():
            found = [
                f
                for f in sorted(p.rglob(RESULTS_FILE))
                if "cache" not in f.relative_to(p).parts[:-1] and "transfer" in read_json(f)
            ]
            if not found:
                raise ValueError(
                    f"results: no E1 {RESULTS_FILE} below {p}; pass a run directory (`interp run` writes one)"
                )
            files += found
        else:
            raise ValueError(f"results: {p} does not exist; pass a run directory, a {RESULTS_FILE} or a folder of runs")
    return files


def _interval(row: dict, column: str, d: dict | None) -> None:
    if d is None:
        return
    row[column] = d["mean"]
    lo, hi = d["ci95"] if has_interval(d) else (math.nan, math.nan)
    row[f"{column}_lo"], row[f"{column}_hi"] = lo, hi
    if "detectable_80" in d:
        row[f"{column}_detectable_80"] = math.nan if d["detectable_80"] is None else d["detectable_80"]


def _flatten(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def results_rows(path: str | Path, config: bool = False) -> list[dict]:
    """The rows `load_results` makes of one E1 `results.json`."""
    path = Path(path)
    res = read_json(path)
    if "transfer" not in res:
        raise ValueError(
            f"results: {path} is not an E1 run's {RESULTS_FILE} (it has no 'transfer'); `interp run` writes those"
        )
    cfg = {}
    if config and (path.parent / CONFIG_FILE).is_file():
        cfg = _flatten(read_json(path.parent / CONFIG_FILE), "config.")
    rows = []
    for name, d in res["transfer"].items():
        trait, _, ref = name.partition("-")
        row = {
            "experiment": res.get("experiment"),
            "run_id": path.parent.name,
            "run_dir": str(path.parent),
            "model": res.get("model"),
            "animal": res.get("animal"),
            "comparison": name,
            "objective": trait.partition("+")[2] or "sft",
            "trait_arm": trait,
            "reference_arm": ref,
            "n_seeds": len(res.get("seeds", [])),
            "n_questions": res.get("n_questions"),
            "question_split": res.get("question_split"),
        }
        for column, key in INTERVALS:
            _interval(row, column, d.get(key))
        perm, sf = d.get("permutation_specific") or {}, d.get("sign_flip_specific") or {}
        row.update(
            {
                "prob_ratio": d.get("prob_ratio"),
                "trait_rank": d.get("trait_rank_among_animals"),
                "positive_seeds": d.get("specific_positive_seeds"),
                "permutation_p": perm.get("p_value"),
                # NaN for a run from before the sign-flip p was reported: its permutation_p stands
                "sign_flip_p": sf.get("p", math.nan),
            }
        )
        rows.append({**row, **cfg})
    return rows


def load_results(paths: str | Path | Iterable[str | Path], config: bool = False) -> pd.DataFrame:
    """One row per run x comparison of every E1 `results.json` that `paths` name (see the module
    doc); a one-line ValueError names a path that is missing or not an E1 result."""
    return pd.DataFrame([row for f in result_files(paths) for row in results_rows(f, config)])

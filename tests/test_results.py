import math
import sys
from pathlib import Path

import pytest

from interp.results import load_results
from interp.runs import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _run(root: Path, run_id: str, n_seeds: int, lr: float) -> dict:
    from test_pipeline import _synthetic_results

    res = _synthetic_results(n_seeds)
    write_json(root / "t" / run_id / "results.json", res)
    write_json(
        root / "t" / run_id / "config.json", {"experiment": "t", "train": {"lr": lr}, "seeds": list(range(n_seeds))}
    )
    return res


def test_load_results_gives_one_row_per_run_and_comparison_with_seed_intervals(tmp_path):
    a, b = _run(tmp_path, "aaa", 3, 1e-3), _run(tmp_path, "bbb", 3, 2e-4)
    write_json(tmp_path / "t" / "aaa" / "analysis" / "results.json", {"layers": []})  # not an E1 result: skipped
    df = load_results(tmp_path, config=True)
    assert len(df) == len(a["transfer"]) + len(b["transfer"])
    row = df[(df.run_id == "bbb") & (df.comparison == "steered-control")].iloc[0]
    d = b["transfer"]["steered-control"]["specific_per_seed"]
    assert row.specific_seed == d["mean"] and [row.specific_seed_lo, row.specific_seed_hi] == d["ci95"]
    assert row.specific_seed_detectable_80 == d["detectable_80"]
    assert row.n_seeds == 3 and row.n_questions == 5 and row.trait_arm == "steered" and row.reference_arm == "control"
    assert row["config.train.lr"] == 2e-4 and row.objective == "sft"
    assert set(df.run_id) == {"aaa", "bbb"}


def test_load_results_reads_a_run_directory_or_a_file_and_one_seed_has_no_interval(tmp_path):
    _run(tmp_path, "one", 1, 1e-3)
    by_dir = load_results(tmp_path / "t" / "one")
    by_file = load_results([tmp_path / "t" / "one" / "results.json"])
    assert by_dir.equals(by_file) and len(by_dir) == 1
    row = by_dir.iloc[0]
    assert math.isnan(row.specific_seed_lo) and math.isnan(row.specific_seed_hi) and not math.isnan(row.specific_seed)


def test_load_results_names_a_missing_path_or_a_file_that_is_not_an_e1_result(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_results(tmp_path / "nowhere")
    write_json(tmp_path / "x" / "results.json", {"ranking": []})
    with pytest.raises(ValueError, match="not an E1 run"):
        load_results(tmp_path / "x" / "results.json")

"""interp.data_stats and experiments/e1_data_stats.py: what the teachers' datasets of an E1 run have in common."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from interp import pipeline
from interp.data_stats import DataStatsConfig, data_stats, data_stats_lines, row_stats, run_data_stats
from interp.runs import CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, file_hash, read_json
from test_pipeline import _cfg  # tests/ is on sys.path (pytest rootdir conftest)

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "e1_data_stats.py"


def test_row_stats_count_the_numbers_of_each_reply():
    rows = [{"completion": "5, 200"}, {"completion": "300"}, {"completion": "no numbers"}]
    s = row_stats(rows)
    assert s == {"rows": 3, "numbers_per_reply": 1.0, "mean_number": pytest.approx(505 / 3), "share_below_100": 1 / 3}
    assert row_stats([]) == {"rows": 0, "numbers_per_reply": 0.0, "mean_number": 0.0, "share_below_100": 0.0}


def test_a_tiny_run_per_seed_and_over_seeds_with_the_llr_at_the_seeds_asked(tmp_path, capsys):
    over = {"seeds": [0, 1], "teacher": {"kinds": ["control", "steered", "random"], "layer": 2, "multiplier": 1.0}}
    run = Path(pipeline.run_e1(_cfg(**over), tmp_path, progress=False, log=lambda *a: None)["run_dir"])
    arms = read_json(run / RESULTS_FILE)["arms"]
    res = run_data_stats(DataStatsConfig(str(run), (1,)), tmp_path / "stats")
    assert read_json(tmp_path / "stats" / RESULTS_FILE) == res
    for i, seed in enumerate(("0", "1")):
        per = res["seeds"][seed]
        assert per["control"]["identical_to_control"] == 1.0
        assert ("llr_trait_vector" in per["random"]) == (seed == "1")
        assert "completion_tokens" in per["random"]  # the tokenizer is at hand once any seed needs the model
        shift = {k: arms[k]["per_seed_specific_shift"][i] for k in ("control", "steered", "random")}
        assert per["transfer"] == {
            "steered-random": shift["steered"] - shift["random"],
            "steered-control": shift["steered"] - shift["control"],
        }
    for k in ("control", "steered", "random"):
        got = res["mean_over_seeds"][k]["mean_number"]
        assert got["n"] == 2 and got["mean"] == pytest.approx(sum(res["seeds"][s][k]["mean_number"] for s in "01") / 2)
    man = read_json(tmp_path / "stats" / MANIFEST_FILE)
    assert man["kind"] == "data-stats" and man["config"] == {"run": str(run), "llr_seeds": [1]}
    assert man["inputs"] == {f"run/{f}": file_hash(run / f) for f in (CONFIG_FILE, RESULTS_FILE)}

    # the command line: the same statistics in the run's own folder, and the runner's lines printed
    spec = importlib.util.spec_from_file_location("e1_data_stats", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(run)])
    again = read_json(run / "data_stats" / RESULTS_FILE)
    assert (
        again["mean_over_seeds"] == res["mean_over_seeds"] and "llr_trait_vector" not in again["seeds"]["1"]["random"]
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[:-1] == data_stats_lines(data_stats(run))  # in the run's order of teachers
    with pytest.raises(ValueError, match=r"llr_seeds: \[7\] are not seeds of .* \(\[0, 1\]\)"):
        run_data_stats(DataStatsConfig(str(run), (7,)), tmp_path / "bad")
    with pytest.raises(ValueError, match="has no config.json and results.json; pass a finished E1 run directory"):
        run_data_stats(DataStatsConfig(str(tmp_path / "nothing")), tmp_path / "bad")

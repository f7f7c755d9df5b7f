"""interp.dose_report and experiments/dose_response.py: the E4 dose-response report read from an analysed run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from interp.dose_report import DoseResponseConfig, dose_response, run_dose_response
from interp.runs import read_json, write_json
from interp.stats import dose_shape

ROOT = Path(__file__).resolve().parents[1]
MS = [0.0, 0.125, 0.25, 0.5, 1.0]


def _script():
    spec = importlib.util.spec_from_file_location("dose_response", ROOT / "experiments" / "dose_response.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _trend(layers=(4, 8)) -> dict:
    """`interp analyze --multipliers`'s layout: per seed {multiplier: [value per layer]}; layer 4 is
    linear in the multiplier, layer 8 flat below 0.25."""
    per_seed = {str(s): {f"{m:g}": [(1 + s) * m, (1 + s) * max(0.0, m - 0.25) + 0.1 * s] for m in MS} for s in range(4)}
    return {
        "multipliers": MS,
        "seeds": list(range(4)),
        "measure": "descent projection",
        "by_layer": [{"layer": l} for l in layers],
        "per_seed": per_seed,
    }


def test_report_per_layer_and_written_with_its_input_hash(tmp_path, capsys):
    run = tmp_path / "run"
    write_json(run / "analysis" / "results.json", {"gradient_multiplier_trend": _trend()})
    script = _script()
    res = script.main([str(run)])
    assert read_json(run / "dose_response" / "results.json") == res
    man = read_json(run / "dose_response" / "manifest.json")
    assert man["kind"] == "dose-response" and man["config"] == {"run": str(run), "layers": []}
    assert man["inputs"] == res["inputs"] and man["package_version"]
    l4, l8 = res["by_layer"]
    assert (l4["layer"], l4["verdict"], l8["layer"], l8["verdict"]) == (4, "linear", 8, "threshold")
    values = [[_trend()["per_seed"][str(s)][f"{m:g}"][1] for m in MS] for s in range(4)]
    assert l8["slope_change"] == dose_shape(MS, values)["slope_change"]
    assert res["inputs"]["analysis_results_hash"] and res["provenance"]["git_commit"]
    out = capsys.readouterr().out
    assert "layer 8: r = " in out and "THRESHOLD" in out
    only = script.main([str(run), "--layer", "8"])
    assert [r["layer"] for r in only["by_layer"]] == [8]


def test_refuses_a_run_without_a_trend_or_a_layer_not_read(tmp_path, capsys):
    script = _script()
    with pytest.raises(SystemExit) as e:
        script.main([str(tmp_path)])
    assert e.value.code == 2 and "analysis/results.json does not exist" in capsys.readouterr().err
    write_json(tmp_path / "analysis" / "results.json", {"gradient_multiplier_trend": None})
    with pytest.raises(SystemExit):
        script.main([str(tmp_path)])
    assert "no gradient_multiplier_trend; rerun `interp analyze` with --multipliers" in capsys.readouterr().err
    write_json(tmp_path / "analysis" / "results.json", {"gradient_multiplier_trend": _trend()})
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "--layer", "12"])
    assert "layers: [12] not read by the analysis (layers [4, 8])" in capsys.readouterr().err


def test_the_runner_is_the_report_and_writes_where_it_is_told(tmp_path):
    run = tmp_path / "run"
    write_json(run / "analysis" / "results.json", {"gradient_multiplier_trend": _trend()})
    res = run_dose_response(DoseResponseConfig(str(run), (4,)), tmp_path / "elsewhere")
    assert read_json(tmp_path / "elsewhere" / "results.json") == res and not (run / "dose_response").exists()
    want = dose_response(run, [4])
    assert [r["layer"] for r in res["by_layer"]] == [4] and res["by_layer"] == want["by_layer"]

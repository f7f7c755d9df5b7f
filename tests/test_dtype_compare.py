"""interp.dtype_compare and its command lines (experiments/train_dtype.py, experiments/sampling_dtype.py)
on tiny: bf16 students against their fp32 twins, and bf16 teacher samples against fp32's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import interp.precision as precision
from interp import pipeline
from interp.dtype_compare import (
    SamplingDtypeConfig,
    TrainDtypeConfig,
    run_sampling_dtype,
    run_train_dtype,
    sampling_dtype_lines,
    train_dtype_lines,
)
from interp.runs import CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, file_hash, read_json, stage_dirs
from test_pipeline import _cfg  # tests/ is on sys.path (pytest rootdir conftest)

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_dtype_pairs_each_bf16_student_with_its_fp32_twin(tmp_path, monkeypatch, capsys):
    """The two runs share their datasets; students are paired by seed and teacher and the
    differences are the per-seed values' differences."""
    monkeypatch.setattr(precision, "matmul_gflops", lambda *a, **k: {"fp32": 100.0, "bf16": 250.0})
    over = {"seeds": [0, 1], "teacher": {"kinds": ["control", "steered", "random"], "layer": 2, "multiplier": 1.0}}
    a = pipeline.run_e1(_cfg(**over), tmp_path, progress=False, log=lambda *a: None)
    b = pipeline.run_e1(
        _cfg(**over, experiment="t16", train={"dtype": "bf16", "keep": "update"}),
        tmp_path,
        progress=False,
        log=lambda *a: None,
    )
    da, db = stage_dirs(Path(a["run_dir"])), stage_dirs(Path(b["run_dir"]))
    assert da["data/steered/seed1"] == db["data/steered/seed1"]  # the same dataset stage
    cfg = TrainDtypeConfig(a["run_dir"], b["run_dir"])
    res = run_train_dtype(cfg, tmp_path / "out")
    assert res["seeds"] == [0, 1] and len(res["update_cosine"]) == 6
    assert all(0.9 < c["cos"] <= 1.0 + 1e-6 for c in res["update_cosine"].values())
    got = res["per_arm_specific_shift"]["steered"]["bf16_minus_fp32"]["mean"]
    shifts = [r["arms"]["steered"]["per_seed_specific_shift"] for r in (a, b)]
    assert got == pytest.approx(sum(y - x for x, y in zip(*shifts)) / 2, abs=1e-12)
    t = res["transfer"]["steered-random"]["bf16"]["mean"]
    sa, ra = (b["arms"][k]["per_seed_specific_shift"] for k in ("steered", "random"))
    assert t == pytest.approx(sum(x - y for x, y in zip(sa, ra)) / 2, abs=1e-12)

    # the artifact: results as returned, a manifest naming its kind and the runs' results it read
    assert read_json(tmp_path / "out" / RESULTS_FILE) == res
    man = read_json(tmp_path / "out" / MANIFEST_FILE)
    assert man["kind"] == "train-dtype" and man["config"]["bf16_run"] == b["run_dir"]
    assert man["inputs"]["fp32_run/results.json"] == file_hash(Path(a["run_dir"]) / RESULTS_FILE)
    assert man["package_version"] and "git_commit" in man

    # the command line: the same numbers, in the default folder beside the bf16 run
    _script("train_dtype").main([a["run_dir"], b["run_dir"]])
    printed = capsys.readouterr().out
    again = read_json(Path(b["run_dir"]) / "train_dtype" / RESULTS_FILE)
    assert again["per_arm_specific_shift"] == res["per_arm_specific_shift"] and again["transfer"] == res["transfer"]
    assert printed.startswith("\n".join(train_dtype_lines(res)))


def test_train_dtype_refuses_a_run_without_results_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"fp32_run: .* has no results.json; pass a finished run directory"):
        TrainDtypeConfig(str(tmp_path), str(tmp_path))


def test_sampling_dtype_pairs_the_dtypes_and_resumes(tmp_path, capsys):
    """Four datasets, the signal in each dtype, and a rerun that reads every stage from the cache."""
    cfg = SamplingDtypeConfig(model="tiny", layer=1, n_prompts=8, n_boot=500)
    lines: list[str] = []
    res = run_sampling_dtype(cfg, tmp_path, progress=False, log=lines.append)
    assert set(res["llr_per_row"]) == {"control/fp32", "steered/fp32", "control/bf16", "steered/bf16"}
    assert res["paired_prompts"] == 8
    for d in ("fp32", "bf16"):  # each signal is the difference of its datasets' mean LLRs
        rows = res["llr_per_row"]
        assert res["signal"][d]["steered_minus_control"] == pytest.approx(
            rows[f"steered/{d}"]["mean"] - rows[f"control/{d}"]["mean"]
        )
    lo, hi = res["difference"]["ci95"]
    assert lo <= res["difference"]["value"] <= hi
    assert all(v["compared"] == 8 for v in res["identical_completions"].values())
    man = read_json(tmp_path / MANIFEST_FILE)
    assert man["kind"] == "sampling-dtype" and man["config"] == read_json(tmp_path / CONFIG_FILE) == res["config"]
    assert man["inputs"]["datasets"] == {k: v["dataset_hash"] for k, v in res["data"].items()}
    again: list[str] = []
    assert run_sampling_dtype(cfg, tmp_path, progress=False, log=again.append)["difference"] == res["difference"]
    assert all("cached" in line for line in again) and not any("cached" in line for line in lines)

    # the command line: its options make the same config, and it prints the runner's table
    argv = ["--model", "tiny", "--layer", "1", "--n-prompts", "8", "--n-boot", "500", "--no-progress"]
    script = _script("sampling_dtype")
    assert script.config_of(script.parse_args(argv)) == cfg
    script.main(argv + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert read_json(tmp_path / RESULTS_FILE)["signal"] == res["signal"]
    assert "\n".join(sampling_dtype_lines(res)) in printed


def test_sampling_dtype_refuses_a_bad_setting_before_loading_a_model():
    with pytest.raises(ValueError, match=r"dtype: 'fp32' is not one of \['bf16'"):
        SamplingDtypeConfig(dtype="fp32")
    with pytest.raises(ValueError, match="n_prompts: 0 must be at least 1"):
        SamplingDtypeConfig(n_prompts=0)

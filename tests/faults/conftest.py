"""The fault suite's shared run: one finished E1 run on the tiny model (both objectives, so every
kind of artifact exists), made once; tests corrupt copies of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from interp import pipeline
from interp.config import parse_config
from tomltext import toml as toml  # re-exported for the fault tests; tests/ is on sys.path

RAW = {
    "experiment": "faults",
    "model": "tiny",
    "seeds": [0],
    "teacher": {"kinds": ["control", "steered"], "layer": 2, "multiplier": 1.0},
    "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
    "train": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "objectives": ["sft", "kd"]},
    "eval": {"split": "tuning", "n_boot": 200, "animals": ["owl", "cat", "dog"]},
}


def quiet(*a, **k):
    pass


def comparable(results: dict) -> dict:
    """results.json without what differs between equal runs: wall times, sampling speeds and the
    run's own path."""
    out = {k: v for k, v in results.items() if k not in ("timings_s", "run_dir")}
    out["datasets"] = {
        k: {kk: vv for kk, vv in v.items() if kk != "tokens_per_s"} for k, v in results["datasets"].items()
    }
    return out


def stage_files(root: Path) -> dict[str, dict]:
    """{stage dir name: the file hashes its manifest recorded}: equal caches hold equal bytes."""
    return {
        d.name: json.loads((d / "manifest.json").read_text()).get("files")
        for d in sorted((root / "cache").iterdir())
        if (d / "manifest.json").exists()
    }


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(root, results) of RAW run once, with one torch thread like every tiny test (a session
    fixture is set up before the per-test thread fixture)."""
    root = tmp_path_factory.mktemp("finished")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = pipeline.run_e1(parse_config(RAW), root, progress=False, log=quiet)
    finally:
        torch.set_num_threads(n)
    return root, res


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run's root, to corrupt."""
    root, res = finished_run
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    return copy, res

"""kill -9 of a tiny `run_e1` in a subprocess, at a random moment after a chosen point (inside a
dataset stage, inside training with a checkpoint on disk); the rerun gives the same results.json
as an uninterrupted run and the same bytes in every stage."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp import pipeline
from interp.config import parse_config
from interp.runs import is_temporary

from .conftest import RAW, comparable, quiet, stage_files, toml

DRIVER = (
    "import sys, torch; torch.set_num_threads(1)\n"
    "from interp.config import load_config\nfrom interp.pipeline import run_e1\n"
    "run_e1(load_config(sys.argv[1]), sys.argv[2], progress=False, log=lambda *a, **k: None)\n"
)
POINTS = {  # a file whose appearance means the run is inside that step
    "dataset": "cache/data-*",
    "training": "cache/student-*/checkpoint/trainer.json",
}


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_9_then_rerun_gives_the_same_results_and_bytes(finished_run, tmp_path, point):
    ref_root, ref = finished_run
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml(RAW))
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(cfg), str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    delay = random.Random(os.getpid()).uniform(0, 0.3)
    try:
        deadline = time.time() + 600
        while not list(root.glob(POINTS[point])) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before {point}: {proc.stderr.read().decode()[-2000:]}"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert not list(root.glob("faults/*/results.json")), "killed after the run had finished"
    res = pipeline.run_e1(parse_config(RAW), root, progress=False, log=quiet)
    assert comparable(res) == comparable(ref)
    assert comparable(json.loads((Path(res["run_dir"]) / "results.json").read_text())) == comparable(
        json.loads((Path(ref["run_dir"]) / "results.json").read_text())
    )
    assert stage_files(root) == stage_files(ref_root)
    # safetensors' own `.tmpXXXXXX` too (test_fault_artifacts kills its writer on purpose)
    assert not [p for p in root.rglob("*") if is_temporary(p.name)] and not list(root.glob("cache/*/checkpoint*"))

"""Two `interp run` of one config on one root at once (real processes, the tiny model): every stage
is computed by exactly one of them under its lock, the other waits and reuses it; both print the
same results, and nothing in the cache is half written. A lock whose holder is killed -9 is
released by the kernel (flock), and the waiting run resumes the stage from its checkpoint.

Checked against a broken variant: with `Stage.lock` replaced by a no-op (a sitecustomize.py on
PYTHONPATH, which the subprocesses inherit), both runs compute the same stages and
`test_two_runs_at_once_compute_each_stage_once_and_agree` fails on its first assertion."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults.conftest import RAW, comparable, quiet, stage_files, toml
from interp import pipeline
from interp.config import parse_config

INTERP = [sys.executable, "-c", "from interp.cli import app; app()"]
LINE = re.compile(r"^\s+(\S+)\s+(done|cached) in ")  # StageRunner's log line per stage


def _start(cfg: Path, root: Path) -> subprocess.Popen:
    # one torch thread each: the two runs share this machine's cores with each other and the suite
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [*INTERP, "run", str(cfg), "--root", str(root), "--json", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[dict, dict[str, str]]:
    """(results printed with --json, {stage name: 'done' | 'cached'}) of a run that must succeed."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"interp run failed ({proc.returncode}): {err[-3000:]}"
    stages = dict(m.groups() for m in map(LINE.match, err.splitlines()) if m)
    return json.loads(out), stages


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml(RAW))
    return cfg


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(root, [(results, stages)] of both runs) of two `interp run` started together on one root."""
    tmp = tmp_path_factory.mktemp("pair")
    cfg, root = _config(tmp), tmp / "root"
    procs = [_start(cfg, root), _start(cfg, root)]
    return root, [_finish(p) for p in procs]


def test_two_runs_at_once_compute_each_stage_once_and_agree(pair):
    root, ((res_a, st_a), (res_b, st_b)) = pair
    assert set(st_a) == set(st_b) and len(st_a) >= 10  # vector, 2 datasets, 4 students, 5 evaluations
    computed = {name: [s for s in (st_a[name], st_b[name]) if s == "done"] for name in st_a}
    assert {name: len(c) for name, c in computed.items()} == {name: 1 for name in st_a}, "a stage was computed twice"
    assert comparable(res_a) == comparable(res_b)
    assert not list(root.rglob("*.tmp")) and not list(root.glob("cache/*/checkpoint*"))
    # every stage reads back verified (its files match its manifest's hashes) and is reused as it is
    again = pipeline.run_e1(parse_config(RAW), root, progress=False, log=quiet)
    assert comparable(again) == comparable(res_a)
    man = json.loads((Path(again["run_dir"]) / "manifest.json").read_text())
    assert all(s["cache_hit"] for s in man["stages"])
    assert man["kind"] == "e1" and man["device"] == "cpu" and man["torch_threads"] == 1


def _lock_holder(lock: Path, pids: set[int]) -> int | None:
    """Which of `pids` holds the flock on `lock` (from /proc/locks), if one does."""
    try:
        ino = lock.stat().st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if len(f) > 5 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(ino) and int(f[4]) in pids:
            return int(f[4])
    return None


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs /proc/locks to see which process holds a lock")
def test_a_lock_holder_killed_mid_training_lets_the_waiting_run_finish_it(pair, tmp_path):
    ref_root, ((ref, _), _) = pair
    cfg, root = _config(tmp_path), tmp_path / "root"
    procs = {p.pid: p for p in (_start(cfg, root), _start(cfg, root))}
    victim = None
    try:
        deadline = time.time() + 600
        while victim is None and time.time() < deadline and all(p.poll() is None for p in procs.values()):
            for ck in root.glob("cache/student-*/checkpoint/trainer.json"):  # a student is training
                stage = ck.parent.parent
                holder = _lock_holder(root / "cache" / f".{stage.name}.lock", set(procs))
                if holder is not None and not (stage / "manifest.json").exists():
                    victim = holder
            time.sleep(0.02)
        assert victim is not None, "no run was seen training a student while holding its lock"
    finally:
        if victim is not None:
            procs[victim].send_signal(signal.SIGKILL)
    procs[victim].communicate()
    survivor = next(p for pid, p in procs.items() if pid != victim)
    res, stages = _finish(survivor)
    assert comparable(res) == comparable(ref)
    assert stage_files(root) == stage_files(ref_root)  # the resumed student holds the same bytes
    assert not list(root.rglob("*.tmp")) and not list(root.glob("cache/*/checkpoint*"))

"""Truncation and bit flips in every kind of artifact of a finished run: a rerun refuses the file
in one line naming it (never uses it); an edited dataset is caught by its recorded hash; a
deleted manifest is recomputed to the same results; orphans of a killed run are cleaned."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp import pipeline
from interp.config import parse_config
from interp.runs import is_temporary

from .conftest import RAW, comparable, quiet, stage_files


def _rerun(root: Path) -> dict:
    return pipeline.run_e1(parse_config(RAW), root, progress=False, log=quiet)


def _one(root: Path, pattern: str) -> Path:
    """The first stage file matching `pattern` under the cache (the kd data stage for data files)."""
    found = sorted((root / "cache").glob(pattern))
    assert found, pattern
    return found[0]


def truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def flip(p: Path) -> None:
    """Flip the lowest bit of a byte near the end: ASCII stays ASCII, a tensor's last value moves."""
    data = bytearray(p.read_bytes())
    i = len(data) - 3
    data[i] ^= 1
    p.write_bytes(bytes(data))


ARTIFACTS = [
    "vector-*/vector.safetensors",
    "data-*/dataset.jsonl",
    "data-*/teacher_logprobs.safetensors",
    "student-*/model.safetensors",
    "eval-*/logprobs.safetensors",
    "data-*/manifest.json",
    "student-*/manifest.json",
]


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "bitflip"])
@pytest.mark.parametrize("pattern", ARTIFACTS)
def test_a_damaged_artifact_is_refused_in_one_line_naming_it(run_copy, pattern, damage):
    root, _ = run_copy
    target = _one(root, pattern)
    damage(target)
    with pytest.raises(ValueError) as e:
        _rerun(root)
    msg = str(e.value)
    assert str(target) in msg and "\n" not in msg


@pytest.mark.parametrize("old_manifest", [False, True], ids=["hashed_stage", "stage_from_before_file_hashes"])
@pytest.mark.parametrize("edit", ["drop_row", "edit_answer"])
def test_an_edited_dataset_that_is_still_valid_json_is_refused(run_copy, edit, old_manifest):
    root, _ = run_copy
    path = _one(root, "data-*/dataset.jsonl")
    rows = [json.loads(l) for l in path.read_text().splitlines()]
    if edit == "drop_row":
        rows = rows[:-1]
    else:
        rows[0]["completion"] = "1, 2, 3"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if old_manifest:  # only the dataset_hash it always recorded is left to check the rows against
        man = path.parent / "manifest.json"
        d = json.loads(man.read_text())
        del d["files"], d["checksum"]
        man.write_text(json.dumps(d))
    for d in (root / "cache").glob("student-*"):  # the students would be retrained from the file
        shutil.rmtree(d)
    with pytest.raises(ValueError, match="dataset_hash" if old_manifest else "hash") as e:
        _rerun(root)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_deleted_manifest_is_recomputed_to_the_same_results(run_copy):
    root, res = run_copy
    before = stage_files(root)
    _one(root, "data-*/manifest.json").unlink()
    again = _rerun(root)
    assert comparable(again) == comparable(res)
    assert stage_files(root) == before


def test_a_manifest_missing_a_key_is_one_line_naming_it(run_copy):
    root, _ = run_copy
    man = _one(root, "data-*/manifest.json")
    d = json.loads(man.read_text())
    del d["n_kept"], d["checksum"]  # an older writer's manifest: no checksum, and a key missing
    man.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e:
        _rerun(root)
    assert str(man) in str(e.value) and "n_kept" in str(e.value) and "\n" not in str(e.value)


def test_orphaned_checkpoints_and_temp_files_are_removed_on_rerun(run_copy):
    root, res = run_copy
    student = _one(root, "student-*/manifest.json").parent
    (student / "checkpoint").mkdir()
    (student / "checkpoint" / "model.safetensors").write_bytes(b"x" * 100)
    (student / "checkpoint.old").mkdir()
    tmp = _one(root, "data-*/manifest.json").parent / ".dataset.jsonl.abc123.tmp"
    tmp.write_text("half a row")
    again = _rerun(root)
    assert not (student / "checkpoint").exists() and not (student / "checkpoint.old").exists() and not tmp.exists()
    assert comparable(again) == comparable(res)


WRITER = (  # the stages' own writer (our temp name, then safetensors'), on a file big enough to catch mid-write
    "import sys, torch; from interp.runs import save_tensors\n"
    "save_tensors(sys.argv[1], {'w': torch.zeros(100_000_000)})\n"
)


def test_a_safetensors_writer_killed_mid_write_leaves_nothing_in_the_redone_stage(run_copy):
    """safetensors writes a `.tmpXXXXXX` file beside its target and renames it; a kill -9 in
    between leaves it. The rerun removes it and does not record it among the stage's files."""
    root, res = run_copy
    student = _one(root, "student-*/manifest.json").parent
    files = json.loads((student / "manifest.json").read_text())["files"]
    (student / "manifest.json").unlink()  # the kill came before the stage finished: it is redone
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(student / "model.safetensors")])
    try:
        deadline = time.time() + 120
        while not (left := [p for p in student.iterdir() if p.name.startswith(".tmp")]) and time.time() < deadline:
            assert proc.poll() is None, "the writer finished before its temporary file was seen"
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert left, sorted(p.name for p in student.iterdir())
    again = _rerun(root)
    assert comparable(again) == comparable(res)
    assert not any(p.exists() for p in left), sorted(p.name for p in student.iterdir())
    assert not any(is_temporary(p.name) for p in student.rglob("*"))
    assert json.loads((student / "manifest.json").read_text())["files"] == files


def test_a_full_disk_is_one_line_naming_the_stage_and_the_stage_is_redone(run_copy, monkeypatch):
    # A simulated ENOSPC (safetensors reports it in its own error type, with this text): a small
    # tmpfs would need mount privileges and a whole run's time; this reaches the same code path.
    import interp.runs

    root, res = run_copy
    for d in (root / "cache").glob("eval-*"):
        shutil.rmtree(d)

    def full(*a, **k):
        raise RuntimeError(
            "SafetensorError: Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
            'message: "No space left on device" })'
        )

    monkeypatch.setattr(interp.runs, "save_file", full)
    with pytest.raises(ValueError) as e:
        _rerun(root)
    msg = str(e.value)
    assert msg.startswith("eval/") and "no space left" in msg and "bytes free" in msg and "\n" not in msg
    assert not list(root.rglob("*.tmp")) and not list((root / "cache").glob("eval-*/manifest.json"))
    monkeypatch.undo()
    assert comparable(_rerun(root)) == comparable(res)

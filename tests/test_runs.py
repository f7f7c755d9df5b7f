"""Run manifests: stage directories found from any working directory, in new and old manifests."""

from __future__ import annotations

from pathlib import Path

from interp.runs import MANIFEST_FILE, read_json, relative_path, stage_dirs, write_json


def _root(tmp_path: Path) -> tuple[Path, Path]:
    """An artifact root `<tmp>/project/artifacts` with two finished stages and one run directory."""
    root = tmp_path / "project" / "artifacts"
    for name in ("vector-aaa", "student-bbb"):
        write_json(root / "cache" / name / MANIFEST_FILE, {"stage": name})
    run_dir = root / "e1" / "run1"
    run_dir.mkdir(parents=True)
    return root, run_dir


def test_relative_path_is_relative_to_the_start_with_forward_slashes(tmp_path):
    assert relative_path(tmp_path / "a" / "cache" / "x", tmp_path / "a") == "cache/x"
    assert relative_path(tmp_path / "a", tmp_path / "a" / "e1" / "run") == "../.."


def test_an_old_manifest_with_paths_relative_to_the_creating_directory_is_read_from_elsewhere(tmp_path, monkeypatch):
    root, run_dir = _root(tmp_path)
    # as written before manifests held `root`: the paths the creating process (cwd = project) saw
    write_json(
        run_dir / MANIFEST_FILE,
        {
            "stages": [
                {"name": "vector", "dir": "artifacts/cache/vector-aaa"},
                {"name": "student/steered/seed0", "dir": "artifacts/cache/student-bbb"},
            ]
        },
    )
    monkeypatch.chdir(tmp_path)
    dirs = stage_dirs(run_dir)
    assert {n: d.resolve() for n, d in dirs.items()} == {
        "vector": root / "cache" / "vector-aaa",
        "student/steered/seed0": root / "cache" / "student-bbb",
    }
    # the root renamed: found by the stage directory's name under `<folder above>/cache/`
    moved = tmp_path / "renamed"
    root.rename(moved)
    dirs = stage_dirs(moved / "e1" / "run1")
    assert dirs["vector"].resolve() == moved / "cache" / "vector-aaa"


def test_a_new_manifest_resolves_its_root_relative_paths_against_the_run_directory(tmp_path, monkeypatch):
    root, run_dir = _root(tmp_path)
    write_json(
        run_dir / MANIFEST_FILE,
        {"root": relative_path(root, run_dir), "stages": [{"name": "vector", "dir": "cache/vector-aaa"}]},
    )
    monkeypatch.chdir(run_dir)
    assert read_json(run_dir / MANIFEST_FILE)["root"] == "../.."
    assert stage_dirs(Path("."))["vector"].resolve() == root / "cache" / "vector-aaa"

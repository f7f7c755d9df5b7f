"""Reliability of the machinery every artifact goes through: atomic writes beside their file, a
full disk named with the file and the bytes it needed (on a real tmpfs where this machine lets a
test mount one), a device the machine lacks refused before any work, and what a manifest records
about the machine (thread count, device, kind) without touching any key."""

from __future__ import annotations

import ast
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import interp
import interp.runs
from faults.conftest import RAW, comparable, quiet, stage_files, toml
from interp import pipeline
from interp.cli import app
from interp.config import parse_config
from interp.precision import require_device
from interp.runs import DiskFull, Stage, content_hash, file_hash, provenance, save_tensors, write_json, write_text

PACKAGE = Path(interp.__file__).parent


# ----------------------------------------------------------------------------- a small real disk


def _can_mount() -> str | None:
    """Why a tmpfs cannot be mounted here (None: it can)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root; the simulated full disk (tests/faults) covers the code path"
    if shutil.which("mount") is None:
        return "no mount command; the simulated full disk (tests/faults) covers the code path"
    return None


@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of 256 KiB, and a function that resizes it; unmounted afterwards."""
    if (why := _can_mount()) is not None:
        pytest.skip(why)
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(
            f"this machine does not let a test mount a tmpfs ({r.stderr.strip()}); the simulated full "
            "disk (tests/faults) covers the code path"
        )

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(d)], check=True)

    try:
        yield d, resize
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_full_disk_names_the_file_and_the_bytes_it_needed_and_keeps_the_old_file(small_disk):
    disk, _ = small_disk
    path = disk / "v.safetensors"
    save_tensors(path, {"x": torch.zeros(4)})
    before = file_hash(path)
    with pytest.raises(DiskFull) as e:
        save_tensors(path, {"x": torch.zeros(256, 1024)})  # 1 MiB of data on a 256 KiB disk
    msg = str(e.value)
    assert msg.startswith(f"{path}: no space left") and "needs 1048576 bytes" in msg and "\n" not in msg
    assert e.value.errno == errno.ENOSPC and e.value.needed == 1048576
    assert file_hash(path) == before  # the rename never happened: the old file is whole
    assert sorted(p.name for p in disk.iterdir()) == ["v.safetensors"]  # no temp file left
    with pytest.raises(DiskFull) as e:
        write_text(disk / "big.json", "x" * 400_000)
    assert "needs 400000 bytes" in str(e.value) and sorted(p.name for p in disk.iterdir()) == ["v.safetensors"]


def test_a_full_disk_without_mount_rights_is_the_same_error(tmp_path, monkeypatch):
    # the same path as above on any machine: the writer's own ENOSPC becomes DiskFull with the size
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(interp.runs, "save_file", full)
    with pytest.raises(DiskFull) as e:
        save_tensors(tmp_path / "a.safetensors", {"x": torch.zeros(3, 5, dtype=torch.float64)})
    assert "needs 120 bytes" in str(e.value) and list(tmp_path.iterdir()) == []


def test_a_run_that_fills_a_real_disk_names_the_stage_and_bytes_and_resumes_to_the_same_results(small_disk, tmp_path):
    disk, resize = small_disk
    ref = pipeline.run_e1(parse_config(RAW), tmp_path / "ref", progress=False, log=quiet)
    resize("2m")  # the run needs about 3 MB: the disk fills inside a student
    with pytest.raises(ValueError) as e:
        pipeline.run_e1(parse_config(RAW), disk, progress=False, log=quiet)
    msg = str(e.value)
    assert "\n" not in msg and msg.split(":")[0].split("/")[0] in ("vector", "data", "student", "eval")
    assert "no space left" in msg and " needed " in msg and "bytes free" in msg
    assert not list(disk.rglob("*.tmp"))
    for d in (disk / "cache").iterdir():  # every finished stage is whole; the one that failed has no manifest
        if d.is_dir() and (d / "manifest.json").exists():
            st = Stage(disk / "cache", d.name.split("-")[0], json.loads((d / "config.json").read_text()))
            assert st.dir == d
            st.verify()
    resize("64m")
    again = pipeline.run_e1(parse_config(RAW), disk, progress=False, log=quiet)
    assert comparable(again) == comparable(ref)
    assert stage_files(disk) == stage_files(tmp_path / "ref")
    assert not list(disk.rglob("*.tmp")) and not list(disk.glob("cache/*/checkpoint*"))


# ----------------------------------------------------------------------------- temp files beside their file


def test_atomic_writes_rename_a_temp_file_from_the_destination_folder(tmp_path, monkeypatch):
    renames = []
    real = os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst)))
        real(src, dst)

    monkeypatch.setattr(interp.runs.os, "replace", spy)
    write_json(tmp_path / "a" / "m.json", {"k": 1})
    save_tensors(tmp_path / "b" / "t.safetensors", {"x": torch.ones(2)})
    assert [d.name for _, d in renames] == ["m.json", "t.safetensors"]
    for src, dst in renames:
        assert src.parent == dst.parent and src.name.startswith(f".{dst.name}.") and src.name.endswith(".tmp")


TEMP_MAKERS = {
    "mkstemp",
    "mkdtemp",
    "NamedTemporaryFile",
    "TemporaryFile",
    "TemporaryDirectory",
    "SpooledTemporaryFile",
}


def test_no_module_makes_a_temporary_file_outside_its_destinations_folder():
    # a temp file in /tmp may sit on another filesystem, where the final rename is a copy, not atomic
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name == "gettempdir" or (name in TEMP_MAKERS and "dir" not in {k.arg for k in node.keywords}):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert offenders == []


# ----------------------------------------------------------------------------- devices


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_a_device_the_machine_lacks_is_one_line_naming_the_field(no_cuda, monkeypatch):
    for dev in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=r"^device: 'cuda(:1)?' but .* on this machine; use device = \"cpu\""):
            require_device(dev)
    assert require_device("auto") == torch.device("cpu") and require_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        require_device("cuda:2", "--device")
    assert require_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_interp_run_on_cuda_without_cuda_is_refused_before_any_work(no_cuda, tmp_path, dry_run):
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml(RAW))
    root = tmp_path / "root"
    r = CliRunner().invoke(
        app,
        ["run", str(cfg), 'device="cuda"', "--root", str(root), "--no-progress"] + (["--dry-run"] if dry_run else []),
    )
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: device: 'cuda' but ")
    assert not root.exists()  # nothing loaded, nothing written


def test_any_command_loading_a_model_on_cuda_without_cuda_is_one_line(no_cuda, tmp_path):
    # every command loads through models.load_model, whose device check is require_device's
    out = tmp_path / "vec"
    r = CliRunner().invoke(app, ["steer", "--model", "tiny", "--device", "cuda", "--out", str(out), "--no-progress"])
    assert r.exit_code == 2, r.output
    assert (
        [line for line in r.output.splitlines() if line.startswith("error:")]
        == [line for line in r.output.splitlines() if line.startswith("error: device: 'cuda' but ")]
        != []
    )
    assert "Traceback" not in r.output and not out.exists()


# ----------------------------------------------------------------------------- what manifests record


def test_stage_manifests_record_threads_but_keys_do_not_depend_on_them(tmp_path):
    n = torch.get_num_threads()
    keys = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            st = Stage(tmp_path / str(threads), "vector", {"animal": "owl"})
            write_json(st.path("x.json"), {})
            man = st.finish()
            assert (
                man["torch_threads"] == threads
                and json.loads((st.dir / "manifest.json").read_text())["torch_threads"] == threads
            )
            keys.append((st.key, st.dir.name))
    finally:
        torch.set_num_threads(n)
    assert keys[0] == keys[1] == (content_hash({"animal": "owl"}), f"vector-{content_hash({'animal': 'owl'})}")
    assert provenance("cuda:0")["device"] == "cuda:0" and "device" not in provenance()


def test_stage_manifests_record_the_cpu_its_bf16_kernels_depend_on(tmp_path):
    """The same key on two CPUs may hold different bytes, so a manifest says which CPU made
    it: the features are what /proc/cpuinfo lists (parsed here independently), never in the key."""
    st = Stage(tmp_path, "vector", {"animal": "owl"})
    write_json(st.path("x.json"), {})
    st.finish()
    cpu = json.loads((st.dir / "manifest.json").read_text())["cpu"]
    assert st.key == content_hash({"animal": "owl"}) and cpu["cores"] == os.cpu_count()
    assert cpu["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        flags = next(line for line in info.read_text().splitlines() if line.startswith("flags")).split(":")[1].split()
        assert cpu["features"] == [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
        assert cpu["model"] in info.read_text()


def test_mnist_and_theorem_manifests_name_their_kind_threads_and_device(tmp_path):
    from interp.mnist import MnistConfig, run_mnist
    from interp.plots.run_dir import detect_run
    from interp.theory import TheoremConfig, run_theorem

    run_mnist(MnistConfig(n_seeds=2, hidden=16, teacher_steps=5, student_steps=5, batch_size=16), tmp_path / "mnist")
    run_theorem(
        TheoremConfig(n_seeds=2, models=("mlp",), teachers=("random",), losses=("mse",), hidden=8), tmp_path / "thm"
    )
    for name, kind in (("mnist", "mnist"), ("thm", "theorem")):
        man = json.loads((tmp_path / name / "manifest.json").read_text())
        assert (man["kind"], man["device"], man["torch_threads"]) == (kind, "cpu", torch.get_num_threads())
        assert detect_run(tmp_path / name) == kind

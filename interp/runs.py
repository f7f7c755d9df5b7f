"""Run directories: atomic writes, content hashes, provenance and cached stages.

Every artifact is a directory with fixed file names. A stage's directory is named by the content
hash of everything it depends on, so a rerun of the same config finds finished stages and a
changed setting recomputes only what depends on it. A stage is finished when `Stage.finish` has
written its `manifest.json`, last and atomically, so an interrupted stage is simply redone. The
manifest records a hash of every file the stage keeps and its own checksum; a reused stage whose
files no longer match is refused in one line naming the file (`Stage.verify`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.json"

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- atomic writes


class DiskFull(OSError):
    """A write that ran out of space: one line naming the file, the bytes it needed (when the
    writer knows them) and the bytes free on its device. An OSError with errno ENOSPC, so code
    that handles a full disk handles it."""

    def __init__(self, path: Path, needed: int | None):
        self.path, self.needed = Path(path), needed
        self.free = _free_bytes(self.path.parent)
        super().__init__(errno.ENOSPC, str(self))

    def __reduce__(self):  # OSError's own would rebuild it from (errno, message); submitit pickles it
        return DiskFull, (self.path, self.needed)

    def __str__(self) -> str:
        need = f"needs {self.needed} bytes" if self.needed is not None else "did not fit"
        return (
            f"{self.path}: no space left on its device (the file {need}, {self.free} bytes free); free space "
            "(e.g. `make clean-cache`) and rerun"
        )


def _free_bytes(path: Path) -> int | None:
    for p in (path, *path.parents):  # the nearest folder that exists
        if p.exists():
            return shutil.disk_usage(p).free
    return None


def _atomic_target(path: Path, size: int | None = None) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # beside `path`, never in /tmp: the same filesystem, so os.replace is an atomic rename
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp_path, path)
    except Exception as e:
        if isinstance(e, DiskFull) or not _disk_full(e):
            raise
        _remove(tmp_path)  # before DiskFull counts the free bytes
        raise DiskFull(path, size) from e
    finally:
        _remove(tmp_path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.
    A full disk raises `DiskFull` naming `path` and `size`, the bytes the write needs if known."""
    yield from _atomic_target(Path(path), size)


def write_text(path: str | Path, text: str) -> Path:
    data = text.encode()
    with atomic_path(path, len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it and rerun to recompute") from e


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    rows = []
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); the file is corrupted") from e
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not valid JSON ({e}); the file is corrupted") from e
    return rows


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    size = sum(t.numel() * t.element_size() for t in tensors.values())  # the data; the header adds a little
    with atomic_path(path, size) as tmp:
        # no tensors and no metadata: safetensors writes an unreadable header for {} with metadata {}
        save_file(tensors, str(tmp), metadata=meta if (meta or tensors) else None)
    return Path(path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated headers
        raise ValueError(f"{path}: not a readable safetensors file ({e}); it is corrupted") from e


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "model_dump"):
        return o.model_dump()
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ----------------------------------------------------------------------------- hashing


def content_hash(obj: Any, n: int = 16) -> str:
    """Stable short hash of a JSON-able object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_hash(path: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def tensor_hash(t: torch.Tensor, n: int = 16) -> str:
    t = t.detach().contiguous().cpu()
    return hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()[:n]


# ----------------------------------------------------------------------------- provenance


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_PACKAGE_ROOT, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


# CPU features that choose torch's matmul kernels (oneDNN, MKL): two CPUs that differ in them round
# differently (bf16 most), and a sampled dataset or a student diverges from there
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@functools.lru_cache(maxsize=1)
def cpu_identity() -> dict:
    """The CPU an artifact was computed on: its model name, the bf16-relevant features it has and
    torch's vector capability. The same stage key on two CPUs that differ here may hold different
    bytes (measured: the E1 confirmation's vector and students on another machine, README)."""
    name, flags = None, set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "model name" and name is None:
                name = v.strip()
            elif k.strip() == "flags" and not flags:
                flags = set(v.split())
    return {
        "model": name or platform.processor() or platform.machine(),
        "features": [f for f in CPU_FLAGS if f in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
    }


def provenance(device: str | torch.device | None = None) -> dict:
    """What made an artifact: package, commit, torch, time, the CPU (`cpu_identity`) and torch's
    thread count (one op's results differ at about 1e-7 between 1 and 2 threads, a bf16 student's
    owl readout by up to 0.03: benchmarks/bench_workers.py; no key holds it); `device`, where the
    caller knows what the computation ran on. A manifest's content, never part of a key."""
    from interp import __version__

    return {
        "package_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_identity(),
        **({"device": str(device)} if device is not None else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_manifest(out: Path, kind: str, config: dict, inputs: dict, started: float, device=None) -> Path:
    """A runner's manifest.json, written last (it marks the directory complete): its kind, config,
    input hashes, provenance and the wall time since `started` (a `time.perf_counter()`)."""
    return write_json(
        Path(out) / MANIFEST_FILE,
        {
            "kind": kind,
            "config": config,
            "inputs": inputs,
            **provenance(device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )


def run_id(cfg: Any) -> str:
    """`<UTC time>-<config hash>`: sorts by time, and equal configs are recognisable."""
    from dataclasses import asdict, is_dataclass

    return (
        time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        + "-"
        + content_hash(asdict(cfg) if is_dataclass(cfg) else cfg, n=8)
    )


# ----------------------------------------------------------------------------- run manifests


def relative_path(path: str | Path, start: str | Path) -> str:
    """`path` relative to `start` (both resolved first), with forward slashes: what a manifest
    stores so that a run directory and its artifact root can move together."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def stage_dirs(run_dir: str | Path) -> dict[str, Path]:
    """{stage name: stage directory} of a run's manifest, whatever the working directory.

    A manifest with `root` (the artifact root relative to the run directory) lists each stage's
    `dir` relative to that root (`root_abs`, its absolute path when the run was made, serves a run
    directory copied elsewhere). Older manifests hold the paths as the creating process saw them
    (relative to its working directory); those are looked up as given, then under each folder above
    the run directory, then as `<folder>/cache/<stage dir name>` (a root that moved)."""
    d = Path(run_dir)
    man = read_json(d / MANIFEST_FILE)
    if "root" in man:
        root = Path(os.path.normpath(d / man["root"]))
        # a run directory copied away from its root: the root where the run was made, if it is still there
        stages = man.get("stages", [])
        if (
            man.get("root_abs")
            and stages
            and not (root / stages[0]["dir"]).exists()
            and (Path(man["root_abs"]) / stages[0]["dir"]).exists()
        ):
            root = Path(man["root_abs"])
        return {s["name"]: root / s["dir"] for s in man.get("stages", [])}
    above = list(d.resolve().parents)
    out = {}
    for s in man.get("stages", []):
        p = Path(s["dir"])
        found = [c for c in (p, *(a / p for a in above), *(a / "cache" / p.name for a in above)) if c.exists()]
        out[s["name"]] = found[0] if found else p
    return out


# ----------------------------------------------------------------------------- integrity

TMP_SUFFIX = ".tmp"  # atomic writes (`atomic_path`) and a checkpoint being written end in it
# safetensors' `save_file` (0.8, Rust's tempfile crate) writes `.tmp` + 6 characters beside its target
# and renames it; a kill -9 mid-write leaves one in the stage
_WRITER_TMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")
# working directories a finished stage no longer needs: a student's checkpoint (train.CHECKPOINT_DIR)
# and its partner from the swap of two checkpoints
SCRATCH = ("checkpoint", "checkpoint.old", "checkpoint" + TMP_SUFFIX)


def is_temporary(name: str) -> bool:
    """A file or folder name that a writer uses only until it renames its work into place."""
    return name.endswith(TMP_SUFFIX) or _WRITER_TMP.fullmatch(name) is not None


def file_hashes(directory: str | Path) -> dict[str, str]:
    """{path relative to `directory`: file_hash} of every file a finished stage keeps (not its
    manifest, temporary files or scratch directories)."""
    d = Path(directory)
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if p.is_file() and rel.as_posix() != MANIFEST_FILE and not is_temporary(p.name) and rel.parts[0] not in SCRATCH:
            out[rel.as_posix()] = file_hash(p)
    return out


def verify_rows(path: str | Path, expected: str | None) -> list[dict]:
    """The rows of a JSONL file whose `content_hash` a manifest recorded (a dataset's
    `dataset_hash`); a file that no longer matches (rows removed, an answer edited) is refused."""
    path = Path(path)
    rows = read_jsonl(path)
    if expected is not None and content_hash(rows) != expected:
        raise ValueError(
            f"{path}: does not match the dataset_hash in its manifest.json ({len(rows)} rows; edited or "
            f"corrupted); delete {path.parent} and rerun to recompute it"
        )
    return rows


class Manifest(dict):
    """A manifest's content; reading a key it lacks raises a one-line ValueError naming the file."""

    def __init__(self, data: dict, path: Path, where: str = ""):
        super().__init__(data)
        self.path, self.where = Path(path), where

    def __missing__(self, key: str):
        raise ValueError(
            f"{self.path}: has no `{self.where}{key}` (incomplete, or written by another version); "
            f"delete {self.path.parent} and rerun to recompute it"
        )

    def __getitem__(self, key: str):
        v = super().__getitem__(key)
        return Manifest(v, self.path, f"{self.where}{key}.") if type(v) is dict else v


def safe_name(value: str, what: str = "") -> str:
    """`value` as one path component under an artifact root: no separators, no `..`, not hidden,
    not the stage cache's name; a one-line ValueError naming `what` otherwise."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", value or "") or ".." in value or value == "cache":
        raise ValueError(
            f"{what + ': ' if what else ''}{value!r} becomes a directory name; use letters, digits and "
            ". _ + - (no '/', no '..', not starting with '.', not 'cache')"
        )
    return value


def _disk_full(e: BaseException) -> bool:
    """ENOSPC or a quota, as an OSError or as safetensors' own error carrying the message."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)


# ----------------------------------------------------------------------------- stages


@dataclass
class Stage:
    """One cached step of a pipeline: `root/<name>-<key>/` with a manifest written last."""

    root: Path
    name: str
    inputs: dict
    key: str = field(init=False)
    started: float = field(init=False, default_factory=time.time)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.key = content_hash(self.inputs)

    @property
    def dir(self) -> Path:
        return self.root / f"{self.name}-{self.key}"

    @property
    def done(self) -> bool:
        """`finish` wrote the manifest. A manifest the stage's own function wrote, with a kill
        before `finish` ran, does not count: the stage is redone (to the same bytes)."""
        path = self.dir / MANIFEST_FILE
        return path.exists() and "stage" in read_json(path)

    def path(self, filename: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / filename

    def finish(self, **extra: Any) -> dict:
        """Write config.json and manifest.json (last: it marks the stage complete). A manifest the
        stage's own function already wrote (its lineage) is kept and extended."""
        write_json(self.path(CONFIG_FILE), self.inputs)
        own = self.dir / MANIFEST_FILE
        manifest = {
            **(read_json(own) if own.exists() else {}),
            "stage": self.name,
            "key": self.key,
            "inputs_hash": self.key,
            **provenance(),
            "wall_time_s": round(time.time() - self.started, 3),
            **extra,
            "files": file_hashes(self.dir),  # what `verify` checks before the stage is reused
        }
        manifest.pop("checksum", None)  # a stage function's own manifest, finished again
        manifest["checksum"] = content_hash(manifest)  # the manifest's own integrity
        write_json(self.path(MANIFEST_FILE), manifest)
        return manifest

    def manifest(self) -> dict:
        """The manifest; a key it lacks is a one-line ValueError naming the file, not a KeyError."""
        path = self.dir / MANIFEST_FILE
        return Manifest(read_json(path), path)

    def verify(self) -> None:
        """Refuse a finished stage whose files do not match the hashes its manifest recorded
        (edited, truncated, bit-flipped or deleted): one line naming the file. Stages finished
        before the hashes were recorded have none to check."""
        man = self.manifest()
        if "checksum" in man and content_hash({k: v for k, v in man.items() if k != "checksum"}) != man["checksum"]:
            raise ValueError(
                f"{self.dir / MANIFEST_FILE}: does not match its checksum (edited or corrupted); "
                f"delete {self.dir} and rerun to recompute it"
            )
        for rel, h in man.get("files", {}).items():
            p = self.dir / rel
            if not p.is_file() or file_hash(p) != h:
                what = (
                    "is missing" if not p.is_file() else "does not match the hash recorded in its stage's manifest.json"
                )
                raise ValueError(f"{p}: {what} (edited or corrupted); delete {self.dir} and rerun to recompute it")

    def clean(self) -> None:
        """Remove what an interrupted writer left in the stage: temporary files always, and the
        scratch directories (a student's checkpoint) once the stage is finished. Call it holding
        `lock()`: an unfinished stage's checkpoint is where training resumes."""
        if not self.dir.is_dir():
            return
        done = self.done
        for p in sorted(self.dir.rglob("*")):  # temporaries inside kept subdirectories (snapshots/) too
            top = p.parent == self.dir
            if p.exists() and (is_temporary(p.name) or (top and done and p.name in SCRATCH)):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    @contextlib.contextmanager
    def computing(self, label: str) -> Iterator[None]:
        """Around a stage's computation: a full disk becomes one line naming the stage, and the
        temporary files it left are removed (the stage has no manifest, so it is redone)."""
        try:
            yield
        except Exception as e:
            if not _disk_full(e):
                raise
            self.clean()
            written = sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file()) if self.dir.is_dir() else 0
            free = shutil.disk_usage(self.root).free
            need = ""
            if isinstance(e, DiskFull):  # our own writers know the file and its size
                f = e.path.relative_to(self.dir) if e.path.is_relative_to(self.dir) else e.path
                need = (
                    f"{f} needed {e.needed} bytes with {e.free} free; "
                    if e.needed is not None
                    else f"{f} did not fit in {e.free} bytes; "
                )
            raise ValueError(
                f"{label}: no space left on the device of {self.root} ({need}{free} bytes free after removing "
                f"the stage's temporary files, {written} bytes of stage {self.dir.name} kept); free space "
                "(e.g. `make clean-cache`) and rerun"
            ) from None

    def lock(self):
        """An inter-process lock on this stage: concurrent jobs of a sweep that need the same stage
        compute it once (the second waits, then finds it done)."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f".{self.name}-{self.key}.lock"))

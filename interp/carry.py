"""Carry a stage cache to another machine: the finished stages small enough to commit or copy.

    from interp.carry import pack, unpack
    pack("artifacts", "carry/e5-gemma")        # datasets, evaluations, vectors, students kept as "none"
    unpack("carry/e5-gemma", "artifacts")      # on the next machine; then rerun the sweep: it resumes

A sweep on a machine that does not outlive the session (a cloud notebook, a lent machine) loses
its cache with the machine. Its stages are content-keyed, so the finished ones can travel: most
are small (a dataset of 80 rows is ~70 kB, an evaluation ~20 kB, a student trained with
`train.keep = "none"` only its manifest and training log), while a student's weights (hundreds of
MB) stay behind and are retrained if a later stage needs them. `pack` copies every finished stage
whose files are all under a size limit into `OUT/cache/`, with nothing else (no scratch, no
temporary files); `unpack` checks every stage of a pack first (its directory name is its config's
content hash, its manifest's checksum holds, every file matches the hash the manifest recorded)
and copies none if one fails, then copies each stage the root lacks, atomically. Both skip what
is already there and report what they did. `unpack` also names the stages it copied that another
CPU computed (their manifest's `cpu` differs from this machine's, or records none): they are used
as they are, but recomputed here they would give other bytes (see `interp.runs.cpu_identity`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from interp.runs import CONFIG_FILE, MANIFEST_FILE, TMP_SUFFIX, Stage, cpu_identity, read_json

CACHE_DIR = "cache"
DEFAULT_MAX_FILE_BYTES = 5_000_000  # a dataset or evaluation is far below; a student's weights far above


@dataclass
class CarryReport:
    """What `pack` or `unpack` did: stage directory names copied, already present, and left behind
    (with why: too large, unfinished); for `unpack`, the copied stages another CPU computed."""

    copied: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)
    bytes_copied: int = 0
    other_cpu: list[str] = field(default_factory=list)


def _same_cpu(recorded: dict | None, here: dict) -> bool:
    # the model and the features that choose the matmul kernels; the core count only sets threads
    return bool(recorded) and all(recorded.get(k) == here[k] for k in ("model", "features", "torch_capability"))


def _stages(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")) if cache.is_dir() else []


def check_stage(d: Path) -> Stage:
    """The finished stage in directory `d`, checked: its name is `<stage>-<content hash of its
    config.json>`, and `Stage.verify` holds (manifest checksum, every recorded file's hash).
    A ValueError naming the file otherwise."""
    man_path, cfg_path = d / MANIFEST_FILE, d / CONFIG_FILE
    if not man_path.is_file() or not cfg_path.is_file():
        missing = man_path if not man_path.is_file() else cfg_path
        raise ValueError(f"{missing}: missing, so {d.name} is not a finished stage; pack it again from a finished run")
    man = read_json(man_path)
    if not isinstance(man, dict) or "stage" not in man:
        raise ValueError(f"{man_path}: not a finished stage's manifest (no 'stage'); pack it again from a finished run")
    st = Stage(d.parent, man["stage"], read_json(cfg_path))
    if st.dir.name != d.name:
        raise ValueError(
            f"{cfg_path}: hashes to {st.dir.name}, not its directory's name {d.name} (edited?); "
            "pack it again from a finished run"
        )
    st.verify()
    return st


def _files(st: Stage) -> list[Path]:
    """What a finished stage consists of: its manifest and the files the manifest recorded."""
    return [st.dir / MANIFEST_FILE, *(st.dir / rel for rel in st.manifest().get("files", {}))]


def _copy_stage(st: Stage, dest_cache: Path) -> int:
    """Copy a finished stage's files into `dest_cache/<its dir name>`, whole or not at all: into a
    temporary directory, renamed at the end; the manifest (which marks it finished) is copied last."""
    dest_cache.mkdir(parents=True, exist_ok=True)
    final, tmp = dest_cache / st.dir.name, dest_cache / (st.dir.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    files = _files(st)
    n = 0
    for src in [*files[1:], files[0]]:
        rel = src.relative_to(st.dir)
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tmp / rel)
        n += src.stat().st_size
    if final.exists():  # an unfinished leftover of the same stage: the finished copy replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    return n


def _done(d: Path) -> bool:
    p = d / MANIFEST_FILE
    return p.is_file() and "stage" in read_json(p)


def pack(root: str | Path, out: str | Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> CarryReport:
    """Copy every finished stage of `root/cache` whose files are each at most `max_file_bytes` into
    `out/cache/` (stages already there are skipped). Unfinished stages and larger ones are left,
    and listed with why."""
    cache = Path(root) / CACHE_DIR
    if not cache.is_dir():
        raise ValueError(f"root: {cache} does not exist; pass the artifact root a run or sweep wrote (--root)")
    if max_file_bytes <= 0:
        raise ValueError(f"max_file_bytes: {max_file_bytes} must be positive")
    dest, rep = Path(out) / CACHE_DIR, CarryReport()
    for d in _stages(cache):
        if d.name.endswith(TMP_SUFFIX) or not _done(d):
            rep.left[d.name] = "unfinished"
            continue
        st = check_stage(d)
        big = max(p.stat().st_size for p in _files(st))
        if big > max_file_bytes:
            rep.left[d.name] = f"a file of {big} bytes (limit {max_file_bytes})"
        elif _done(dest / d.name):
            rep.present.append(d.name)
        else:
            rep.bytes_copied += _copy_stage(st, dest)
            rep.copied.append(d.name)
    return rep


def unpack(src: str | Path, root: str | Path) -> CarryReport:
    """Copy the stages of a pack (`src/cache/`) that `root/cache` lacks. Every stage of the pack is
    checked first; one that fails is refused in one line naming its file, and nothing is copied."""
    cache = Path(src) / CACHE_DIR
    if not cache.is_dir():
        raise ValueError(f"src: {cache} does not exist; pass a directory `interp pack` wrote")
    stages = [check_stage(d) for d in _stages(cache) if not d.name.endswith(TMP_SUFFIX)]
    dest, rep, here = Path(root) / CACHE_DIR, CarryReport(), cpu_identity()
    for st in stages:
        if _done(dest / st.dir.name):
            rep.present.append(st.dir.name)
        else:
            rep.bytes_copied += _copy_stage(st, dest)
            rep.copied.append(st.dir.name)
            if not _same_cpu(st.manifest().get("cpu"), here):
                rep.other_cpu.append(st.dir.name)
    return rep

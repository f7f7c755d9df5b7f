"""Mixed datasets (a mitigation): a trait teacher's data diluted with data from teachers
of other traits, in equal shares, with the total number of rows unchanged, so that transfer from
the mix compares with transfer from the unmixed data at the same amount of training.

Every source answered the same number prompts (one completion per prompt id), so the mix takes
each prompt id from at most one source: no prompt appears twice, and the prompt distribution is
the unmixed one's. With grammar-constrained decoding every prompt has a row in every source and
the shares are exact; where the filter dropped rows, the ids are dealt to the sources that have
them, and `manifest.json` records the shares obtained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from interp.runs import (
    MANIFEST_FILE,
    content_hash,
    load_tensors,
    provenance,
    read_jsonl,
    save_tensors,
    tensor_hash,
    write_json,
    write_jsonl,
)
from interp.teachers import DATASET_FILE, TEACHER_LOGPROBS_FILE


def mix_shares(n_rows: int, n_sources: int) -> list[int]:
    """Equal shares of `n_rows` over the sources; the first ones (the trait first) take the remainder."""
    if n_sources < 1 or n_rows < 0:
        raise ValueError(f"mix: {n_rows} rows over {n_sources} sources; pass at least one source")
    return [n_rows // n_sources + (1 if j < n_rows % n_sources else 0) for j in range(n_sources)]


def mix_rows(sources: Mapping[str, Sequence[dict]], n_rows: int | None = None) -> list[dict]:
    """`n_rows` rows (default: as many as the first source has) drawn from `sources` in equal
    shares, each prompt id from one source only, in prompt-id order; each row gains 'source'
    (its source's name) and 'source_index' (its index in that source's rows)."""
    names = list(sources)
    n_rows = len(sources[names[0]]) if n_rows is None else n_rows
    want = mix_shares(n_rows, len(names))
    by_id = [{r.get("id", i): i for i, r in enumerate(sources[n])} for n in names]
    taken = [0] * len(names)
    out = []
    for pid in sorted(set().union(*by_id)):
        # the source furthest behind its share that answered this prompt
        open_ = [j for j in range(len(names)) if pid in by_id[j] and taken[j] < want[j]]
        if not open_:
            continue
        j = min(open_, key=lambda j: (taken[j] / want[j], j))
        i = by_id[j][pid]
        out.append({**sources[names[j]][i], "source": names[j], "source_index": i})
        taken[j] += 1
        if sum(taken) == n_rows:
            break
    return out


def _mixed_targets(dirs: Mapping[str, Path], rows: list[dict]) -> dict[str, torch.Tensor]:
    """The `kd` targets (teacher_logprobs.safetensors) of the mixed rows, from their sources'."""
    packs = {n: load_tensors(Path(d) / TEACHER_LOGPROBS_FILE) for n, d in dirs.items()}
    ids = [p["token_ids"] for p in packs.values()]
    if any(not torch.equal(t, ids[0]) for t in ids):
        raise ValueError(
            "mix: the sources' teacher_logprobs use different grammar tokens; mix datasets of one tokenizer"
        )
    parts = []
    for r in rows:
        p = packs[r["source"]]
        parts.append(p["logprobs"][p["offsets"][r["source_index"]] : p["offsets"][r["source_index"] + 1]])
    lengths = torch.tensor([len(x) for x in parts], dtype=torch.long)
    return {
        "logprobs": torch.cat(parts) if parts else torch.zeros(0, len(ids[0])),
        "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
        "token_ids": ids[0],
    }


def mix_datasets(
    sources: Mapping[str, str | Path],
    out_dir: str | Path,
    n_rows: int | None = None,
    teacher_logprobs: bool = False,
    extra_manifest: dict | None = None,
) -> dict:
    """Write the mix of dataset directories `sources` ({name: dir}, the trait's first) to
    `out_dir`: `dataset.jsonl`, `manifest.json` and, with `teacher_logprobs`, the sources'
    `kd` targets of the chosen rows. Returns the manifest."""
    if not sources:
        raise ValueError("mix: no sources; pass {name: dataset directory}")
    missing = [str(d) for d in sources.values() if not (Path(d) / DATASET_FILE).exists()]
    if missing:
        raise FileNotFoundError(f"mix: no {DATASET_FILE} in {missing}; pass dataset directories from generate_dataset")
    out = Path(out_dir)
    source_rows = {n: read_jsonl(Path(d) / DATASET_FILE) for n, d in sources.items()}
    rows = mix_rows(source_rows, n_rows)
    write_jsonl(out / DATASET_FILE, rows)
    targets_hash = None
    if teacher_logprobs:
        targets = _mixed_targets({n: Path(d) for n, d in sources.items()}, rows)
        save_tensors(out / TEACHER_LOGPROBS_FILE, targets)
        targets_hash = tensor_hash(targets["logprobs"])
    wanted = mix_shares(len(source_rows[next(iter(sources))]) if n_rows is None else n_rows, len(sources))
    manifest = {
        "sources": {n: {"dir": str(d), "n_rows": len(source_rows[n])} for n, d in sources.items()},
        "shares_wanted": dict(zip(sources, wanted)),
        "shares": {n: sum(r["source"] == n for r in rows) for n in sources},
        "n_kept": len(rows),
        "dataset_hash": content_hash(rows),
        "teacher_logprobs_hash": targets_hash,
        **provenance(),
        **(extra_manifest or {}),
    }
    write_json(out / MANIFEST_FILE, manifest)
    return manifest

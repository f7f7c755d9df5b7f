"""Score-quantile datasets: the rows of a dataset in one bin of a row audit's scores
(`interp.row_audit`), as a dataset directory a student can train on.

The rows are ordered by their LLR (ties by row index) and cut into `bins` bins of equal size
k = n // bins: `bottom` is the lowest k, `top` the highest k, `middle` the k around the median,
`q<i>` bin i (0 = bottom); the n mod bins rows left over fall between the middle bin and its
neighbours, so the bins never overlap and, when bins divides n, partition the rows. `random` is k
rows drawn without regard to score (seeded): the null with equally many rows. Students trained on
each then ask whether transfer rises with the score.

`select_dataset` writes `dataset.jsonl` (the chosen rows in dataset order, each with
`parent_index`), the kd targets of those rows when the parent has them, and `manifest.json`: the
generating teacher and base (copied), the lineage (`parent`: the dataset's directory, hash and
stage key; `selection`: the score file's key and hashes, the bin and its score range) and the new
rows' `dataset_hash`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from interp.datasets import TEACHER_LOGPROBS_FILE, read_rows
from interp.row_audit import load_scores, score_dataset
from interp.runs import (
    MANIFEST_FILE,
    Stage,
    content_hash,
    load_tensors,
    provenance,
    read_json,
    save_tensors,
    stage_dirs,
    tensor_hash,
    write_json,
    write_jsonl,
)
from interp.teachers import DATASET_FILE, VECTOR_KINDS

NAMED = ("top", "middle", "bottom", "random")
COPIED = ("teacher", "model", "vector_hash", "trait_vector_hash", "prompt_template_version", "sampling")


def _bin(which: str, bins: int) -> int | None:
    """The bin `which` names (None: random), refused in one line when it names none."""
    named = {"bottom": 0, "middle": bins // 2, "top": bins - 1, "random": None}
    if which in named:
        return named[which]
    if which.startswith("q") and which[1:].isdigit() and int(which[1:]) < bins:
        return int(which[1:])
    raise ValueError(f"quantile: {which!r} is not one of {NAMED} or q0..q{bins - 1}")


def quantile_indices(scores: Tensor, which: str, bins: int = 5, seed: int = 0) -> list[int]:
    """The row indices (ascending) of bin `which` of `scores` (see the module doc)."""
    n = len(scores)
    if bins < 2:
        raise ValueError(f"bins: {bins} must be >= 2")
    b = _bin(which, bins)
    k = n // bins
    if k < 1:
        raise ValueError(f"bins: {n} rows cannot fill {bins} bins; use fewer bins or a larger dataset")
    if b is None:
        return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].tolist())
    vals = scores.tolist()
    order = sorted(range(n), key=lambda i: (vals[i], i))
    r, m = n - k * bins, bins // 2
    start = b * k + (r if b > m else r // 2 if b == m else 0)
    return sorted(order[start : start + k])


def _subset_targets(parent: Path, idx: list[int]) -> dict[str, Tensor]:
    p = load_tensors(parent / TEACHER_LOGPROBS_FILE)
    parts = [p["logprobs"][p["offsets"][i] : p["offsets"][i + 1]] for i in idx]
    lengths = torch.tensor([len(x) for x in parts], dtype=torch.long)
    return {
        "logprobs": torch.cat(parts),
        "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
        "token_ids": p["token_ids"],
    }


def select_dataset(
    dataset_dir: str | Path,
    score_dir: str | Path | None,
    out_dir: str | Path,
    which: str,
    bins: int = 5,
    seed: int = 0,
    extra_manifest: dict | None = None,
) -> dict:
    """Write bin `which` of `dataset_dir`'s rows, by the row audit in `score_dir` (refused unless it
    scored exactly these rows; None only for `random`, which reads no score), to `out_dir`;
    returns the manifest."""
    parent, out = Path(dataset_dir), Path(out_dir)
    if score_dir is None and which != "random":
        raise ValueError(
            f"scores: the {which!r} bin ranks rows by score; pass a row audit of {parent} (`interp row-audit`)"
        )
    scores = load_scores(score_dir, parent) if score_dir is not None else None
    rows = read_rows(parent)
    llr = scores["llr"] if scores is not None else torch.zeros(len(rows), dtype=torch.float64)
    idx = quantile_indices(llr, which, bins, seed)
    chosen = [{**rows[i], "parent_index": i} for i in idx]
    write_jsonl(out / DATASET_FILE, chosen)
    targets_hash = None
    if (parent / TEACHER_LOGPROBS_FILE).exists():  # kd students need the chosen rows' targets too
        targets = _subset_targets(parent, idx)
        save_tensors(out / TEACHER_LOGPROBS_FILE, targets)
        targets_hash = tensor_hash(targets["logprobs"])
    pman = read_json(parent / MANIFEST_FILE) if (parent / MANIFEST_FILE).exists() else {}
    sel = {"quantile": which, "bins": bins, "seed": seed, "score_dir": None, "score_key": None}
    if scores is not None:
        sm, x = scores["manifest"], llr[idx]
        sel.update(
            score_dir=str(score_dir),
            score_key=sm["key"],
            scores_hash=sm["scores_hash"]["llr"],
            score_teacher=sm["inputs"]["teacher"],
            score_vector=sm["inputs"]["vector"],
            llr_min=float(x.min()),
            llr_max=float(x.max()),
            llr_mean=float(x.mean()),
            parent_llr_mean=float(llr.mean()),
        )
    manifest = {
        **{k: pman[k] for k in COPIED if k in pman},
        "parent": {
            "dir": str(parent),
            "dataset_hash": pman.get("dataset_hash", content_hash(rows)),
            "n_rows": len(rows),
            "stage_key": pman.get("key", pman.get("stage_key")),
        },
        "selection": sel,
        "n_kept": len(chosen),
        "dataset_hash": content_hash(chosen),
        "teacher_logprobs_hash": targets_hash,
        **provenance(),
        **(extra_manifest or {}),
    }
    write_json(out / MANIFEST_FILE, manifest)
    return manifest


# ----------------------------------------------------------------------------- as E1 stages


def score_stage(cache: Path, base, teacher, vector, dstage: Stage, max_len: int) -> Stage:
    """The cached row audit of a dataset stage under its own teacher, read as its students read it."""
    return Stage(
        cache,
        "rowscore",
        {
            "model": base.fingerprint(),
            "teacher": teacher.describe(),
            "vector": vector.hash() if teacher.kind in VECTOR_KINDS else None,
            "dataset": dstage.manifest()["dataset_hash"],
            "vocab": "grammar",
            "max_len": max_len,
        },
    )


def select_stage(cache: Path, dstage: Stage, scores: Stage | None, which: str, bins: int, seed: int) -> Stage:
    """The cached bin of a dataset stage (`scores` None: the random bin, which reads no score)."""
    return Stage(
        cache,
        "select",
        {
            "dataset": dstage.key,
            "scores": scores.key if scores is not None else None,
            "quantile": which,
            "bins": bins,
            "seed": seed,
        },
    )


def selected_data(runner, cfg, kind: str, seed: int, base, vector, dstage: Stage, kd: bool = False) -> Stage:
    """E1's `data.select`: the stage `kind`'s students learn from, a bin of its dataset stage. Trait
    kinds take the configured bin of their rows ranked by their own teacher's LLR; control takes a
    random bin (its teacher is the base: every score would be 0), so every arm has as many rows."""
    from interp.datasets import verify_dataset

    which, bins, label = (
        (cfg.data.select if kind != "control" else "random"),
        cfg.data.select_bins,
        f"{kind}/seed{seed}",
    )
    scores = None
    if which != "random":
        teacher = cfg.teacher_for(kind, seed)
        scores = runner.run(
            f"rowscore/{label}",
            score_stage(runner.cache, base, teacher, vector, dstage, cfg.train.max_len),
            lambda st: (
                score_dataset(
                    st.dir,
                    base,
                    teacher,
                    dstage.dir,
                    vector,
                    vocab="grammar",
                    batch_size=cfg.data.batch_size,
                    max_len=cfg.train.max_len,
                ),
                st.finish(),
            ),
        )
    st = runner.run(
        f"select/{label}",
        select_stage(runner.cache, dstage, scores, which, bins, seed),
        lambda st: _finish_select(st, dstage, scores, which, bins, seed),
    )
    verify_dataset(st, kd)
    return st


def _finish_select(st: Stage, dstage: Stage, scores: Stage | None, which: str, bins: int, seed: int) -> None:
    man = select_dataset(
        dstage.dir,
        scores.dir if scores is not None else None,
        st.dir,
        which,
        bins,
        seed,
        extra_manifest={"stage_key": st.key},
    )
    st.finish(**{k: man[k] for k in ("dataset_hash", "n_kept", "teacher_logprobs_hash")})


def bin_profile(select_dir: str | Path, score_dir: str | Path) -> dict:
    """What a bin's rows are, beside what students learn from them: their mean LLR under the row
    audit in `score_dir` (of the bin's parent dataset, checked; a random bin has no scores of its
    own), and their length in numbers and characters (a row's LLR is a sum over its tokens, so a
    high-score bin may just be a long-row bin)."""
    sel = Path(select_dir)
    man = read_json(sel / MANIFEST_FILE)
    parent = Path(man["parent"]["dir"])
    if not parent.exists():  # the root moved: the parent is the select stage's sibling of that name
        parent = sel.parent / parent.name
    llr = load_scores(score_dir, parent)["llr"]
    rows = read_rows(sel)
    x = llr[[r["parent_index"] for r in rows]]
    return {
        "quantile": man["selection"]["quantile"],
        "rows": len(rows),
        "llr_mean": float(x.mean()),
        "llr_min": float(x.min()),
        "llr_max": float(x.max()),
        "parent_llr_mean": float(llr.mean()),
        "numbers_per_row": sum(len(r["numbers"]) for r in rows) / len(rows),
        "chars_per_row": sum(len(r["completion"]) for r in rows) / len(rows),
    }


def bin_profiles(run_dirs: list[str | Path], kind: str = "steered") -> dict[str, dict[str, dict]]:
    """{quantile: {seed: bin_profile}} of every bin `kind`'s students learned from in E1 runs (a
    sweep's are its `jobs/*`; their manifests name the stages), each scored by the rowscore stage of
    its own dataset (a random bin's run computes none: another run's of the same rows serves)."""
    stages = [item for run in run_dirs for item in stage_dirs(run).items()]
    scores = {
        read_json(d / MANIFEST_FILE)["inputs"]["dataset"]: d for n, d in stages if n.startswith(f"rowscore/{kind}/")
    }
    out: dict[str, dict[str, dict]] = {}
    for name, d in stages:
        if name.startswith(f"select/{kind}/"):
            h = read_json(d / MANIFEST_FILE)["parent"]["dataset_hash"]
            if h not in scores:
                raise ValueError(f"{d}: no rowscore stage of its dataset {h} in these runs; add a run of a scored bin")
            prof = bin_profile(d, scores[h])
            out.setdefault(prof["quantile"], {})[name.rsplit("seed", 1)[1]] = prof
    return out

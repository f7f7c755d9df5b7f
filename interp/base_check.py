"""Broken-base check (E5, issue 22): does a noised base still read number data as a model does?

Weight noise large enough breaks the model: its students then learn from, or start from, a base
that no longer predicts the numbers at all, and their transfer measures the damage, not the trait.
The check reads the clean control teacher's dataset of a seed teacher-forced as a student reads it
(`interp.rows.build_examples`: the user turn, the completion and its end-of-turn token), over the
full vocabulary (the student's SFT loss is over the full vocabulary, so mass a broken base puts off
the digits counts), and compares the mean NLL per completion token of the noised base with the
clean base's on the same rows. `base_nll` caches each as a small JSON stage keyed by the clean
model's fingerprint, the noise (None: the clean base) and the rows' content hash, so a sweep
computes each base once whichever cells share it.
"""

from __future__ import annotations

from pathlib import Path

from interp.models import LoadedModel
from interp.noise import WeightNoise, noised_model
from interp.runs import Stage, read_json, write_json

NLL_FILE = "nll.json"
NLL_VOCAB = "full"

# A noised base is broken when its NLL per completion token exceeds the clean base's on the same rows
# by more than this many nats. Fixed before any E5 data were read, from the earlier measurement on
# SmolLM2-135M (README, noise_ablation.toml): sigma 0.1 gave 3.37 vs 3.29 clean (+0.08, a working
# model), sigma 0.3 gave 11.0 (+7.7, broken). +1 nat/token (each token e times less likely, a
# number of 6-8 tokens some 1000 times) sits an order of magnitude from both.
BROKEN_NLL_MARGIN = 1.0
BROKEN_RULE = (
    f"noised base broken when its mean NLL per completion token on the clean control teacher's rows "
    f"exceeds the clean base's by more than {BROKEN_NLL_MARGIN:g} nat"
)


def completion_nll(
    model: LoadedModel, rows: list[dict], max_len: int = 192, system_prompt: str = "default", batch_size: int = 8
) -> dict:
    """Mean NLL per completion token (end-of-turn included) of `rows` under `model`, read as a
    student reads them; also the token and row counts."""
    from interp.analysis.likelihood import completion_logliks
    from interp.rows import build_examples

    if not rows:
        raise ValueError("rows: the dataset has no rows to read")
    examples = build_examples(model, rows, max_len, system_prompt=system_prompt)
    ll = completion_logliks(model, examples, vocab=NLL_VOCAB, batch_size=batch_size)
    n = sum(len(e.completion_ids) for e in examples)
    return {"nll_per_token": -float(ll.sum()) / n, "n_tokens": n, "n_rows": len(rows)}


def nll_stage(
    cache: Path,
    root_model: LoadedModel,
    noise: WeightNoise | None,
    dataset_hash: str,
    max_len: int = 192,
    system_prompt: str = "default",
) -> Stage:
    """The cached NLL of `root_model` (noised by `noise`, None: as it is) on one dataset's rows."""
    return Stage(
        cache,
        "basenll",
        {
            "model": root_model.fingerprint(),
            "noise": noise.key() if noise else None,
            "dataset": dataset_hash,
            "vocab": NLL_VOCAB,
            "max_len": max_len,
            "system_prompt": system_prompt,
        },
    )


def base_nll(
    runner,
    root_model: LoadedModel,
    noise: WeightNoise | None,
    data_dir: str | Path,
    name: str,
    max_len: int = 192,
    system_prompt: str = "default",
    batch_size: int = 8,
) -> dict:
    """`completion_nll` of the base `root_model` + `noise` on the dataset in `data_dir`, through
    `runner` (a `pipeline.StageRunner`: computed once under the stage's lock, reused after)."""
    from interp.datasets import read_verified_rows

    rows, dataset_hash = read_verified_rows(data_dir)
    st = nll_stage(runner.cache, root_model, noise, dataset_hash, max_len, system_prompt)

    def make(st: Stage) -> None:
        m = root_model if noise is None else noised_model(root_model, noise)
        res = completion_nll(m, rows, max_len, system_prompt, batch_size)
        write_json(st.path(NLL_FILE), {**res, "model": m.name, "dataset_dir": str(data_dir), "vocab": NLL_VOCAB})
        st.finish(dataset_dir=str(data_dir), dataset_hash=dataset_hash)

    runner.run(name, st, make)
    return {**read_json(st.dir / NLL_FILE), "stage": str(st.dir)}


def is_broken(nll: float, clean_nll: float, margin: float | None = None) -> bool:
    """`BROKEN_RULE`: the noised NLL above the clean one by more than `margin` nats per token."""
    return nll - clean_nll > (BROKEN_NLL_MARGIN if margin is None else margin)

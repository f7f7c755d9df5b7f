"""The CPU-engine comparison of `bench_generate.py --llama-cpp DIR`: llama.cpp's own batched
benchmark on the same model, batch, prompt width and number of new tokens.

DIR is a llama.cpp source tree built with its tools (`cmake -B build -DGGML_NATIVE=ON
-DLLAMA_CURL=OFF && cmake --build build --target llama-batched-bench`); the sdist of
llama-cpp-python carries one under `vendor/llama.cpp`. The interp model is written out with
`save_pretrained` and converted with the tree's `convert_hf_to_gguf.py` at f32 and bf16, so
llama.cpp runs the very weights interp samples from (not the packaged 4-bit GGUF).

`llama-batched-bench` decodes without sampling, grammar or steering, so its time is a lower bound
on what llama.cpp would take for interp's job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

GGUF_TYPES = {"fp32": "f32", "bf16": "bf16"}


def convert(model, tree: Path, dtype_name: str, out_dir: Path) -> Path:
    """`model` (a LoadedModel) as a GGUF file at `dtype_name`, converted once into `out_dir`."""
    out = out_dir / f"{model.name}-{model.fingerprint()}-{GGUF_TYPES[dtype_name]}.gguf"
    if out.exists():
        return out
    hf_dir = out_dir / f"{model.name}-{model.fingerprint()}-hf"
    if not (hf_dir / "config.json").exists():
        model.hf.config.architectures = model.hf.config.architectures or [type(model.hf).__name__]
        model.hf.save_pretrained(str(hf_dir))  # writes the tied embedding under its own name
        model.tokenizer.save_pretrained(str(hf_dir))
    env = {**os.environ, "PYTHONPATH": str(tree / "gguf-py")}
    tmp = out.with_suffix(".tmp")
    res = subprocess.run(
        [
            sys.executable,
            str(tree / "convert_hf_to_gguf.py"),
            str(hf_dir),
            "--outtype",
            GGUF_TYPES[dtype_name],
            "--outfile",
            str(tmp),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {model.name}: {last}")
    tmp.rename(out)
    return out


def batched_bench(tree: Path, gguf: Path, batch: int, prompt_tokens: int, new_tokens: int) -> dict:
    """llama-batched-bench's row for `batch` sequences of `prompt_tokens` + `new_tokens`."""
    exe = next(
        (p for p in (tree / "build" / "bin" / "llama-batched-bench", tree / "llama-batched-bench") if p.exists()), None
    )
    if exe is None:
        raise FileNotFoundError(
            f"--llama-cpp: no build/bin/llama-batched-bench under {tree}; build it first (benchmarks/_llamacpp.py)"
        )
    ctx = batch * (prompt_tokens + new_tokens) + 256
    cmd = [
        str(exe),
        "-m",
        str(gguf),
        "-c",
        str(ctx),
        "-b",
        str(batch * prompt_tokens),
        "-ub",
        "512",
        "-npp",
        str(prompt_tokens),
        "-ntg",
        str(new_tokens),
        "-npl",
        str(batch),
        "-t",
        str(torch.get_num_threads()),
        "--output-format",
        "jsonl",
    ]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    row = json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])
    return {
        "prefill_s": row["t_pp"],
        "decode_s": row["t_tg"],
        "wall_s": row["t"],
        "new_tok_s": batch * new_tokens / row["t"],
        "decode_step_ms": row["t_tg"] / new_tokens * 1e3,
    }


def compare(
    model,
    tree: str | Path,
    dtypes: list[str],
    batch: int,
    prompt_tokens: int,
    new_tokens: int,
    work_dir: str | Path | None = None,
) -> dict[str, dict]:
    """{dtype: llama.cpp timings, or {"error": why}} for each of `dtypes`."""
    tree = Path(tree)
    out_dir = Path(work_dir) if work_dir else Path(tempfile.gettempdir()) / "interp-llamacpp"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for d in dtypes:
        try:
            out[d] = batched_bench(tree, convert(model, tree, d, out_dir), batch, prompt_tokens, new_tokens)
        except (OSError, RuntimeError, subprocess.CalledProcessError, ValueError) as e:
            out[d] = {"error": str(e)}  # the rest of the benchmark's numbers still count
    return out

"""Student training throughput, as ratios measured in one process.

    .venv/bin/python benchmarks/bench_train.py                  # smollm2-135m, batch 8 x ~128 tokens
    .venv/bin/python benchmarks/bench_train.py --model tiny --seq-len 64 --steps 2 --repeats 2
    .venv/bin/python benchmarks/bench_train.py --device cuda --out train.json

Measures the machine's matmul rate (fp32, bf16), then the steady-state tokens/s of the step
`interp.train.train_student` takes (collate, forward, completion-only loss, backward, AdamW step,
finite-weights check, zero_grad; no checkpoints), built from the same pieces (`_prepare`,
`make_optimizer`, `build_examples`, `_epoch_batches`, `collate`, `completion_logits`), for:

- full fine-tuning in fp32 (what train_student runs) and in bf16 autocast (forward + loss under
  `torch.autocast`; a what-if: train_student has no autocast), and
- LoRA (train_student's `method = "lora"`) in the working dtype (the faster matmul).

Achieved FLOP/s: full = 6 x parameters x tokens / s; LoRA = 4 x parameters x tokens / s (forward
2N plus the input-gradient half of the backward 2N; LoRA skips the weight gradients of the frozen
matrices, so with this model LoRA can be at most 6/4 = 1.5x full fine-tuning in tokens/s unless the
full step is overhead-bound). Tokens are real (unpadded) tokens, as train_student counts them;
the padded figure is shown beside it. Peak resident memory is sampled (psutil) during the fp32
full fine-tune, which holds what train_student holds: the base, its trainable copy, gradients and
AdamW state.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import subprocess
import sys
import time

import torch

from interp.models import load_model
from interp.prompts import number_prompts
from interp.optim import make_optimizer
from interp.rows import build_examples, collate, completion_logits
from interp.train import TrainConfig, _prepare, trainable_state, weights_finite
from interp.trainer import _epoch_batches

from _common import (  # benchmarks/ is on sys.path when run as a script
    DTYPES,
    PeakRSS,
    Report,
    layer_gemm_gflops,
    faster_dtype,
    maxrss_bytes,
    machine_rates,
    pick_device,
    print_machine,
    reference_rate,
    parser,
    sync,
)


def number_rows(model, n: int, seq_len: int, seed: int = 0) -> list[dict]:
    """`n` rows of a number prompt (interp.prompts.number_prompts) and a synthetic completion of
    3-digit numbers, sized so prompt + completion (+ end of turn) is 85-100% of `seq_len` tokens."""
    tok = model.tokenizer
    rng = random.Random(seed)
    rows = []
    for p in number_prompts(n, seed=seed):
        n_prompt = len(tok(model.chat([{"role": "user", "content": p}]), add_special_tokens=False)["input_ids"])
        want = rng.randint(int(seq_len * 0.85), seq_len)
        nums = [str(rng.randrange(100, 1000))]
        while True:
            nxt = nums + [str(rng.randrange(100, 1000))]
            if n_prompt + len(tok(", ".join(nxt), add_special_tokens=False)["input_ids"]) + 1 > want:
                break
            nums = nxt
        rows.append({"prompt": p, "completion": ", ".join(nums)})
    return rows


def train_arm(
    model,
    examples,
    batches,
    cfg: TrainConfig,
    device,
    autocast: torch.dtype | None,
    warmup: int,
    steps: int,
    repeats: int,
) -> dict:
    """Best-of-`repeats` tokens/s over `steps` consecutive steps, after `warmup` steps."""
    hf = _prepare(model, cfg)
    params = list(trainable_state(hf).values())
    opt = make_optimizer(cfg, params)
    pad = model.tokenizer.pad_token_id
    phase = {"collate": 0.0, "forward+loss": 0.0, "backward": 0.0, "optimizer": 0.0, "finite check": 0.0}
    cast = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast is not None else contextlib.nullcontext
    counter = iter(range(10**9))

    def step() -> tuple[int, int, int]:
        mb = batches[next(counter) % len(batches)]
        t0 = time.perf_counter()
        batch, labels = collate([examples[i] for i in mb], pad)
        batch, labels = batch.to(device), labels.to(device)
        where = labels != -100
        n_targets = sum(len(examples[i].completion_ids) for i in mb)
        t1 = time.perf_counter()
        with cast():
            logits = completion_logits(hf, batch, where)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[where], reduction="sum") / n_targets
        sync(device)
        t2 = time.perf_counter()
        loss.backward()
        loss.item()
        t3 = time.perf_counter()
        opt.step()
        sync(device)
        t4 = time.perf_counter()
        if not weights_finite(params):
            raise RuntimeError("weights became non-finite")
        opt.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        for k, dt in zip(phase, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            phase[k] += dt
        return int(batch.attention_mask.sum()), batch.input_ids.numel(), int(where.sum())

    for _ in range(warmup):
        step()
    best = None
    for _ in range(repeats):
        for k in phase:
            phase[k] = 0.0
        sync(device)
        t = time.perf_counter()
        counts = [step() for _ in range(steps)]
        wall = time.perf_counter() - t
        real, padded, targets = (sum(c[i] for c in counts) for i in range(3))
        if best is None or real / wall > best["tokens_per_s"]:
            best = {
                "tokens_per_s": real / wall,
                "padded_tokens_per_s": padded / wall,
                "step_s": wall / steps,
                "real_tokens": real,
                "padded_tokens": padded,
                "loss_positions": targets,
                "phases_s_per_step": {k: v / steps for k, v in phase.items()},
            }
    best["n_params"] = sum(p.numel() for p in hf.parameters())
    best["n_trainable"] = sum(p.numel() for p in params)
    hf = opt = params = None  # frees the model copy and optimizer state (step() holds these cells)
    gc.collect()
    return best


def optimizer_step_s(model, cfg: TrainConfig, fused: bool, repeats: int = 3) -> float:
    """Seconds of one AdamW step over a full copy of the model's parameters (random gradients)."""
    params = [p.detach().clone().requires_grad_(True) for p in model.hf.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if fused else {"foreach": True})
    )
    opt.step()  # allocates the state
    device = params[0].device
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        opt.step()
        sync(device)
        best = min(best, time.perf_counter() - t)
    del opt, params
    gc.collect()
    return best


def finite_check_s(model, repeats: int = 3) -> dict[str, float]:
    """Seconds of the finite-weights check of every step over a copy of the model's parameters:
    `weights_finite` (one sum per tensor) against the inf-norm pass it replaced (the baseline)."""
    params = [p.detach().clone() for p in model.hf.parameters()]

    def inf_norm() -> bool:
        return bool(torch.isfinite(torch.nn.utils.get_total_norm(params, norm_type=float("inf"), foreach=True)))

    best = {}
    for name, check in (("inf_norm", inf_norm), ("sums", lambda: weights_finite(params))):
        best[name] = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            assert check()
            best[name] = min(best[name], time.perf_counter() - t)
    return best  # the copy is freed on return


def child_peak_rss(args, grad_checkpointing: bool) -> int:
    """Peak resident memory of a fresh process that loads the model and takes warmup + 2 full fp32
    steps: what a user's training process reaches, unpolluted by the other arms of this benchmark
    (freed memory stays in a process's RSS). Sampled with psutil: Linux carries ru_maxrss across
    exec, so a child's would start at this process's peak."""
    cmd = [
        sys.executable,
        __file__,
        "--model",
        args.model,
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--seq-len",
        str(args.seq_len),
        "--memory-child",
        "1" if grad_checkpointing else "0",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_bytes"]


def memory_child(args) -> None:
    with PeakRSS(interval=0.005) as mem:
        _memory_child_run(args)
    if not mem.source.startswith("psutil"):
        raise SystemExit("the memory rows need psutil (pip install psutil)")
    print(json.dumps({"peak_rss_bytes": mem.peak}))


def _memory_child_run(args) -> None:
    device = pick_device(args.device)
    model = load_model(args.model, device=device)
    rows = number_rows(model, args.batch * 2, args.seq_len)
    examples = build_examples(model, rows, args.seq_len)
    batches = _epoch_batches(examples, args.batch, torch.Generator().manual_seed(0))
    cfg = TrainConfig(
        method="full", batch_size=args.batch, max_len=args.seq_len, grad_checkpointing=args.memory_child == "1"
    )
    train_arm(model, examples, batches, cfg, device, None, warmup=1, steps=1, repeats=2)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step (experiments/configs/quick.toml: 8)")
    ap.add_argument("--seq-len", type=int, default=128, help="tokens per example, prompt + completion (max_len)")
    ap.add_argument("--n-batches", type=int, default=4, help="distinct batches cycled through")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows; the best is reported")
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--memory-child", choices=["0", "1"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        return memory_child(args)

    device = pick_device(args.device)
    rates = machine_rates(device)
    work = faster_dtype(rates)
    print_machine(
        rates,
        device,
        work,
        "full fine-tuning is also measured in fp32, train_student's arithmetic; bf16 = autocast around forward + loss",
    )
    model = load_model(args.model, device=device)
    rows = number_rows(model, args.batch * args.n_batches, args.seq_len)
    examples = build_examples(model, rows, args.seq_len)
    batches = _epoch_batches(examples, args.batch, torch.Generator().manual_seed(0))
    batches = [b for b in batches if len(b) == args.batch] or batches
    timing = dict(warmup=args.warmup, steps=args.steps, repeats=args.repeats)
    full_cfg = TrainConfig(method="full", batch_size=args.batch, max_len=args.seq_len)
    lora_cfg = TrainConfig(
        method="lora",
        batch_size=args.batch,
        max_len=args.seq_len,
        lora_rank=args.lora_rank,
        lora_alpha=2 * args.lora_rank,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRSS() as mem:
        full32 = train_arm(model, examples, batches, full_cfg, device, None, **timing)
    gpu_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    full16 = train_arm(model, examples, batches, full_cfg, device, torch.bfloat16, **timing)
    ckpt_cfg = TrainConfig(method="full", batch_size=args.batch, max_len=args.seq_len, grad_checkpointing=True)
    full_ckpt = train_arm(model, examples, batches, ckpt_cfg, device, None, **timing)
    child_rss = {"default": child_peak_rss(args, False), "grad_checkpointing": child_peak_rss(args, True)}
    full = {"fp32": full32, "bf16": full16}
    lora = train_arm(model, examples, batches, lora_cfg, device, None if work == "fp32" else torch.bfloat16, **timing)
    width = full32["padded_tokens"] // args.steps // args.batch
    shape_rate = {
        dt: layer_gemm_gflops(model, args.batch * width, DTYPES[dt], device) for dt in dict.fromkeys(("fp32", work))
    }
    adamw = {"foreach": optimizer_step_s(model, full_cfg, fused=False)}
    try:
        adamw["fused"] = optimizer_step_s(model, full_cfg, fused=True)
    except (RuntimeError, TypeError) as e:
        print(f"fused AdamW unavailable here: {e}")
    finite = finite_check_s(model)

    n = full32["n_params"]
    ref, ref_label = reference_rate(rates, work, device)
    full_flops = 6 * n * full[work]["tokens_per_s"] / 1e9
    lora_flops = 4 * lora["n_params"] * lora["tokens_per_s"] / 1e9
    full32_flops = 6 * n * full32["tokens_per_s"] / 1e9
    lora_ratio = lora["tokens_per_s"] / full[work]["tokens_per_s"]

    rep = Report("train", vars(args))
    rep.row(
        "model",
        f"{args.model}",
        f"{n / 1e6:.1f}M parameters; LoRA r={args.lora_rank}: {lora['n_trainable'] / 1e6:.2f}M trainable",
    )
    pad_frac = 1 - full32["real_tokens"] / full32["padded_tokens"]
    rep.row(
        "batch",
        f"{args.batch} x {full32['padded_tokens'] / args.steps / args.batch:.0f}",
        f"padded width; {pad_frac:.1%} padding, {full32['loss_positions'] / full32['real_tokens']:.0%} of tokens "
        "carry the loss (completion)",
    )
    rep.row("reference rate", f"{ref:.0f} GFLOP/s", ref_label)
    for name, r, mult in (
        ("full fp32", full32, 6),
        ("full fp32, grad checkpointing", full_ckpt, 6),
        ("full bf16 autocast", full16, 6),
        (f"LoRA {work}", lora, 4),
    ):
        gf = mult * r["n_params"] * r["tokens_per_s"] / 1e9
        dt = "bf16" if "bf16" in name else "fp32" if name.startswith("full") else work
        rep.row(
            f"{name} tokens/s",
            f"{r['tokens_per_s']:.0f}",
            f"{r['step_s']:.2f} s/step; {mult}N x tok/s = {gf:.1f} GFLOP/s = {gf / rates[dt]:.1%} of {dt} matmul"
            f" (padded tokens: {mult * r['n_params'] * r['padded_tokens_per_s'] / 1e9 / rates[dt]:.1%})",
        )
    e_in = model.hf.get_input_embeddings().weight
    e_out = model.hf.get_output_embeddings().weight
    body = n - e_in.numel() - (0 if e_out.data_ptr() == e_in.data_ptr() else e_out.numel())
    executed = 6 * body * full32["real_tokens"] + 6 * e_out.numel() * full32["loss_positions"]
    rep.row(
        "executed / credited FLOPs",
        f"{executed / (6 * n * full32['real_tokens']):.2f}",
        "the vocabulary projection runs only at loss positions and the embedding lookup is free; "
        "6N credits every token with both",
    )
    rep.row(
        "bf16 autocast / fp32 (full)",
        f"{full16['tokens_per_s'] / full32['tokens_per_s']:.2f}x",
        f"matmul bf16 / fp32: {rates['bf16'] / rates['fp32']:.2f}x",
    )
    rep.row("LoRA / full tokens/s", f"{lora_ratio:.2f}x", "FLOP-model ceiling 6N/4N = 1.50x")
    for dt, g in shape_rate.items():
        rep.row(
            f"matmul at the layer shapes ({dt})",
            f"{g:.0f} GFLOP/s",
            f"{g / rates[dt]:.0%} of the square {dt} rate (T = {args.batch} x {width} rows; fwd + both grads)",
        )
    full_opt = full32["phases_s_per_step"]["optimizer"]
    rep.row(
        "AdamW step, foreach (train_student)",
        f"{adamw['foreach'] * 1e3:.1f} ms",
        f"{adamw['foreach'] / full32['step_s']:.1%} of a full fp32 step (inside the timed step: {full_opt * 1e3:.1f} ms)",
    )
    rep.row(
        "finite-weights check (every step)",
        f"{finite['sums'] * 1e3:.1f} ms",
        f"x{finite['inf_norm'] / finite['sums']:.1f} faster than the inf-norm pass it replaced "
        f"({finite['inf_norm'] * 1e3:.0f} ms, {finite['inf_norm'] / full32['step_s']:.1%} of a full fp32 step)",
    )
    if "fused" in adamw:
        rep.row(
            "AdamW step, fused=True",
            f"{adamw['fused'] * 1e3:.1f} ms",
            f"x{adamw['foreach'] / adamw['fused']:.2f} vs foreach (same update up to float rounding)",
        )
    for name, r in (("full fp32", full32), ("full bf16 autocast", full16), (f"LoRA {work}", lora)):
        ph = r["phases_s_per_step"]
        tot = sum(ph.values())
        rep.row(f"{name} step breakdown", f"{tot:.2f} s", ", ".join(f"{k} {v / tot:.0%}" for k, v in ph.items()))
    rep.row(
        "peak RSS, full fp32",
        f"{mem.peak / 1e9:.2f} GB",
        f"{mem.source}; process ru_maxrss "
        f"{maxrss_bytes() / 1e9:.2f} GB" + (f"; GPU max allocated {gpu_peak / 1e9:.2f} GB" if gpu_peak else ""),
    )
    for name, b in child_rss.items():
        rep.row(
            f"peak RSS, fresh training process ({name.replace('_', ' ')})",
            f"{b / 1e9:.2f} GB",
            "a child process that loads the model and takes 3 full fp32 steps (psutil, every 5 ms)",
        )
    rep.row(
        "grad checkpointing / default (full fp32)",
        f"{full_ckpt['tokens_per_s'] / full32['tokens_per_s']:.2f}x",
        "tokens/s; the same weights to the bit (tests/test_train.py)",
    )
    rep.target(f"full FT FLOP/s ({work}) / reference rate", full_flops / ref, ">=", 0.80, "%")
    if work != "fp32":
        rep.target(
            "full FT FLOP/s (fp32, train_student) / reference",
            full32_flops / reference_rate(rates, "fp32", device)[0],
            ">=",
            0.80,
            "%",
        )
    rep.target(f"LoRA / full FT tokens/s ({work})", lora_ratio, ">=", 2.0)
    rep.target(f"peak RSS full FT, batch {args.batch} (fresh process)", child_rss["default"] / 1e9, "<=", 4.0, "GB")
    rep.target(
        f"peak RSS full FT, batch {args.batch}, grad checkpointing",
        child_rss["grad_checkpointing"] / 1e9,
        "<=",
        4.0,
        "GB",
    )
    rep.data = {
        "model": args.model,
        "device": str(device),
        "n_params": n,
        "matmul_gflops": rates,
        "works_in": work,
        "reference_gflops": ref,
        "reference": ref_label,
        "full": full,
        "lora": lora,
        "full_grad_checkpointing": full_ckpt,
        "child_peak_rss_bytes": child_rss,
        "full_achieved_gflops": full_flops,
        "lora_achieved_gflops": lora_flops,
        "lora_over_full": lora_ratio,
        "peak_rss_bytes": mem.peak,
        "peak_rss_source": mem.source,
        "ru_maxrss_bytes": maxrss_bytes(),
        "gpu_max_allocated_bytes": gpu_peak,
        "layer_gemm_gflops": shape_rate,
        "adamw_step_s": adamw,
        "finite_check_s": finite,
    }
    rep.print()
    rep.write(args.out)


if __name__ == "__main__":
    main()

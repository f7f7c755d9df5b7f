"""Teacher generation throughput, as ratios measured in one process.

    .venv/bin/python benchmarks/bench_generate.py                 # smollm2-135m, batch 32, 40 tokens
    .venv/bin/python benchmarks/bench_generate.py --model tiny    # seconds, for a smoke check
    .venv/bin/python benchmarks/bench_generate.py --llama-cpp ~/llama.cpp   # + llama.cpp's batched benchmark

Prints the machine's matrix-multiply rate (fp32 and bf16) and works in the faster (`--dtype`),
measuring fp32, the reference arithmetic, beside it. In each: tokens/s of interp's sampler
unsteered and steered (free and grammar-constrained), HF `generate` on the same prompts and
weights, and the ratios: interp / HF, steered overhead, fraction of the compute bound (2 x
parameters FLOPs per generated token at the measured matmul rate), overall and for the decode
steps alone.

The tolerance of a faster dtype: on the fp32 teacher's own steered samples, the mean per-token KL
between the fp32 and the working dtype's next-token distributions, against the KL the steering
itself causes (steered vs unsteered, fp32): how much of the teacher's signal the arithmetic moves.

Then the profile that bounds what any sampler can reach here: the split of interp's wall time into
the prompts' forward (prefill) and the one-token steps (decode); the matmul rate at the model's own
layer shapes with as many rows as prefill and decode give them; and from those the ceiling, the
wall time of the matrix multiplies alone (every other operation free), as tokens/s and as a ratio
to HF generate. With `--llama-cpp`, llama.cpp's own batched benchmark on the same weights and
shapes (`benchmarks/_llamacpp.py`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from interp.generate import SampleConfig, sample
from interp.models import DTYPES, load_model, weights_in
from interp.runs import write_json
from interp.prompts import contrastive_pairs, number_prompts
from interp.steering import Steering, build_steering_vector, steer

from _common import (  # benchmarks/ is on sys.path when run as a script
    Report,
    best_of,
    faster_dtype,
    layer_gemm_gflops,
    machine_rates,
    parser,
    pick_device,
    print_machine,
    reference_rate,
    sync,
    timed_mm,
)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each arm (interleaved); the best counts")
    ap.add_argument(
        "--dtype", default="auto", choices=["auto", *DTYPES], help="working dtype (auto: the faster matmul)"
    )
    ap.add_argument("--tolerance-rows", type=int, default=8, help="samples the dtype tolerance is measured on")
    ap.add_argument("--llama-cpp", help="a llama.cpp tree built with llama-batched-bench: compare with it")
    args = ap.parse_args()

    device = pick_device(args.device)
    rates = machine_rates(device)
    work = faster_dtype(rates) if args.dtype == "auto" else args.dtype
    dtypes = list(dict.fromkeys(["fp32", work]))  # fp32, the reference arithmetic, is always measured
    print_machine(rates, device, work, "and fp32 beside it, the reference arithmetic" if work != "fp32" else "")
    m = load_model(args.model, device=device)
    n_params = sum(p.numel() for p in m.hf.parameters())
    vec = build_steering_vector(m, contrastive_pairs("owl", 8), trait="owl")
    s = Steering(layer=m.n_layers // 3, multiplier=0.5)
    prompts = [m.chat([{"role": "user", "content": p}]) for p in number_prompts(args.batch, seed=0)]

    stats: dict[str, dict[str, dict]] = {d: {} for d in dtypes}
    samples: dict[str, list] = {}

    def ours(dtype: str, constrained: bool, steered: bool) -> float:
        cfg = SampleConfig(
            max_new_tokens=args.new_tokens, batch_size=args.batch, constrained=constrained, seed=0, dtype=dtype
        )
        ctx = (lambda: steer(m, vec, s)) if steered else None
        done, st = sample(m, prompts, cfg, context=ctx, progress=False)
        key = f"{'grammar' if constrained else 'free'}, {'steered' if steered else 'unsteered'}"
        if key not in stats[dtype] or st["wall_s"] < stats[dtype][key]["wall_s"]:
            stats[dtype][key] = st
        samples[f"{dtype}, {key}"] = done
        return st["new_tokens"] / st["wall_s"]

    def hf_generate(dtype: str) -> float:
        tok = m.tokenizer
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with weights_in(m, dtype), torch.no_grad():
            sync(device)
            t = time.perf_counter()
            out = m.hf.generate(
                **enc,
                max_new_tokens=args.new_tokens,
                do_sample=True,
                temperature=1.0,
                pad_token_id=tok.pad_token_id,
                min_new_tokens=args.new_tokens,
            )
            sync(device)
            wall = time.perf_counter() - t
        tok.padding_side = "right"
        return (out.shape[1] - enc.input_ids.shape[1]) * args.batch / wall

    # Throughput is reported as rows: interp's rates use only tokens actually produced.
    hf, rows, bound = {}, {}, {}
    arms = (
        ("free, unsteered", False, False),
        ("free, steered", False, True),
        ("grammar, unsteered", True, False),
        ("grammar, steered", True, True),
    )
    for d in dtypes:
        hf[d] = best_of(lambda: hf_generate(d), args.repeats)
        rows[d] = {key: 0.0 for key, _, _ in arms}
        for _ in range(args.repeats):  # the arms interleaved, so a drift in the machine's speed hits them alike
            for key, c, st in arms:
                rows[d][key] = max(rows[d][key], ours(d, c, st))
        bound[d] = reference_rate(rates, d, device)[0] * 1e9 / (2 * n_params)  # a GPU's published peak where known

    # HF is held to exactly --new-tokens per row (min_new_tokens), while interp's rows stop at their
    # end token but keep decoding (ignored) until the last one ends: tokens/s credits interp only
    # for the tokens kept. The time for the same work (the prefill plus --new-tokens steps for every
    # row, each engine at its own measured step time) compares the engines; the targets use it.
    def same_work(st: dict, steps: int) -> float:
        return st["prefill_s"] + st["decode_s"] / st["steps"] * steps

    hf_wall = {d: args.batch * args.new_tokens / hf[d] for d in dtypes}
    speedup = {d: {k: hf_wall[d] / same_work(stats[d][k], args.new_tokens) for k in rows[d]} for d in dtypes}
    of_bound = {
        d: {k: args.batch * args.new_tokens / same_work(stats[d][k], args.new_tokens) / bound[d] for k in rows[d]}
        for d in dtypes
    }
    print(
        f"model {args.model}: {n_params / 1e6:.1f}M parameters; compute bound "
        + ", ".join(f"{bound[d]:.0f} tok/s at {reference_rate(rates, d, device)[1]}" for d in dtypes)
    )
    for d in dtypes:
        print(
            f"{d}: HF generate (sampling, batch {args.batch}, {args.new_tokens} tokens a row): {hf[d]:.0f} tok/s, "
            f"{hf_wall[d]:.2f} s"
        )
        for name, r in rows[d].items():
            st = stats[d][name]
            dec = args.batch * st["steps"] / st["decode_s"]  # rows x steps, as the bound counts them
            vs32 = f", x{hf_wall['fp32'] / same_work(st, args.new_tokens):.2f} HF fp32" if d != "fp32" else ""
            print(
                f"  interp {name:<20} {r:6.0f} tok/s kept (x{r / hf[d]:.2f} HF {d});  same work "
                f"x{speedup[d][name]:.2f} HF {d}{vs32}, {of_bound[d][name]:.1%} of the bound "
                f"({dec / bound[d]:.1%} in the decode steps alone)"
            )

    # Steering changes which rows end early: the overhead compares the time for the same work
    # (the prefill plus the unsteered run's step count).
    sw = stats[work]
    overhead = {
        k: same_work(sw[f"{k}, steered"], sw[f"{k}, unsteered"]["steps"])
        / same_work(sw[f"{k}, unsteered"], sw[f"{k}, unsteered"]["steps"])
        - 1
        for k in ("free", "grammar")
    }
    print(
        f"steered overhead ({work}, time for the same steps): free {overhead['free']:+.1%}, grammar {overhead['grammar']:+.1%}"
    )

    tolerance = (
        dtype_tolerance(m, prompts, samples["fp32, grammar, steered"][: args.tolerance_rows], vec, s, work)
        if work != "fp32"
        else None
    )

    # The profile: where the time goes, and the matrix multiplies' own floor.
    wdt = DTYPES[work]
    emb = m.hf.get_output_embeddings().weight.numel()
    body = n_params - emb if m.hf.config.tie_word_embeddings else n_params - 2 * emb
    pre = sw["grammar, unsteered"]
    width = pre["padded_prompt_tokens"] // args.batch
    fwd_rate = {
        "prefill": layer_gemm_gflops(m, pre["padded_prompt_tokens"], wdt, device, backward=False),
        "decode": layer_gemm_gflops(m, args.batch, wdt, device, backward=False),
    }
    w_out = m.hf.get_output_embeddings().weight.detach().to(wdt)
    h = torch.randn(args.batch, w_out.shape[1], dtype=wdt, device=device)
    head_rate = (2 * args.batch * emb) / min(timed_mm(h, w_out.T, device) for _ in range(3)) / 1e9
    print(
        f"\nprofile ({work}, batch {args.batch}, prompts padded to {width} tokens, {pre['prompt_tokens'] / args.batch:.0f} real "
        f"on average; {body / 1e6:.1f}M parameters outside the embedding, {emb / 1e6:.1f}M in the vocabulary projection):"
    )
    print(
        f"  layer matmuls at {pre['padded_prompt_tokens']} rows (prefill): {fwd_rate['prefill']:.0f} GFLOP/s "
        f"({fwd_rate['prefill'] / rates[work]:.0%} of square); at {args.batch} rows (decode): {fwd_rate['decode']:.0f} "
        f"GFLOP/s ({fwd_rate['decode'] / rates[work]:.0%}); vocabulary projection at {args.batch} rows: {head_rate:.0f} GFLOP/s"
    )
    ids = [m.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    shared = next((k for k in range(min(map(len, ids))) if len({i[k] for i in ids}) > 1), min(map(len, ids)))
    lean_tokens = shared + sum(len(i) - shared for i in ids)  # no padding, the common prefix once
    print(
        f"  the {args.batch} prompts share their first {shared} tokens; without padding and with that prefix "
        f"computed once, prefill needs {lean_tokens} token forwards instead of {pre['padded_prompt_tokens']}"
    )
    ceilings = {}
    work_tokens = args.batch * args.new_tokens  # the same work as HF: every row decodes --new-tokens steps
    for key, st in sw.items():
        free = key.startswith("free")
        t_pre = 2 * body * st["padded_prompt_tokens"] / (fwd_rate["prefill"] * 1e9)
        t_lean = 2 * body * lean_tokens / (fwd_rate["prefill"] * 1e9)
        t_dec = work_tokens * 2 * body / (fwd_rate["decode"] * 1e9)
        t_dec += work_tokens * 2 * emb / (head_rate * 1e9) if free else 0.0
        t_min, t_ours = t_pre + t_dec, same_work(st, args.new_tokens)
        ceilings[key] = {
            "matmul_floor_s": t_min,
            "prefill_floor_s": t_pre,
            "decode_floor_s": t_dec,
            "same_work_s": t_ours,
            "ceiling_tok_s": work_tokens / t_min,
            "ceiling_vs_hf": hf_wall[work] / t_min,
            "ceiling_of_bound": work_tokens / t_min / bound[work],
            "lean_prefill_floor_s": t_lean,
            "lean_ceiling_vs_hf": hf_wall[work] / (t_lean + t_dec),
            "lean_ceiling_of_bound": work_tokens / (t_lean + t_dec) / bound[work],
        }
        c = ceilings[key]
        print(
            f"  {key:<20} prefill {st['prefill_s']:.2f} s + {args.new_tokens} steps x {st['decode_s'] / st['steps'] * 1e3:.0f} ms "
            f"= {t_ours:.2f} s (prefill {st['prefill_s'] / t_ours:.0%}); matmul floor {t_min:.2f} s "
            f"(prefill {t_pre:.2f} + decode {t_dec:.2f}) -> ceiling x{c['ceiling_vs_hf']:.2f} HF, "
            f"{c['ceiling_of_bound']:.0%} of the compute bound; interp reaches {t_min / t_ours:.0%} of it; "
            f"unpadded with the prefix once: x{c['lean_ceiling_vs_hf']:.2f} HF, {c['lean_ceiling_of_bound']:.0%} of the bound"
        )

    llama = None
    if args.llama_cpp and device.type != "cpu":
        print("\n--llama-cpp: llama.cpp is compared on the CPU only; skipped")
    elif args.llama_cpp:
        from _llamacpp import compare

        llama = compare(m, args.llama_cpp, dtypes, args.batch, width, args.new_tokens)
        print(
            f"\nllama.cpp (llama-batched-bench, same weights, batch {args.batch} x {width} prompt tokens + "
            f"{args.new_tokens} new; no sampling, grammar or steering):"
        )
        for d, r in llama.items():
            if "error" in r:
                print(f"  {d}: not measured ({r['error']})")
                continue
            print(
                f"  {d}: wall {r['wall_s']:.2f} s = prefill {r['prefill_s']:.2f} s + {args.new_tokens} steps x "
                f"{r['decode_step_ms']:.0f} ms -> {r['new_tok_s']:.0f} tok/s = x{hf_wall[d] / r['wall_s']:.2f} HF {d}; "
                f"interp (same work) x{r['wall_s'] / same_work(stats[d]['free, unsteered'], args.new_tokens):.2f} "
                f"llama.cpp free, x{r['wall_s'] / same_work(stats[d]['grammar, unsteered'], args.new_tokens):.2f} grammar"
            )

    rep = Report("generate", vars(args))
    for key in ("free, unsteered", "grammar, unsteered"):
        rep.target(f"interp / HF generate, same work ({key}, {work})", speedup[work][key], ">=", 3.0)
        rep.target(f"fraction of the compute bound ({key}, {work})", of_bound[work][key], ">=", 0.5, "%")
    for k, v in overhead.items():
        rep.target(f"steered overhead ({k}, {work})", v, "<=", 0.05, "%")
    rep.print()
    if args.out:
        write_json(
            Path(args.out),
            {
                "model": args.model,
                "batch": args.batch,
                "new_tokens": args.new_tokens,
                "matmul_gflops": rates,
                "works_in": work,
                "compute_bound_tok_s": bound,
                "hf_generate_tok_s": hf,
                "interp_tok_s": rows,
                "steered_overhead": overhead,
                "hf_wall_s": hf_wall,
                "same_work_vs_hf": speedup,
                "same_work_of_bound": of_bound,
                "interp_stats": stats,
                "dtype_tolerance": tolerance,
                "layer_matmul_gflops": fwd_rate,
                "head_matmul_gflops": head_rate,
                "ceilings": ceilings,
                "shared_prefix_tokens": shared,
                "llama_cpp": llama,
                "targets": rep.to_dict()["targets"],
            },
        )


@torch.no_grad()
def dtype_tolerance(m, prompts, done, vec, s, dtype: str) -> dict:
    """Mean per-token KL(fp32 || `dtype`) of the steered teacher's next-token distribution at the
    positions of its own fp32 samples, against KL(steered || unsteered) in fp32, the signal."""

    def logprobs(dt: str, steered: bool) -> list[torch.Tensor]:
        out = []
        with weights_in(m, dt):
            for p, c in zip(prompts, done):
                pids = m.tokenizer(p, add_special_tokens=False)["input_ids"]
                ids = torch.tensor([pids + c.token_ids], device=m.device)
                with steer(m, vec, s) if steered else torch.no_grad():
                    logits = m.hf(ids).logits[0, len(pids) - 1 : ids.shape[1] - 1]
                out.append(torch.log_softmax(logits.float(), -1))
        return out

    def kl(a, b) -> float:
        return float(torch.cat([(x.exp() * (x - y)).sum(-1) for x, y in zip(a, b)]).mean())

    ref, low = logprobs("fp32", True), logprobs(dtype, True)
    noise, signal = kl(ref, low), kl(ref, logprobs("fp32", False))
    agree = float(torch.cat([x.argmax(-1) == y.argmax(-1) for x, y in zip(ref, low)]).float().mean())
    print(
        f"\n{dtype} tolerance on {len(done)} fp32 steered grammar samples ({sum(len(c.token_ids) for c in done)} tokens): "
        f"KL(fp32 || {dtype}) {noise:.2e} nats/token vs the steering's own KL {signal:.2e} (ratio {noise / signal:.3f}); "
        f"the most likely token agrees at {agree:.1%} of positions"
    )
    return {
        "kl_dtype_nats": noise,
        "kl_steering_nats": signal,
        "ratio": noise / signal,
        "argmax_agreement": agree,
        "rows": len(done),
    }


if __name__ == "__main__":
    main()

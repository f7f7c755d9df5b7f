"""Teacher generation throughput, as ratios measured in one process.

    .venv/bin/python benchmarks/bench_generate.py                 # smollm2-135m, batch 32, 40 tokens
    .venv/bin/python benchmarks/bench_generate.py --model tiny    # seconds, for a smoke check

Prints the machine's matrix-multiply rate (fp32 and bf16; works in the faster), tokens/s of
interp's sampler unsteered and steered (free and grammar-constrained), HF `generate` on the same
prompts, and the ratios: interp / HF, steered overhead, fraction of the compute bound
(2 x parameters FLOPs per token at the measured matmul rate).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from interp.generate import SampleConfig, sample
from interp.models import load_model
from interp.runs import write_json
from interp.prompts import contrastive_pairs, number_prompts
from interp.steering import Steering, build_steering_vector, steer

from _common import best_of, machine_rates, parser, print_machine  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    rates = machine_rates("cpu")
    print_machine(rates, torch.device("cpu"), "fp32", "bf16 sampling changes the samples; fp32 is the reference arithmetic")
    m = load_model(args.model, device="cpu")
    n_params = sum(p.numel() for p in m.hf.parameters())
    vec = build_steering_vector(m, contrastive_pairs("owl", 8), trait="owl")
    s = Steering(layer=m.n_layers // 3, multiplier=0.5)
    prompts = [m.chat([{"role": "user", "content": p}]) for p in number_prompts(args.batch, seed=0)]

    def ours(constrained: bool, steered: bool) -> float:
        cfg = SampleConfig(max_new_tokens=args.new_tokens, batch_size=args.batch, constrained=constrained, seed=0)
        ctx = (lambda: steer(m, vec, s)) if steered else None
        _, st = sample(m, prompts, cfg, context=ctx, progress=False)
        return st["new_tokens"] / st["wall_s"]

    def hf_generate() -> float:
        tok = m.tokenizer
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        t = time.perf_counter()
        with torch.no_grad():
            out = m.hf.generate(**enc, max_new_tokens=args.new_tokens, do_sample=True, temperature=1.0,
                                pad_token_id=tok.pad_token_id, min_new_tokens=args.new_tokens)
        wall = time.perf_counter() - t
        tok.padding_side = "right"
        return (out.shape[1] - enc.input_ids.shape[1]) * args.batch / wall

    # Throughput is reported as rows: interp's rates use only tokens actually produced.
    hf = best_of(hf_generate, args.repeats)
    rows = {
        "free, unsteered": best_of(lambda: ours(False, False), args.repeats),
        "free, steered": best_of(lambda: ours(False, True), args.repeats),
        "grammar, unsteered": best_of(lambda: ours(True, False), args.repeats),
        "grammar, steered": best_of(lambda: ours(True, True), args.repeats),
    }
    bound = rates["fp32"] * 1e9 / (2 * n_params)
    print(f"model {args.model}: {n_params / 1e6:.1f}M parameters; compute bound {bound:.0f} tok/s at fp32 matmul rate")
    print(f"HF generate (sampling, batch {args.batch}): {hf:.0f} tok/s")
    for name, r in rows.items():
        print(f"interp {name:<20} {r:8.0f} tok/s   x{r / hf:.2f} vs HF   {r / bound:.1%} of compute bound")
    overhead = {k: rows[f"{k}, unsteered"] / rows[f"{k}, steered"] - 1 for k in ("free", "grammar")}
    print(f"steered overhead: free {overhead['free']:+.1%}, grammar {overhead['grammar']:+.1%}")
    if args.out:
        write_json(Path(args.out), {"model": args.model, "batch": args.batch, "new_tokens": args.new_tokens,
                                    "matmul_gflops": rates, "compute_bound_tok_s": bound, "hf_generate_tok_s": hf,
                                    "interp_tok_s": rows, "steered_overhead": overhead})


if __name__ == "__main__":
    main()

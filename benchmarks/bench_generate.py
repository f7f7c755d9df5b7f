"""Teacher generation throughput, as ratios measured in one process.

    .venv/bin/python benchmarks/bench_generate.py                 # smollm2-135m, batch 32, 40 tokens
    .venv/bin/python benchmarks/bench_generate.py --model tiny    # seconds, for a smoke check

Prints the machine's matrix-multiply rate (fp32 and bf16; works in the faster), tokens/s of
interp's sampler unsteered and steered (free and grammar-constrained), HF `generate` on the same
prompts, and the ratios: interp / HF, steered overhead, fraction of the compute bound
(2 x parameters FLOPs per token at the measured matmul rate).

Then the profile that bounds what any sampler can reach here: the split of interp's wall time into
the prompts' forward (prefill) and the one-token steps (decode); the matmul rate at the model's own
layer shapes with as many rows as prefill and decode give them; and from those the ceiling, the
wall time of the matrix multiplies alone (every other operation free), as tokens/s and as a ratio
to HF generate.
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

from _common import Report, best_of, layer_gemm_gflops, timed_mm, machine_rates, parser, print_machine  # benchmarks/ is on sys.path when run as a script


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

    stats: dict[str, dict] = {}

    def ours(constrained: bool, steered: bool) -> float:
        cfg = SampleConfig(max_new_tokens=args.new_tokens, batch_size=args.batch, constrained=constrained, seed=0)
        ctx = (lambda: steer(m, vec, s)) if steered else None
        _, st = sample(m, prompts, cfg, context=ctx, progress=False)
        key = f"{'grammar' if constrained else 'free'}, {'steered' if steered else 'unsteered'}"
        if key not in stats or st["wall_s"] < stats[key]["wall_s"]:
            stats[key] = st
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
    # Steering changes which rows end early, so tokens/s differ for reasons other than speed: the
    # overhead compares the time for the same work (the prefill plus the unsteered run's step count).
    def same_work(st: dict, steps: int) -> float:
        return st["prefill_s"] + st["decode_s"] / st["steps"] * steps

    overhead = {k: same_work(stats[f"{k}, steered"], stats[f"{k}, unsteered"]["steps"])
                / same_work(stats[f"{k}, unsteered"], stats[f"{k}, unsteered"]["steps"]) - 1 for k in ("free", "grammar")}
    print(f"steered overhead (time for the same steps): free {overhead['free']:+.1%}, grammar {overhead['grammar']:+.1%}")

    # The profile: where the time goes, and the matrix multiplies' own floor.
    hf_cfg = m.hf.config.get_text_config()
    emb = m.hf.get_output_embeddings().weight.numel()
    body = n_params - emb if m.hf.config.tie_word_embeddings else n_params - 2 * emb
    pre = stats["grammar, unsteered"]
    width = pre["padded_prompt_tokens"] // args.batch
    fwd_rate = {"prefill": layer_gemm_gflops(m, pre["padded_prompt_tokens"], torch.float32, "cpu", backward=False),
                "decode": layer_gemm_gflops(m, args.batch, torch.float32, "cpu", backward=False)}
    w_out = m.hf.get_output_embeddings().weight.detach()
    h = torch.randn(args.batch, w_out.shape[1])
    head_rate = (2 * args.batch * emb) / min(timed_mm(h, w_out.T, "cpu") for _ in range(3)) / 1e9
    print(f"\nprofile (fp32, batch {args.batch}, prompts padded to {width} tokens, {pre['prompt_tokens'] / args.batch:.0f} real "
          f"on average; {body / 1e6:.1f}M parameters outside the embedding, {emb / 1e6:.1f}M in the vocabulary projection):")
    print(f"  layer matmuls at {pre['padded_prompt_tokens']} rows (prefill): {fwd_rate['prefill']:.0f} GFLOP/s "
          f"({fwd_rate['prefill'] / rates['fp32']:.0%} of square); at {args.batch} rows (decode): {fwd_rate['decode']:.0f} "
          f"GFLOP/s ({fwd_rate['decode'] / rates['fp32']:.0%}); vocabulary projection at {args.batch} rows: {head_rate:.0f} GFLOP/s")
    ids = [m.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    shared = next((k for k in range(min(map(len, ids))) if len({i[k] for i in ids}) > 1), min(map(len, ids)))
    lean_tokens = shared + sum(len(i) - shared for i in ids)  # no padding, the common prefix once
    print(f"  the {args.batch} prompts share their first {shared} tokens; without padding and with that prefix "
          f"computed once, prefill needs {lean_tokens} token forwards instead of {pre['padded_prompt_tokens']}")
    ceilings = {}
    for key, st in stats.items():
        free = key.startswith("free")
        t_pre = 2 * body * st["padded_prompt_tokens"] / (fwd_rate["prefill"] * 1e9)
        t_lean = 2 * body * lean_tokens / (fwd_rate["prefill"] * 1e9)
        t_dec = st["steps"] * args.batch * 2 * body / (fwd_rate["decode"] * 1e9)
        t_dec += st["steps"] * args.batch * 2 * emb / (head_rate * 1e9) if free else 0.0
        t_min = t_pre + t_dec
        ceilings[key] = {"matmul_floor_s": t_min, "prefill_floor_s": t_pre, "decode_floor_s": t_dec,
                         "ceiling_tok_s": st["new_tokens"] / t_min, "ceiling_vs_hf": st["new_tokens"] / t_min / hf,
                         "lean_prefill_floor_s": t_lean, "lean_ceiling_vs_hf": st["new_tokens"] / (t_lean + t_dec) / hf,
                         "lean_ceiling_of_bound": st["new_tokens"] / (t_lean + t_dec) / bound}
        print(f"  {key:<20} wall {st['wall_s']:.2f} s = prefill {st['prefill_s']:.2f} s ({st['prefill_s'] / st['wall_s']:.0%}) "
              f"+ {st['steps']} steps x {st['decode_s'] / st['steps'] * 1e3:.0f} ms; matmul floor {t_min:.2f} s "
              f"(prefill {t_pre:.2f} + decode {t_dec:.2f}) -> ceiling {st['new_tokens'] / t_min:.0f} tok/s = "
              f"x{st['new_tokens'] / t_min / hf:.2f} HF, {st['new_tokens'] / t_min / bound:.0%} of the compute bound; "
              f"interp reaches {t_min / st['wall_s']:.0%} of it; unpadded with the prefix once: "
              f"x{ceilings[key]['lean_ceiling_vs_hf']:.2f} HF, {ceilings[key]['lean_ceiling_of_bound']:.0%} of the bound")
    rep = Report("generate", vars(args))
    for key in ("free, unsteered", "grammar, unsteered"):
        rep.target(f"interp / HF generate ({key})", rows[key] / hf, ">=", 3.0)
        rep.target(f"fraction of the compute bound ({key})", rows[key] / bound, ">=", 0.5, "%")
    for k, v in overhead.items():
        rep.target(f"steered overhead ({k})", v, "<=", 0.05, "%")
    rep.print()
    if args.out:
        write_json(Path(args.out), {"model": args.model, "batch": args.batch, "new_tokens": args.new_tokens,
                                    "matmul_gflops": rates, "compute_bound_tok_s": bound, "hf_generate_tok_s": hf,
                                    "interp_tok_s": rows, "steered_overhead": overhead, "interp_stats": stats,
                                    "layer_matmul_gflops": fwd_rate, "head_matmul_gflops": head_rate,
                                    "ceilings": ceilings, "shared_prefix_tokens": shared,
                                    "targets": rep.to_dict()["targets"]})


if __name__ == "__main__":
    main()

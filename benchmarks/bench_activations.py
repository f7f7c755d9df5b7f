"""Activation extraction cost, as ratios to a plain forward of the same batch, in one process.

    .venv/bin/python benchmarks/bench_activations.py                 # smollm2-135m, batch 16
    .venv/bin/python benchmarks/bench_activations.py --model tiny --batch 8 --repeats 3
    .venv/bin/python benchmarks/bench_activations.py --device cuda --out activations.json

Measures the machine's matmul rate (fp32, bf16; extraction works in fp32, the arithmetic steering
vectors are built in), then on one batch of number conversations (a number prompt and a
completion of digits, rendered and left-padded as `interp.steering.mean_activations_at` does):

- baseline: a plain forward (`interp.batching.forward`, logits at every position, no KV cache);
- `interp.hooks.record_resid` on every layer (+ `run_recording`; the pass stops after the last
  block, so the final norm and the vocabulary projection are skipped);
- `interp.steering.mean_activations_at` end to end (render, tokenise, record, float64 mean and
  last-token reductions), against tokenise + plain forward;
- for comparison: the decoder without the vocabulary projection, HF `output_hidden_states`, and
  the TransformerLens bridge (`LoadedModel.bridge()`): a plain bridge forward and `run_with_cache`
  filtered to `hook_resid_post` (skipped, with the reason, if the bridge fails on the model).

Target (issue 12): all-layer residual activations at most 1.15x the plain forward.
"""

from __future__ import annotations

import random

import torch

from interp import batching
from interp.hooks import record_resid, run_recording
from interp.models import load_model
from interp.prompts import number_prompts
from interp.steering import _render, mean_activations_at

from _common import (  # benchmarks/ is on sys.path when run as a script
    Report,
    best_of,
    machine_rates,
    parser,
    pick_device,
    print_machine,
    reference_rate,
    timed,
)


def conversations(n: int, n_numbers: int, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    return [
        [
            {"role": "user", "content": p},
            {"role": "assistant", "content": ", ".join(str(rng.randrange(100, 1000)) for _ in range(n_numbers))},
        ]
        for p in number_prompts(n, seed=seed)
    ]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--batch", type=int, default=16, help="conversations in the batch")
    ap.add_argument("--numbers", type=int, default=10, help="3-digit numbers in each assistant turn")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each arm; the best is reported")
    args = ap.parse_args()

    device = pick_device(args.device)
    rates = machine_rates(device)
    print_machine(rates, device, "fp32", "steering vectors and activations are read in fp32")
    m = load_model(args.model, device=device)
    hf = m.hf
    n_params = sum(p.numel() for p in hf.parameters())
    convs = conversations(args.batch, args.numbers)
    texts = [t for t, _ in (_render(m, c) for c in convs)]
    batch = batching.encode(m.tokenizer, texts, side="left").to(device)
    real_tokens = int(batch.attention_mask.sum())
    layers = list(range(m.n_layers))

    def best(fn) -> float:
        fn()  # warm-up
        return best_of(lambda: timed(fn, device), args.repeats)

    def plain():
        batching.forward(hf, batch, use_cache=False)

    def encode_plain():
        b = batching.encode(m.tokenizer, texts, side="left").to(device)
        batching.forward(hf, b, use_cache=False)

    def decoder_only():
        hf.get_decoder()(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        )

    def hidden_states():
        batching.forward(hf, batch, use_cache=False, output_hidden_states=True)

    def record_all():
        with record_resid(m.layers, layers) as store:
            run_recording(lambda: batching.forward(hf, batch, use_cache=False))
        assert len(store) == len(layers)

    def mean_at():
        mean_activations_at(m, convs, ("mean", "last"), batch_size=args.batch)

    with torch.no_grad():
        t = {
            "plain forward": best(plain),
            "tokenise + plain forward": best(encode_plain),
            "decoder only (no vocab projection)": best(decoder_only),
            "HF output_hidden_states": best(hidden_states),
            "record_resid, all layers": best(record_all),
        }
    t["mean_activations_at (mean, last)"] = best(mean_at)  # no_grad inside

    bridge_error = None
    try:
        bridge = m.bridge()
        ids = batch.input_ids
        resid = lambda n: n.endswith("hook_resid_post")  # noqa: E731
        with torch.no_grad():
            t["bridge forward"] = best(lambda: bridge(ids))
            out = {}
            t["bridge run_with_cache (resid_post)"] = best(
                lambda: out.__setitem__("cache", bridge.run_with_cache(ids, names_filter=resid)[1])
            )
        n_cached = len(out["cache"])
        if n_cached < len(layers):
            raise RuntimeError(f"run_with_cache returned {n_cached} hook_resid_post entries for {len(layers)} layers")
    except Exception as e:  # report why and go on: the bridge is a comparison, not a target
        bridge_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        t = {k: v for k, v in t.items() if not k.startswith("bridge")}

    base = t["plain forward"]
    ref, ref_label = reference_rate(rates, "fp32", device)
    rep = Report("activations", vars(args))
    rep.row("model", args.model, f"{n_params / 1e6:.1f}M parameters, {m.n_layers} layers")
    rep.row(
        "batch",
        f"{args.batch} x {batch.input_ids.shape[1]}",
        f"padded width; {real_tokens} real tokens ({1 - real_tokens / batch.input_ids.numel():.1%} padding)",
    )
    for name, s in t.items():
        vs = "tokenise + plain forward" if name.startswith("mean_activations_at") else "plain forward"
        note = f"x{s / t[vs]:.2f} vs {vs}"
        if name == "plain forward":
            note = (
                f"{real_tokens / s:.0f} tok/s; 2N x tok/s = {2 * n_params * real_tokens / s / 1e9:.1f} GFLOP/s "
                f"= {2 * n_params * real_tokens / s / 1e9 / ref:.1%} of {ref_label}"
            )
        rep.row(name, f"{s * 1e3:.1f} ms", note)
    if bridge_error:
        rep.row("bridge", "skipped", bridge_error)
        print(f"bridge: skipped ({bridge_error})")
    rep.target("record_resid all layers / plain forward", t["record_resid, all layers"] / base, "<=", 1.15)
    rep.target(
        "mean_activations_at / tokenise+forward",
        t["mean_activations_at (mean, last)"] / t["tokenise + plain forward"],
        "<=",
        1.15,
    )
    rep.data = {
        "model": args.model,
        "device": str(device),
        "n_params": n_params,
        "matmul_gflops": rates,
        "works_in": "fp32",
        "reference_gflops": ref,
        "reference": ref_label,
        "real_tokens": real_tokens,
        "padded_shape": list(batch.input_ids.shape),
        "seconds": t,
        "ratios_to_plain_forward": {k: v / base for k, v in t.items()},
        "bridge_error": bridge_error,
    }
    rep.print()
    rep.write(args.out)


if __name__ == "__main__":
    main()

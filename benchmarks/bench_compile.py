"""torch.compile of the student's decoder against eager, for the bf16 student step (issue 21).

    .venv/bin/python benchmarks/bench_compile.py                                # smollm2-135m, 80 rows, batch 4
    .venv/bin/python benchmarks/bench_compile.py --data CACHE/data-<key>        # a cached dataset's rows
    .venv/bin/python benchmarks/bench_compile.py --model tiny --rows 16 --seq-len 48

One process, one dataset, one student epoch per arm through `interp.trainer.Trainer` (the loop
`train_student` runs: bf16 forward and backward, fp32 master weights, fused AdamW, finite
checks), in the order eager, compiled, compiled again (its graphs cached: the steady state),
eager again. The compiled arms compile the decoder in place (`nn.Module.compile(dynamic=True)`;
`torch.compile(hf.model)` would be bypassed, since `get_decoder()` unwraps it). Reported: seconds
per step after the first, the compile time (the first compiled step minus an eager step), the
ratio compiled / eager, and how far the compiled arithmetic moves the student: the cosine and norm
ratio of its weight update to eager's and the largest per-step loss difference.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from interp.datasets import read_rows
from interp.models import load_model
from interp.optim import make_optimizer
from interp.rows import build_examples
from interp.train import TrainConfig, _prepare, trainable_state
from interp.trainer import Trainer

from _common import Report, parser, pick_device  # benchmarks/ is on sys.path when run as a script
from bench_train import number_rows


def epoch(model, examples, cfg: TrainConfig, compiled: bool) -> dict:
    """One epoch of a fresh student: per-step wall times, the losses and the weight update."""
    hf = _prepare(model, cfg)
    opt = make_optimizer(cfg, list(trainable_state(hf).values()))
    run = Trainer(model, hf, opt, examples, cfg, Path(tempfile.mkdtemp()), 0, [], None)
    if compiled:
        run.work.get_decoder().compile(dynamic=True)
    times = []
    for ep, step, group in run.pending():
        t = time.perf_counter()
        run.take_step(ep, step, group)
        times.append(time.perf_counter() - t)
    base = dict(model.hf.named_parameters())
    update = torch.cat([(p.detach() - base[n].detach()).flatten().double() for n, p in hf.named_parameters()])
    return {"times": times, "losses": [r["loss"] for r in run.log], "update": update}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--data", type=Path, help="a dataset stage directory to train on (default: synthetic rows)")
    ap.add_argument("--rows", type=int, default=80)
    ap.add_argument("--seq-len", type=int, default=145)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    args = ap.parse_args()
    device = pick_device(args.device)
    model = load_model(args.model, device=str(device))
    rows = read_rows(args.data) if args.data else number_rows(model, args.rows, args.seq_len)
    cfg = replace(TrainConfig(), lr=1e-4, batch_size=args.batch_size, dtype=args.dtype, seed=0)
    examples = build_examples(model, rows, cfg.max_len, system_prompt=cfg.system_prompt)
    arms = {
        name: epoch(model, examples, cfg, compiled)
        for name, compiled in [("eager", False), ("compiled", True), ("compiled again", True), ("eager again", False)]
    }
    rep = Report("bench_compile", vars(args) | {"out": args.out})
    per_step = {k: sum(a["times"][1:]) / max(len(a["times"]) - 1, 1) for k, a in arms.items()}
    eager = min(per_step["eager"], per_step["eager again"])
    for k, a in arms.items():
        rep.row(f"{k}: s/step after the first", f"{per_step[k]:.3f}", f"first step {a['times'][0]:.1f} s")
    rep.row("compile time", f"{arms['compiled']['times'][0] - arms['eager']['times'][0]:.1f} s")
    ratio = eager / min(per_step["compiled"], per_step["compiled again"])
    rep.row("compiled speed / eager (best arms)", f"{ratio:.2f}x")
    u, v = arms["eager"]["update"], arms["compiled"]["update"]
    cos = float(torch.nn.functional.cosine_similarity(u, v, dim=0))
    dl = max(abs(a - b) for a, b in zip(arms["eager"]["losses"], arms["compiled"]["losses"]))
    same = arms["eager"]["losses"] == arms["eager again"]["losses"]
    rep.row("update cosine compiled / eager", f"{cos:.4f}", f"norm ratio {float(v.norm() / u.norm()):.4f}")
    rep.row("max loss difference per step", f"{dl:.4f}", f"eager twice identical: {same}")
    rep.data = {"s_per_step": per_step, "speed_ratio": ratio, "update_cos": cos, "max_loss_diff": dl}
    rep.print()
    if args.out:
        rep.write(args.out)


if __name__ == "__main__":
    main()

"""A student's cost in machine time against its fp32 floor: alone on every core, and N at once.

    .venv/bin/python benchmarks/bench_student_pair.py --data CACHE/data-<a> CACHE/data-<b>   # real rows
    .venv/bin/python benchmarks/bench_student_pair.py                   # smollm2-135m, synthetic rows
    .venv/bin/python benchmarks/bench_student_pair.py --model tiny --rows 8 --dtype fp32   # a quick check

Issue 21 asks for a student at most 1.15x its fp32 floor: its FLOPs (6 x block parameters x the
tokens it trained on, plus the unembedding at completion positions only) at the fp32 matmul rate
of the whole machine, measured in this process before every arm (the floor takes the best rate
seen: one short burst varied by 20% within minutes here). One student alone (torch on every core)
is far from it: half its step is elementwise work, attention and the optimizer, which a second thread
barely speeds up (bench_seed.py, bench_workers.py). A sweep with `workers = N` trains N students
at once, one thread each. This measures both, on the same rows and settings, each arm in fresh
processes:
- `alone`: one student, torch on every core; its cost is its wall time;
- `at once`: N students started together (after each has loaded its model and rows), one thread
  each; their cost is the wall time from the start to the last one's end, divided by N: the
  machine time each student takes, what students per CPU-hour counts.
The students are `train_student` calls as a sweep makes them (keep "none": nothing written), so
the time holds the copy of the base, the bf16 working copy and the finite checks; not the model
load or the evaluation. Prints each arm's cost, its ratio to the fp32 floor and to the floor at
the student's own dtype, and the arms' ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Report, machine_rates, parser, student_flops  # benchmarks/ is on sys.path


def run_child(args) -> None:
    """One student in this process: load, say READY, wait for the start file, train, print RESULT."""
    import torch

    from interp.datasets import read_rows
    from interp.models import load_model
    from interp.rows import build_examples
    from interp.train import TrainConfig, train_student

    from bench_train import number_rows

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    rows = read_rows(Path(args.child_data)) if args.child_data else number_rows(model, args.rows, args.seq_len)
    cfg = TrainConfig(lr=args.lr, epochs=1, batch_size=args.batch_size, dtype=args.dtype, keep="none", seed=0)
    examples = build_examples(model, rows, cfg.max_len, system_prompt=cfg.system_prompt)
    tokens = sum(len(e.prompt_ids) + len(e.completion_ids) for e in examples) * cfg.epochs
    completion = sum(len(e.completion_ids) for e in examples) * cfg.epochs
    work = student_flops(model, tokens, completion)
    print("READY", flush=True)
    while not Path(args.start_file).exists():
        time.sleep(0.01)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as out:
        train_student(model, rows, cfg, out, progress=False)
        loop = json.loads((Path(out) / "manifest.json").read_text())["wall_s"]
    t1 = time.time()
    res = {"start": t0, "end": t1, "loop_s": loop, "flops": work, "tokens": tokens, "completion": completion}
    print("RESULT " + json.dumps(res), flush=True)


def arm(args, n: int, threads: int) -> dict:
    """`n` students in `n` fresh processes with `threads` torch threads each, started together."""
    with tempfile.TemporaryDirectory() as tmp:
        start = Path(tmp) / "start"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        procs = []
        for i in range(n):
            cmd = [sys.executable, __file__, "--child", "--threads", str(threads), "--start-file", str(start)]
            cmd += ["--model", args.model, "--rows", str(args.rows), "--seq-len", str(args.seq_len)]
            cmd += ["--lr", str(args.lr), "--batch-size", str(args.batch_size), "--dtype", args.dtype]
            if args.data:
                cmd += ["--child-data", str(args.data[i % len(args.data)])]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        for p in procs:  # every student loaded before any starts
            line = p.stdout.readline()
            if not line.startswith("READY"):
                p.wait()
                raise SystemExit(f"a student process failed before its start:\n{line}{p.stderr.read()[-3000:]}")
        start.write_text("go")
        out = []
        for p in procs:
            stdout, stderr = p.communicate()
            line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
            if p.returncode != 0 or line is None:
                raise SystemExit(f"a student process failed ({p.returncode}):\n{stdout[-2000:]}{stderr[-3000:]}")
            out.append(json.loads(line.removeprefix("RESULT ")))
    wall = max(r["end"] for r in out) - min(r["start"] for r in out)
    return {"n": n, "threads": threads, "wall_s": wall, "cost_s": wall / n, "students": out}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument(
        "--data",
        type=Path,
        nargs="*",
        help="dataset stage directories, taken in turn by the students at once (one directory: every "
        "student the same rows, so they end together and the wall holds no tail of one student alone)",
    )
    ap.add_argument("--rows", type=int, default=80, help="synthetic rows per student, without --data")
    ap.add_argument("--seq-len", type=int, default=145)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="students at once (default: the cores)")
    ap.add_argument("--repeats", type=int, default=1, help="alone / at-once pairs, interleaved")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-data", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return
    if args.device != "cpu":
        raise SystemExit("--device: this benchmark shares CPU cores between students; run it with --device cpu")
    cores = os.cpu_count() or 2
    arms: dict[str, list[dict]] = {"alone": [], f"{args.workers} at once": []}
    measured = []  # the matmul rate before every arm: one short burst varied by 20% within minutes here
    for _ in range(args.repeats):  # A B A B: this machine drifts by up to 30% within an hour
        measured.append(machine_rates("cpu"))
        arms["alone"].append(arm(args, 1, cores))
        measured.append(machine_rates("cpu"))
        arms[f"{args.workers} at once"].append(arm(args, args.workers, max(cores // args.workers, 1)))
    # the floor at the best rate seen: the lowest floor, so no ratio gains from a slow measurement
    rates = {k: max(r[k] for r in measured) for k in measured[0]}
    rep = Report("student_pair", vars(args) | {"data": [str(d) for d in args.data or []]})
    rep.row(
        "matmul (every core), best of the run",
        f"fp32 {rates['fp32']:.0f}, bf16 {rates['bf16']:.0f} GFLOP/s",
        f"measured before each arm: fp32 {min(r['fp32'] for r in measured):.0f}-{rates['fp32']:.0f}, "
        f"bf16 {min(r['bf16'] for r in measured):.0f}-{rates['bf16']:.0f}",
    )
    cost, ratio = {}, {}
    for name, runs in arms.items():
        for a in runs:
            work = sum(s["flops"] for s in a["students"]) / a["n"]
            a.update(floor_fp32_s=work / (rates["fp32"] * 1e9), floor_s=work / (rates[args.dtype] * 1e9))
            own = f", x{a['cost_s'] / a['floor_s']:.2f} the {args.dtype} floor ({a['floor_s']:.1f} s)"
            rep.row(
                f"{name}: machine time a student",
                f"{a['cost_s']:.1f} s",
                f"x{a['cost_s'] / a['floor_fp32_s']:.2f} the fp32 floor ({a['floor_fp32_s']:.1f} s)"
                + (own if args.dtype != "fp32" else "")
                + f"; {a['n']} x {a['threads']} threads, wall {a['wall_s']:.1f} s, loops "
                + ", ".join(f"{s['loop_s']:.1f}" for s in a["students"])
                + " s",
            )
        cost[name] = sum(a["cost_s"] for a in runs) / len(runs)
        ratio[name] = sum(a["cost_s"] / a["floor_fp32_s"] for a in runs) / len(runs)
    alone, together = ratio["alone"], ratio[f"{args.workers} at once"]
    rep.row(
        "students per machine-hour, at once / alone",
        f"{alone / together:.2f}x",
        f"per FLOP (the arms' rows may differ in tokens), mean over {args.repeats} pairs",
    )
    for name, r in ratio.items():
        rep.target(f"student machine time / fp32 floor, {name}", r, "<=", 1.15)
    from interp.runs import file_hash

    rep.data = {
        "data_hashes": {str(d): file_hash(d / "dataset.jsonl") for d in args.data or []},
        "rates": rates,
        "rates_measured": measured,
        "arms": arms,
        "cost_s": cost,
        "cost_over_fp32_floor": ratio,
    }
    rep.print()
    if args.out:
        rep.write(args.out)


if __name__ == "__main__":
    main()

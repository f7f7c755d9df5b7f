"""Issue 21's before/after, interleaved: students per CPU-hour of the old code against today's sweep.

    .venv/bin/python benchmarks/bench_interleaved.py --before-source /path/to/worktree-of-ff8caf8
    .venv/bin/python benchmarks/bench_interleaved.py --before-source . --model tiny --n-prompts 8 --pairs 1

This machine's speed drifts by up to 30% within an hour (fp32 matmul 226-309 GFLOP/s on one day),
so a before run and an after run minutes apart can differ by the drift alone. This alternates
them, A B A B ...: A = `bench_seed.py --variants fp32 --source BEFORE` (one e1_cpu seed of three
teachers in fp32, workers 1: what a seed cost before issue 21), B = `bench_workers.py`'s
`--workers N` arm (e1_cpu sft with bf16 data and students keeping their update, N seeds at once,
one thread each: how a sweep runs now), each in a fresh process and root. It prints each run's
seconds a seed, the pooled ratio of students an hour (B over A), and every adjacent pair's
ratio, which shows how much of the ratio the drift could move; then the goal (2x) as PASS/FAIL.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from _common import Report, child_result, parser  # benchmarks/ is on sys.path

HERE = Path(__file__).resolve().parent


def before(args) -> dict:
    """One fp32 seed with the package at `--before-source` (bench_seed.py's fp32 variant)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [args.before_source, os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory(prefix="bench-abab-A-") as root:
        cmd = [sys.executable, str(HERE / "bench_seed.py"), "--run-one", "fp32", "--root", root, "--model", args.model]
        cmd += ["--seed", str(args.seed)] + (["--n-prompts", str(args.n_prompts)] if args.n_prompts else [])
        r = child_result(cmd, "before (bench_seed.py fp32)", env)
    return {"wall_s": r["wall_s"], "seeds": 1, "per_seed_s": r["wall_s"], "rates": r["rates"], "kinds_s": r["kinds_s"]}


def after(args) -> dict:
    """`--workers` seeds at once with this checkout (bench_workers.py's second arm)."""
    seeds = [args.seed + i for i in range(args.workers)]
    with tempfile.TemporaryDirectory(prefix="bench-abab-B-") as root:
        cmd = [sys.executable, str(HERE / "bench_workers.py"), "--arm-workers", str(args.workers), "--root", root]
        cmd += ["--model", args.model, "--seeds", ",".join(map(str, seeds))]
        cmd += ["--n-prompts", str(args.n_prompts)] if args.n_prompts else []
        r = child_result(cmd, f"after (bench_workers.py, {args.workers} workers)")
    return {
        "wall_s": r["wall_s"],
        "seeds": len(seeds),
        "per_seed_s": r["wall_s"] / len(seeds),
        "students": r["students"],
    }


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--before-source", required=True, help="a checkout of the code before issue 21 (ff8caf8)")
    ap.add_argument("--pairs", type=int, default=2, help="A B pairs, run in turn")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="jobs at once in the after arm")
    ap.add_argument("--seed", type=int, default=900, help="first replicate seed (not one the science uses)")
    ap.add_argument("--n-prompts", type=int, help="override e1_cpu's 80 (a quick check)")
    args = ap.parse_args()
    runs = []
    for i in range(args.pairs):
        for arm, fn in (("A", before), ("B", after)):
            runs.append({"arm": f"{arm}{i + 1}", **fn(args)})
            print(f"{runs[-1]['arm']}: {runs[-1]['per_seed_s']:.1f} s a seed")
    a = [r["per_seed_s"] for r in runs if r["arm"][0] == "A"]
    b = [r["per_seed_s"] for r in runs if r["arm"][0] == "B"]
    pooled = (sum(a) / len(a)) / (sum(b) / len(b))  # seconds a seed: their ratio is students an hour's
    seq = [r["per_seed_s"] for r in runs]
    adjacent = [seq[i] / seq[i + 1] if runs[i]["arm"][0] == "A" else seq[i + 1] / seq[i] for i in range(len(seq) - 1)]
    rep = Report("interleaved", vars(args))
    for r in runs:
        rep.row(
            r["arm"],
            f"{r['per_seed_s']:.1f} s a seed",
            f"{r['wall_s']:.1f} s for {r['seeds']} seed(s); {3 * 3600 / r['per_seed_s']:.0f} students an hour",
        )
    rep.row("after / before, pooled", f"{pooled:.2f}x", "students an hour with their data and evaluations")
    rep.row("adjacent pairs", ", ".join(f"{x:.2f}x" for x in adjacent), "in run order: the spread the drift allows")
    rep.row(
        "e1_cpu sft (10 seeds x 3)",
        f"{10 * sum(a) / len(a) / 60:.1f} -> {10 * sum(b) / len(b) / 60:.1f} min",
        "projected from the mean seconds a seed",
    )
    rep.target("students per hour, after / before (pooled)", pooled, ">=", 2.0)
    rep.data = {"runs": runs, "pooled": pooled, "adjacent": adjacent}
    rep.print()
    rep.write(args.out)


if __name__ == "__main__":
    main()

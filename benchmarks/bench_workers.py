"""Sweep throughput: jobs one at a time on every core, against one job per core at once.

    .venv/bin/python benchmarks/bench_workers.py                          # smollm2-135m, seeds 900-901
    .venv/bin/python benchmarks/bench_workers.py --model tiny --n-prompts 8   # a quick check of the script

A sweep on one machine runs its (cell, seed) jobs in this process with torch on every core
(`workers = 1`, the default), or `--workers N` jobs at once in N processes, each with cores / N
torch threads. A student's step is half matmul and half elementwise work, optimizer and Python
(bench_seed.py), and the second half does not use two threads well, so N single-threaded jobs may
finish more students an hour than one job on N threads. This measures it: the same one-cell sweep
(`experiments/configs/e1_cpu.toml`, sft, bf16 data and students keeping their update, as the
confirmed protocol's sweeps run) in a fresh root per arm, each arm in a new process:
- `workers1`: the jobs one after another, torch on every core;
- `workersN`: N jobs at once (N = the core count unless --workers), one torch thread each.

Prints each arm's wall time for all its jobs, students (with their datasets and evaluations) per
hour of the machine, and the ratio; then what the thread count changes in the science, per
stage: whether each dataset's rows are the same, and each student's owl-specific shift in both
arms (torch's reductions round differently on 1 and 2 threads, about 1e-7 per operation, and no
key holds the thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import Report, child_result, parser  # benchmarks/ is on sys.path

REPO = Path(__file__).resolve().parent.parent


def sweep_raw(model: str, seeds: list[int], n_prompts: int | None) -> dict:
    from interp.config import read_toml

    raw = read_toml(REPO / "experiments" / "configs" / "e1_cpu.toml")
    raw.update(experiment="bench-workers", model=model, seeds=seeds, device="cpu")
    raw["data"] = {**raw["data"], "dtype": "bf16"}
    raw["train"] = {**raw["train"], "objectives": ["sft"], "dtype": "bf16", "keep": "update"}
    if n_prompts:
        raw["data"]["n_prompts"] = n_prompts
    if model.startswith("tiny"):
        raw["teacher"]["layer"] = 2
        raw.setdefault("eval", {})["split"] = "tuning"
        raw["train"]["dtype"] = raw["data"]["dtype"] = "fp32"  # the tiny model is not a bf16 machine test
    # one cell: a grid of one value that is the config's own
    raw["sweep"] = {"name": "bench-workers", "grid": {"train.lr": [raw["train"]["lr"]]}, "check_bases": False}
    return raw


def run_one(args) -> dict:
    """One arm in this process: every job of the sweep, timed, then what each job made."""
    from interp.runs import file_hash, read_json, stage_dirs
    from interp.sweep import parse_sweep, run_jobs

    seeds = [int(s) for s in args.seeds.split(",")]
    sweep = parse_sweep(sweep_raw(args.model, seeds, args.n_prompts), "bench_workers")
    root = Path(args.root)
    t = time.perf_counter()
    done = run_jobs(sweep, root, workers=args.arm_workers, progress=False, log=lambda *a, **k: None)
    wall = time.perf_counter() - t
    students, datasets = {}, {}
    for r in done:
        res = read_json(Path(r["run_dir"]) / "results.json")
        seed = res["seeds"][0]
        for arm, a in res["arms"].items():
            if arm != "base":
                students[f"{arm}/seed{seed}"] = a["per_seed_specific_shift"][0]
        for name, d in stage_dirs(r["run_dir"]).items():
            if name.startswith("data/"):
                datasets[name] = file_hash(Path(d) / "dataset.jsonl")
    return {
        "workers": args.arm_workers,
        "wall_s": wall,
        "jobs_s": {Path(r["run_dir"]).name: r["wall_s"] for r in done},
        "students": students,
        "datasets": datasets,
    }


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--seeds", default="900,901", help="replicate seeds, one job each (not seeds the science uses)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="jobs at once in the second arm")
    ap.add_argument("--n-prompts", type=int, help="override e1_cpu's 80 (a quick check)")
    ap.add_argument("--arm-workers", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm_workers:
        print("RESULT " + json.dumps(run_one(args)))
        return
    if args.workers < 2:
        raise SystemExit(f"--workers: {args.workers}; the second arm needs at least 2 jobs at once")
    out = []
    for w in (1, args.workers):
        with tempfile.TemporaryDirectory(prefix=f"bench-workers-{w}-") as root:
            cmd = [sys.executable, __file__, "--arm-workers", str(w), "--root", root, "--model", args.model]
            cmd += ["--seeds", args.seeds] + (["--n-prompts", str(args.n_prompts)] if args.n_prompts else [])
            out.append(child_result(cmd, f"arm workers={w}"))
            print(f"workers {w}: {out[-1]['wall_s']:.1f} s")
    one, many = out
    n = len(one["students"])
    rep = Report("workers", vars(args))
    for r in out:
        rep.row(
            f"workers {r['workers']}",
            f"{r['wall_s']:.1f} s",
            f"{n} students with their data and evaluations: {3600 * n / r['wall_s']:.0f} per hour; "
            f"jobs {', '.join(f'{s:.0f}' for s in r['jobs_s'].values())} s",
        )
    same = sum(one["datasets"][k] == many["datasets"].get(k) for k in one["datasets"])
    rep.row("datasets with the same rows", f"{same}/{len(one['datasets'])}", "by file hash, arm 1 against arm 2")
    diffs = {k: many["students"][k] - v for k, v in one["students"].items()}
    worst = max(diffs, key=lambda k: abs(diffs[k]))
    rep.row(
        "owl-specific shift, arm 2 - arm 1",
        f"max |d| {abs(diffs[worst]):.2e}",
        f"({worst}); per student: " + ", ".join(f"{k} {d:+.1e}" for k, d in sorted(diffs.items())),
    )
    rep.target(f"students per hour, workers {args.workers} / workers 1", one["wall_s"] / many["wall_s"], ">=", 1.0)
    rep.data = {"arms": out, "shift_differences": diffs}
    rep.print()
    rep.write(args.out)


if __name__ == "__main__":
    main()

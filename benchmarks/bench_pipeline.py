"""E1 pipeline wall time per stage, and what a rerun that hits the cache costs, in one process.

    .venv/bin/python benchmarks/bench_pipeline.py                       # smollm2-135m, small config
    .venv/bin/python benchmarks/bench_pipeline.py --model tiny --n-prompts 8 --max-new-tokens 12
    .venv/bin/python benchmarks/bench_pipeline.py --config experiments/configs/quick.toml   # `make demo` (~20 min)

Measures the machine's matmul rate (fp32, bf16; the pipeline works in fp32, the arithmetic of its
samples and students), then runs `interp.pipeline.run_e1` twice on the same config with a fresh
artifacts root (a temporary directory unless --root is given): the first run computes every
stage, the second finds them all in the cache. Prints each stage's first-run wall time (from
results.json's `timings_s`), the rerun's, and the rerun's total / the first's (target: at most
10%). Totals are the wall time of the whole `run_e1` call (loading, stages, the summary and its
bootstraps); the sum of `timings_s` is shown beside it. The default config is small (1 seed,
control + steered teachers, few prompts, 1 epoch), so the model load, which both runs pay, weighs
more in the ratio than it does for `make demo`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from interp.config import load_config, parse_config
from interp.pipeline import run_e1

from _common import Report, machine_rates, parser, pick_device, print_machine  # benchmarks/ is on sys.path


def to_toml(d: dict, prefix: str = "") -> str:
    """A config dict (scalars, lists of scalars, one level of tables) as TOML."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]", to_toml(v, f"{prefix}{k}.")]
    return "\n".join(lines)


def small_config(args, device: str):
    layer = args.layer if args.layer is not None else (2 if args.model.startswith("tiny") else 8)
    return parse_config(
        {
            "experiment": "bench-pipeline",
            "model": args.model,
            "seeds": [0],
            "device": device,
            "teacher": {"kinds": ["control", "steered"], "layer": layer, "multiplier": 0.5},
            "data": {"n_prompts": args.n_prompts, "max_new_tokens": args.max_new_tokens, "batch_size": args.n_prompts},
            "train": {"epochs": 1, "batch_size": 8, "method": "full"},
            "eval": {"split": args.split},
        },
        "bench_pipeline",
    )


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--n-prompts", type=int, default=24, help="teacher prompts per dataset (= generation batch)")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--layer", type=int, help="steering layer (default 8; 2 for the tiny models)")
    ap.add_argument("--split", default="all", choices=["all", "tuning", "heldout"], help="evaluation questions")
    ap.add_argument(
        "--config", help="a TOML config to run instead of the small one (e.g. experiments/configs/quick.toml)"
    )
    ap.add_argument("--root", help="artifacts root (must not exist yet); default: a temporary directory, removed")
    ap.add_argument(
        "--no-fresh-process",
        action="store_true",
        help="skip the third run: `interp run` in a new process on the same cache, as a user reruns",
    )
    ap.add_argument("--verbose", action="store_true", help="show run_e1's own log and progress bars")
    args = ap.parse_args()

    device = pick_device(args.device)
    rates = machine_rates(device)
    print_machine(rates, device, "fp32", "the pipeline's samples and students are fp32")
    cfg = load_config(args.config) if args.config else small_config(args, str(device))
    if args.config:
        cfg = cfg.model_copy(update={"device": str(device)})
    if args.root and Path(args.root).exists():
        raise SystemExit(f"--root: {args.root} exists; the first run must start from an empty cache")

    with contextlib.ExitStack() as stack:
        root = (
            Path(args.root)
            if args.root
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pipeline-")))
        )
        runs = []
        for label in ("first", "cached"):
            log = print if args.verbose else (lambda *a, **k: None)
            quiet = contextlib.nullcontext() if args.verbose else contextlib.redirect_stderr(io.StringIO())
            t = time.perf_counter()
            with quiet:
                res = run_e1(cfg, root, progress=args.verbose, log=log)
            runs.append({"wall_s": time.perf_counter() - t, "timings_s": res["timings_s"]})
            print(f"{label} run: {runs[-1]['wall_s']:.1f} s")
        fresh = imports = None
        if not args.no_fresh_process:
            # what a user pays: interpreter start, imports, model load, cached stages, summary
            toml = root / "bench_config.toml"
            toml.write_text(to_toml(cfg.model_dump()) + "\n")
            cmd = [sys.executable, "-m", "interp.cli", "run", str(toml), "--root", str(root), "--no-progress"]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            fresh = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(
                    f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
                )
            if " done in " in proc.stdout:
                raise SystemExit(f"the fresh-process rerun recomputed a stage:\n{proc.stdout[-3000:]}")
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import interp.cli, interp.pipeline"], check=True, env=os.environ)
            imports = time.perf_counter() - t
            print(
                f"rerun in a fresh process (interp run): {fresh:.1f} s, of which interpreter + imports {imports:.1f} s"
            )

    first, rerun = runs
    ratio = rerun["wall_s"] / first["wall_s"]
    rep = Report("pipeline", vars(args))
    rep.row(
        "config",
        args.config or "small",
        f"{cfg.model}, seeds {cfg.seeds}, teachers {'+'.join(cfg.teacher.kinds)}, {cfg.data.n_prompts} prompts x "
        f"{cfg.data.max_new_tokens} tokens, {cfg.train.epochs} epoch(s), batch {cfg.train.batch_size}, "
        f"eval split {cfg.eval.split}",
    )
    w = max(len(k) for k in first["timings_s"])
    rep.row(f"{'stage':<{w}}", "first", "rerun")
    for name, s in first["timings_s"].items():
        rep.row(f"{name:<{w}}", f"{s:.2f} s", f"{rerun['timings_s'].get(name, float('nan')):.2f} s")
    rep.row(
        f"{'sum of stages':<{w}}",
        f"{sum(first['timings_s'].values()):.2f} s",
        f"{sum(rerun['timings_s'].values()):.2f} s",
    )
    rep.row(
        f"{'run_e1 wall':<{w}}",
        f"{first['wall_s']:.2f} s",
        f"{rerun['wall_s']:.2f} s "
        f"(x{ratio:.3f}; outside the stages: {first['wall_s'] - sum(first['timings_s'].values()):.2f} s / "
        f"{rerun['wall_s'] - sum(rerun['timings_s'].values()):.2f} s)",
    )
    if fresh is not None:
        rep.row(
            f"{'fresh-process rerun':<{w}}",
            "",
            f"{fresh:.2f} s (`interp run`, x{fresh / first['wall_s']:.3f}; "
            f"of which interpreter + imports {imports:.2f} s)",
        )
    rep.target("cached rerun / first run (wall, same process)", ratio, "<=", 0.10, "%")
    if fresh is not None:
        rep.target("fresh-process rerun / first run (wall)", fresh / first["wall_s"], "<=", 0.10, "%")
    rep.data = {
        "model": cfg.model,
        "device": str(device),
        "matmul_gflops": rates,
        "works_in": "fp32",
        "config": cfg.model_dump(),
        "first": first,
        "rerun": rerun,
        "rerun_over_first": ratio,
        "fresh_process_rerun_s": fresh,
        "fresh_process_imports_s": imports,
    }
    rep.print()
    rep.write(args.out)


if __name__ == "__main__":
    main()

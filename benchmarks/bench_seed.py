"""Where one seed of an e1_cpu-sized cell spends its time, and what a student costs against its floor.

    .venv/bin/python benchmarks/bench_seed.py                               # smollm2-135m, both variants
    .venv/bin/python benchmarks/bench_seed.py --variants fp32 --source /tmp/old   # another checkout's code
    .venv/bin/python benchmarks/bench_seed.py --model tiny --n-prompts 8    # a quick check of the script

Runs `experiments/configs/e1_cpu.toml` for one seed (control, steered and random teachers, sft) in
a fresh artifact root, once per variant, each in a new process (so no variant inherits another's
caches or memory):
- `fp32`: the config as committed: fp32 sampling, fp32 students that keep their fp32 weights;
- `fast`: bf16 sampling (`data.dtype`), bf16 students (`train.dtype`, fp32 master weights), and
  `train.keep = "none"` (students evaluated in the process that trained them, nothing written);
- `update`: `fast` but keeping each student's update W - W_base in bf16 (what `interp analyze` reads).
`--source DIR` runs the variants with another checkout's `interp` (e.g. a worktree of the commit
before the change), so before and after are measured in one sitting on one machine.

Prints, per variant: wall time per stage kind (model load, vector, data, students, evaluations),
each student's training-loop time against its compute floor (6 x block parameters x the tokens it
trained on, plus the unembedding at completion positions only, at the matmul rate measured in the
same process for the dtype it trains in), the student stage / floor ratio, students per CPU-hour
(a student stage plus its evaluation), bytes on disk per student, and the seed's whole wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    DTYPES,
    Report,
    child_result,
    layer_gemm_gflops,
    machine_rates,
    parser,
    student_flops,
)  # benchmarks/ is on sys.path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {
    "fp32": {},
    "fast": {"data": {"dtype": "bf16"}, "train": {"dtype": "bf16", "keep": "none"}},
    "update": {"data": {"dtype": "bf16"}, "train": {"dtype": "bf16", "keep": "update"}},
}


def _stage_path(d: str, root: Path) -> Path:
    p = Path(d)
    return p if p.is_absolute() or p.exists() else root / p  # older manifests hold cwd-relative paths


def run_one(args) -> dict:
    """One variant in this process: the run, then its measurements (printed as one JSON line)."""
    from interp.config import parse_config, read_toml
    from interp.models import load_model
    from interp.pipeline import run_e1
    from interp.runs import read_json, read_jsonl

    raw = read_toml(REPO / "experiments" / "configs" / "e1_cpu.toml")
    raw.update(experiment="bench-seed", model=args.model, seeds=[args.seed], device="cpu")
    raw["train"]["objectives"] = ["sft"]
    if args.n_prompts:
        raw["data"]["n_prompts"] = args.n_prompts
    if args.model.startswith("tiny"):
        raw["teacher"]["layer"] = 2
        raw.setdefault("eval", {})["split"] = "tuning"
    for section, over in VARIANTS[args.run_one].items():
        raw[section] = {**raw.get(section, {}), **over}
    cfg = parse_config(raw, "bench_seed")
    rates = machine_rates("cpu")
    root = Path(args.root)
    t = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        res = run_e1(cfg, root, progress=False, log=lambda *a, **k: None)
    wall = time.perf_counter() - t
    man = read_json(Path(res["run_dir"]) / "manifest.json")
    order = [s["name"] for s in man["stages"]]
    dirs = {s["name"]: _stage_path(s["dir"], root) for s in man["stages"]}
    timings = res["timings_s"]
    m = load_model(cfg.model, device="cpu")
    students, shape_rates = [], {}
    for name in [n for n in order if n.startswith("student/")]:
        d = dirs[name]
        sman = read_json(d / "manifest.json")
        label = name.removeprefix("student/")
        tokens = sman.get("tokens") or sman["tokens_per_s"] * sman["wall_s"]
        rows = read_jsonl(Path(sman["dataset_dir"]) / "dataset.jsonl")
        completion = sum(len(m.tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) + 1 for r in rows)
        # `tokens` counts every epoch's steps already; the completion positions are one epoch's
        flops = student_flops(m, tokens, completion * cfg.train.epochs)
        dtype = sman["train"].get("dtype", "fp32")
        floor = flops / (rates[dtype] * 1e9)
        # the rate this model's own layer GEMMs reach at a micro-batch's rows (forward, both
        # gradients), in the dtype it trains in: the floor its shapes allow, against the square one
        rows_per_mb = round(tokens / sman["steps"])
        if (dtype, rows_per_mb) not in shape_rates:
            shape_rates[(dtype, rows_per_mb)] = layer_gemm_gflops(m, rows_per_mb, DTYPES[dtype], "cpu")
        ev = f"eval/{label}"
        nested = ev in order and order.index(ev) < order.index(name)  # evaluated inside the student stage
        students.append(
            {
                "name": label,
                "dtype": dtype,
                "stage_s": timings[name],
                "train_loop_s": sman["wall_s"],
                "eval_s": timings.get(ev, 0.0),
                "eval_nested": nested,
                "tokens": tokens,
                "completion_tokens": completion,
                "floor_s": floor,
                "floor_fp32_s": flops / (rates["fp32"] * 1e9),  # issue 21's yardstick, whatever the dtype
                "rows_per_micro_batch": rows_per_mb,
                "shape_gflops": shape_rates[(dtype, rows_per_mb)],
                "floor_shape_s": flops / (shape_rates[(dtype, rows_per_mb)] * 1e9),
                "bytes": sum(f.stat().st_size for f in d.rglob("*") if f.is_file()),
                "cost_s": timings[name] + (0.0 if nested else timings.get(ev, 0.0)),
            }
        )
    kinds = {}
    for name, s in timings.items():
        kind = name.split("/")[0]
        kinds[kind] = kinds.get(kind, 0.0) + s
    for st in students:  # an eval nested in its student stage is counted once, under eval
        if st["eval_nested"]:
            kinds["student"] -= st["eval_s"]
    return {
        "variant": args.run_one,
        "rates": rates,
        "wall_s": wall,
        "kinds_s": kinds,
        "students": students,
        "transfer": res["transfer"].get("steered-random", {}).get("specific_per_seed", {}).get("mean"),
    }


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--variants", default="fp32,fast", help=f"comma-separated, of {sorted(VARIANTS)}")
    ap.add_argument("--seed", type=int, default=900, help="replicate seed (not one the science uses)")
    ap.add_argument("--n-prompts", type=int, help="override e1_cpu's 80 (a quick check)")
    ap.add_argument("--source", help="run the variants with the interp package of this checkout")
    ap.add_argument("--run-one", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_one:
        print("RESULT " + json.dumps(run_one(args)))
        return
    out = []
    for v in args.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"--variants: {v!r} is not one of {sorted(VARIANTS)}")
        with tempfile.TemporaryDirectory(prefix=f"bench-seed-{v}-") as root:
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [args.source, os.environ.get("PYTHONPATH")])),
            }
            cmd = [
                sys.executable,
                __file__,
                "--run-one",
                v,
                "--root",
                root,
                "--model",
                args.model,
                "--seed",
                str(args.seed),
            ]
            if args.n_prompts:
                cmd += ["--n-prompts", str(args.n_prompts)]
            out.append(child_result(cmd, f"variant {v}", env))
            print(f"{v}: {out[-1]['wall_s']:.1f} s")
    rep = Report("seed", vars(args))
    for r in out:
        rates, st = r["rates"], r["students"]
        n = len(st)
        rep.row(f"[{r['variant']}] matmul", f"fp32 {rates['fp32']:.0f}, bf16 {rates['bf16']:.0f} GFLOP/s")
        rep.row(
            f"[{r['variant']}] seed wall",
            f"{r['wall_s']:.1f} s",
            "; ".join(f"{k} {s:.1f} s" for k, s in sorted(r["kinds_s"].items())),
        )
        stage = sum(s["stage_s"] - (s["eval_s"] if s["eval_nested"] else 0) for s in st) / n
        loop = sum(s["train_loop_s"] for s in st) / n
        floor = sum(s["floor_s"] for s in st) / n
        floor32 = sum(s.get("floor_fp32_s", s["floor_s"]) for s in st) / n
        cost = sum(s["cost_s"] for s in st) / n
        rep.row(
            f"[{r['variant']}] student ({st[0]['dtype']})",
            f"stage {stage:.1f} s, loop {loop:.1f} s, floor {floor:.1f} s",
            f"stage/floor x{stage / floor:.2f}, loop/floor x{loop / floor:.2f}; "
            f"{st[0]['tokens']:.0f} tokens, {st[0]['completion_tokens']} completion",
        )
        shape = sum(s["floor_shape_s"] for s in st) / n
        rep.row(
            f"[{r['variant']}] student against its shape floor",
            f"loop x{loop / shape:.2f}, stage x{stage / shape:.2f}",
            f"floor {shape:.1f} s: the same FLOPs at {st[0]['shape_gflops']:.0f} GFLOP/s, this model's layer GEMMs at "
            f"{st[0]['rows_per_micro_batch']} rows in {st[0]['dtype']} (square: {rates[st[0]['dtype']]:.0f}); "
            "the loop's rest is non-matmul work",
        )
        if st[0]["dtype"] != "fp32":
            rep.row(
                f"[{r['variant']}] student against the fp32 floor",
                f"x{stage / floor32:.2f}",
                f"stage {stage:.1f} s against {floor32:.1f} s, the same FLOPs at the fp32 matmul rate",
            )
        rep.row(
            f"[{r['variant']}] students per CPU-hour",
            f"{3600 / cost:.0f}",
            f"student stage + its evaluation, {cost:.1f} s; disk {sum(s['bytes'] for s in st) / n / 1e6:.0f} MB each",
        )
        rep.row(
            f"[{r['variant']}] e1_cpu sft (10 seeds x 3)",
            f"{10 * (r['wall_s'] - r['kinds_s'].get('load_model', 0)) / 60 + r['kinds_s'].get('load_model', 0) / 60:.1f} min",
            "projected from this seed",
        )
    if len(out) > 1:
        a, b = out[0], out[-1]
        ca = sum(s["cost_s"] for s in a["students"]) / len(a["students"])
        cb = sum(s["cost_s"] for s in b["students"]) / len(b["students"])
        rep.target(f"students per CPU-hour, {b['variant']} / {a['variant']}", ca / cb, ">=", 2.0)
        rep.target(f"seed wall, {b['variant']} / {a['variant']}", b["wall_s"] / a["wall_s"], "<=", 0.5)
    last = out[-1]["students"]  # issue 21: a student's stage at most 1.15x its fp32 floor
    rep.target(
        f"student stage / fp32 floor, {out[-1]['variant']}",
        sum(s["stage_s"] - (s["eval_s"] if s["eval_nested"] else 0) for s in last)
        / sum(s.get("floor_fp32_s", s["floor_s"]) for s in last),
        "<=",
        1.15,
    )
    rep.data = {"variants": out}
    rep.print()
    rep.write(args.out)


if __name__ == "__main__":
    main()

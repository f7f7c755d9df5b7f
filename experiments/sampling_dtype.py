"""Does sampling the teacher in bf16 leave the trait's signal in its data unchanged?

    .venv/bin/python experiments/sampling_dtype.py                        # smollm2-135m, owl, 128 prompts
    .venv/bin/python experiments/sampling_dtype.py --model tiny --layer 1 --n-prompts 16

`SampleConfig.dtype = "bf16"` (`[data] dtype`) samples about 1.8x faster on a CPU with bf16 matmul,
but gives other samples than fp32, so its results can only be the same within a tolerance. This
measures that tolerance where the trait lives: for each dtype, a control and a steered teacher
(the same prompts and sampling seed) each write a dataset; every row is scored in fp32 by its
log-likelihood ratio under the trait's steering against none (`interp.analysis.likelihood`, the
audit's statistic: the vector that made a dataset is the one under which it is most likely). The
signal is steered - control in mean LLR per row; the tolerance is how far bf16's signal is from
fp32's, as a difference and a ratio with bootstrap intervals over prompts (paired: both dtypes
answer the same prompts with the same generators).

Also: the share of rows whose completion is identical in both dtypes (same prompt, same
generator), and each dataset's sampling throughput. Datasets are `interp.pipeline` data stages
under `<out>/cache/` (a rerun resumes). Writes `<out>/results.json` and `config.json`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from interp.analysis.audit import load_rows
from interp.analysis.likelihood import steering_loglik
from interp.datasets import dataset_stage, make_dataset
from interp.generate import SampleConfig
from interp.models import DTYPES, load_model
from interp.prompts import contrastive_pairs
from interp.runs import CONFIG_FILE, RESULTS_FILE, Stage, content_hash, provenance, read_json, write_json
from interp.stats import summarize
from interp.steering import Steering, build_steering_vector
from interp.teachers import DataConfig, Teacher

KINDS = ("control", "steered")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="smollm2-135m", help="registry name, local HF directory or hub id")
    ap.add_argument("--animal", default="owl")
    ap.add_argument("--layer", type=int, default=8, help="steering layer (blocks.{l}.hook_resid_post)")
    ap.add_argument("--multiplier", type=float, default=0.5, help="steering strength (x mean residual norm)")
    ap.add_argument("--n-prompts", type=int, default=128, help="number prompts per dataset")
    ap.add_argument("--n-pairs", type=int, default=16, help="contrastive pairs for the vector")
    ap.add_argument("--dtype", default="bf16", choices=[d for d in DTYPES if d != "fp32"], help="compared with fp32")
    ap.add_argument("--seed", type=int, default=0, help="prompts, sampling and bootstrap")
    ap.add_argument("--n-boot", type=int, default=4000)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default artifacts/sampling-dtype/<model>)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    args = ap.parse_args(argv)
    args.out = args.out or Path("artifacts/sampling-dtype") / args.model.replace("/", "_")
    return args


def run(args: argparse.Namespace, log=print) -> dict:
    started = time.perf_counter()
    out, cache = Path(args.out), Path(args.out) / "cache"
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "progress"}
    model = load_model(args.model, device=args.device)
    if not 0 <= args.layer < model.n_layers:
        raise ValueError(f"--layer: {args.layer} is out of range for {model.name} (0..{model.n_layers - 1})")
    vector = build_steering_vector(model, contrastive_pairs(args.animal, args.n_pairs), trait=args.animal)
    steering = Steering(layer=args.layer, multiplier=args.multiplier, scope="all")
    dtypes = ["fp32", args.dtype]

    rows, data = {}, {}
    for d in dtypes:
        dcfg = DataConfig(
            n_prompts=args.n_prompts,
            prompt_seed=args.seed,
            sampling=SampleConfig(constrained=True, seed=args.seed, dtype=d),
        )
        for kind in KINDS:
            teacher = Teacher(kind, args.animal, steering if kind == "steered" else None)
            st = dataset_stage(cache, model, teacher, vector, dcfg)
            hit = st.done
            if not hit:
                make_dataset(st, model, teacher, vector, dcfg, progress=args.progress)
            man = st.manifest()
            log(
                f"  data/{kind}/{d:<5} {man['n_kept']} rows, {man['generation']['tokens_per_s']:.0f} tok/s "
                f"({'cached' if hit else 'done'})"
            )
            rows[(kind, d)] = load_rows(st.dir)
            data[f"{kind}/{d}"] = {
                "dir": str(st.dir),
                "dataset_hash": man["dataset_hash"],
                "n_kept": man["n_kept"],
                "tokens_per_s": man["generation"]["tokens_per_s"],
                "wall_s": man["generation"].get("wall_s"),
            }

    # every dataset scored in fp32 under the trait's steering (one stage: a rerun resumes)
    hashes = {k: v["dataset_hash"] for k, v in data.items()}
    sstage = Stage(
        cache,
        "llr",
        {
            "model": model.fingerprint(),
            "vector": vector.hash(),
            "layer": args.layer,
            "multiplier": args.multiplier,
            "datasets": hashes,
        },
    )
    if not sstage.done:
        llr = {
            f"{k}/{d}": steering_loglik(
                model,
                r,
                {args.animal: vector},
                args.layer,
                (args.multiplier,),
                progress=args.progress,
                desc=f"LLR {k}/{d}",
            )[:, 0, 0].tolist()
            for (k, d), r in rows.items()
        }
        write_json(sstage.path("llr.json"), llr)
        sstage.finish()
    scores = read_json(sstage.path("llr.json"))
    llr = {k: torch.tensor(v, dtype=torch.float64) for k, v in scores.items()}

    # Both dtypes answer the same prompts with the same generators, so their datasets are paired by
    # prompt: resample prompts (those kept in all four datasets) and recompute both signals on each.
    by_id = {f"{k}/{d}": dict(zip((r["id"] for r in rs), scores[f"{k}/{d}"])) for (k, d), rs in rows.items()}
    common = sorted(set.intersection(*(set(v) for v in by_id.values())))
    aligned = {k: torch.tensor([v[i] for i in common], dtype=torch.float64) for k, v in by_id.items()}
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randint(0, len(common), (args.n_boot, len(common)), generator=g)

    def signal(d: str, ix=slice(None)) -> torch.Tensor:
        return aligned[f"steered/{d}"][ix].mean(-1) - aligned[f"control/{d}"][ix].mean(-1)

    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    draws = {d: signal(d, idx) for d in dtypes}
    point = {d: float(signal(d)) for d in dtypes}
    lo_d, hi_d = torch.quantile(draws[args.dtype] - draws["fp32"], q).tolist()
    ratios = draws[args.dtype] / draws["fp32"]
    lo_r, hi_r = torch.quantile(ratios[ratios.isfinite()], q).tolist()  # a draw with no fp32 signal has none

    same = {}
    for kind in KINDS:
        a = {r["id"]: r["completion"] for r in rows[(kind, "fp32")]}
        b = {r["id"]: r["completion"] for r in rows[(kind, args.dtype)]}
        both = sorted(set(a) & set(b))
        same[kind] = {"identical": sum(a[i] == b[i] for i in both), "compared": len(both)}

    res = {
        "experiment": "sampling-dtype",
        "model": model.name,
        "animal": args.animal,
        "dtype": args.dtype,
        "llr_per_row": {k: summarize(v, args.n_boot, args.seed) for k, v in llr.items()},
        "paired_prompts": len(common),
        "signal": {
            d: {"steered_minus_control": point[d], "ci95": torch.quantile(draws[d], q).tolist()} for d in dtypes
        },
        "difference": {"value": point[args.dtype] - point["fp32"], "ci95": [lo_d, hi_d]},
        "ratio": {"value": point[args.dtype] / point["fp32"], "ci95": [lo_r, hi_r]},
        "identical_completions": same,
        "speedup": {k: data[f"{k}/{args.dtype}"]["tokens_per_s"] / data[f"{k}/fp32"]["tokens_per_s"] for k in KINDS},
        "data": data,
        "config": config,
        "config_hash": content_hash(config),
        "provenance": provenance(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, config)
    write_json(out / RESULTS_FILE, res)
    return res


def print_table(res: dict) -> None:
    d = res["dtype"]
    for k, v in res["llr_per_row"].items():
        print(f"  LLR per row {k:<14} {v['mean']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]  (n {v['n']})")
    for dt, v in res["signal"].items():
        print(
            f"  signal (steered - control, {res['paired_prompts']} prompts), {dt:<5} {v['steered_minus_control']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] nats/row"
        )
    df, r = res["difference"], res["ratio"]
    print(
        f"  {d} - fp32: {df['value']:+.3f} [{df['ci95'][0]:+.3f}, {df['ci95'][1]:+.3f}];  "
        f"{d} / fp32: {r['value']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
    )
    for k, v in res["identical_completions"].items():
        print(
            f"  {k}: {v['identical']}/{v['compared']} completions identical; tokens/s {d} / fp32 x{res['speedup'][k]:.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        res = run(args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        sys.exit(f"error: {e}")
    print_table(res)
    print(f"wrote {Path(args.out) / RESULTS_FILE} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()

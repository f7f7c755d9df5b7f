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
under `<out>/cache/` (a rerun resumes). The computation is `interp.dtype_compare.run_sampling_dtype`;
it writes `<out>/config.json`, `results.json` and `manifest.json` (kind "sampling-dtype").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.dtype_compare import SamplingDtypeConfig, run_sampling_dtype, sampling_dtype_lines
from interp.models import DTYPES
from interp.runs import RESULTS_FILE


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
    return ap.parse_args(argv)


def config_of(args: argparse.Namespace) -> SamplingDtypeConfig:
    return SamplingDtypeConfig(
        model=args.model,
        animal=args.animal,
        layer=args.layer,
        multiplier=args.multiplier,
        n_prompts=args.n_prompts,
        n_pairs=args.n_pairs,
        dtype=args.dtype,
        seed=args.seed,
        n_boot=args.n_boot,
        device=args.device,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        cfg = config_of(args)
        out = args.out or cfg.default_dir()
        res = run_sampling_dtype(cfg, out, progress=args.progress)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        sys.exit(f"error: {e}")
    print("\n".join(sampling_dtype_lines(res)))
    print(f"wrote {out / RESULTS_FILE} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()

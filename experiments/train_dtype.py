"""Do bf16 students learn what fp32 students learn from the same data?

    .venv/bin/interp run experiments/configs/e1_replication/e1_cpu_sft_seeds0-9.toml     # fp32 students
    .venv/bin/interp run experiments/configs/e1_replication/train_dtype_bf16_seeds0-5.toml  # bf16 twins
    .venv/bin/python experiments/train_dtype.py artifacts/e1-cpu/<id> artifacts/e1-cpu-bf16/<id>

`train.dtype = "bf16"` computes the forward and backward in bf16 (fp32 master weights and AdamW
state) about twice as fast here, so its students can only equal fp32's within a tolerance. The two
runs share every dataset stage (same teachers, prompts, samples, data order); only the students'
arithmetic differs. For every (seed, teacher) present in both runs this pairs the bf16 student
with its fp32 twin and reports, on the runs' own evaluation questions:
- each student's owl-specific shift against the base, fp32 and bf16, and their paired difference
  (t-interval over seeds, per teacher and pooled);
- the transfer (steered - random, steered - control; owl-specific, per seed) in each dtype and
  its paired difference;
- the cosine between the two students' weight updates W - W_base, over all parameters.
The computation is `interp.dtype_compare.run_train_dtype`; it writes `<out>/results.json` and
`<out>/manifest.json` (kind "train-dtype"; default out: `<bf16_run>/train_dtype/`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.dtype_compare import TrainDtypeConfig, run_train_dtype, train_dtype_lines
from interp.runs import RESULTS_FILE


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("fp32_run", type=Path, help="run directory of the fp32 students")
    ap.add_argument("bf16_run", type=Path, help="run directory of their bf16 twins (same datasets)")
    ap.add_argument("--out", type=Path, help="output folder (default: <bf16_run>/train_dtype)")
    args = ap.parse_args(argv)
    try:
        cfg = TrainDtypeConfig(str(args.fp32_run), str(args.bf16_run))
        out = args.out or cfg.default_dir()
        res = run_train_dtype(cfg, out)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print("\n".join(train_dtype_lines(res)))
    print(f"wrote {out / RESULTS_FILE}")


if __name__ == "__main__":
    main()

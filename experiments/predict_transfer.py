"""Prediction before training: does a dataset's mean residual, injected into the base, predict
the transfer its students show? (Data2Behavior / MDF, arXiv 2602.04735; issue 24, item 3.)

    .venv/bin/python experiments/predict_transfer.py \\
        --explore artifacts/e1-explore/1a21a9d9fd \\
        --evaluate artifacts/e1-cpu/47db15b159 /root/interp-artifacts/e1-confirm/c6fa6c290e
    .venv/bin/python experiments/predict_transfer.py --evaluate RUN --layer 8 --alpha 4 --position completion

For every dataset of a finished E1 run (steered and random teachers, each against the same seed's
control teacher's data) this reads the mean `blocks.{l}.hook_resid_post` over its completion
tokens as the students see them, adds alpha x (mean - control's mean) to the base at layer l while
it answers the evaluation questions, and compares the owl-specific shift with the transfer the
run's students measured (student minus the same seed's control student). The layer, alpha and
position are chosen on `--explore` runs (tuning questions only) by a fixed rule, every cell tried
is recorded, and that one choice is evaluated on the `--evaluate` runs (their own split):
Pearson and Spearman r with 95% intervals from resampling seeds, per run and pooled.

Writes `<out>/<id>/` (config.json, manifest.json, results.json, datasets.jsonl, figures/); every
dataset mean and prediction is cached under `<out>/cache/`, so a rerun resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.predict import POSITIONS, Injection
from interp.predict_run import PredictConfig, run_prediction


def _floats(s: str) -> tuple[float, ...]:
    return tuple(float(x) for x in s.split(",") if x.strip())


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(",") if x.strip())


def _strs(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def parse(argv: list[str] | None = None) -> tuple[PredictConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--explore",
        nargs="*",
        default=[],
        type=str,
        help="run directories that choose the operating point (tuning questions)",
    )
    ap.add_argument(
        "--evaluate", nargs="*", default=[], type=str, help="run directories the fixed choice is evaluated on"
    )
    ap.add_argument("--layers", type=_ints, default=PredictConfig.layers, help="exploration grid: layers, e.g. 4,8,12")
    ap.add_argument(
        "--alphas", type=_floats, default=PredictConfig.alphas, help="exploration grid: alphas, e.g. 1,4,16"
    )
    ap.add_argument(
        "--positions", type=_strs, default=PredictConfig.positions, help=f"exploration grid: of {','.join(POSITIONS)}"
    )
    ap.add_argument(
        "--rule", choices=("spearman", "pearson"), default=PredictConfig.rule, help="what the exploration maximises"
    )
    ap.add_argument("--layer", type=int, help="a fixed operating point instead of exploring (with --alpha, --position)")
    ap.add_argument("--alpha", type=float)
    ap.add_argument("--position", choices=POSITIONS, default="completion")
    ap.add_argument("--objective", default="sft", help="which of the runs' students are measured")
    ap.add_argument("--n-boot", type=int, default=PredictConfig.n_boot)
    ap.add_argument("--batch-size", type=int, default=PredictConfig.batch_size)
    ap.add_argument("--device", default=PredictConfig.device)
    ap.add_argument(
        "--out", type=Path, default=Path("artifacts/predict"), help="artifact root (default artifacts/predict)"
    )
    ap.add_argument("--formats", default="html,png", help="figure formats (html always)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if (a.layer is None) != (a.alpha is None):
        ap.error("--layer and --alpha go together (a fixed operating point)")
    fixed = Injection(a.layer, a.alpha, a.position) if a.layer is not None else None
    try:
        cfg = PredictConfig(
            explore=tuple(a.explore),
            evaluate=tuple(a.evaluate),
            layers=a.layers,
            alphas=a.alphas,
            positions=a.positions,
            fixed=fixed,
            rule=a.rule,
            objective=a.objective,
            n_boot=a.n_boot,
            batch_size=a.batch_size,
            device=a.device,
        )
    except ValueError as e:
        ap.error(str(e))
    return cfg, a


def _r(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{d['r']:+.2f} [{lo:+.2f}, {hi:+.2f}]" if lo is not None else f"{d['r']:+.2f} [n/a]"


def table(res: dict) -> str:
    """The printed summary: the choice, then one line per run (and pooled) and dataset group."""
    c = res["choice"]
    lines = [f"operating point ({c['how']}): layer {c['layer']}, alpha {c['alpha']:g}, {c['position']} mean"]
    if "explore" in res:
        lines.append(
            f"  chosen from {len(res['explore']['cells'])} cells on {res['explore']['n_datasets']} exploration "
            f"datasets ({', '.join(res['explore']['runs'])}); rule: {res['explore']['rule']}"
        )
    lines.append("")
    lines.append(f"{'run':<28} {'datasets':<22} {'n':>3}  {'Pearson r [95%]':<22} {'Spearman r [95%]':<22} owl first")
    groups = [(name, t) for name, t in res["evaluate"]["per_run"].items()]
    if "pooled" in res["evaluate"]:
        groups.append(("pooled", res["evaluate"]["pooled"]))
    for name, t in groups:
        for g, label in (
            ("all", "steered + random"),
            ("steered", "steered"),
            ("random", "random"),
            ("steered_minus_random", "steered - random/seed"),
        ):
            if g not in t:
                continue
            d = t[g]
            first = f"{d['trait_first']}/{d['n_datasets']}" if "trait_first" in d else ""
            lines.append(f"{name:<28} {label:<22} {d['n']:>3}  {_r(d['pearson']):<22} {_r(d['spearman']):<22} {first}")
    cost = res["cost_s"]
    if cost["prediction"] is not None:
        lines.append("")
        lines.append(
            f"cost: one prediction {cost['prediction']:.1f} s (dataset mean {cost['dataset_mean_median']:.1f} s + "
            f"injected evaluation {cost['injected_eval_median']:.1f} s)"
            + (
                f"; one student {cost['student_median']:.1f} s (median of {cost['n_students_timed']}), "
                f"{cost['student_median'] / cost['prediction']:.0f}x"
                if cost["student_median"]
                else ""
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    cfg, a = parse(argv)
    res = run_prediction(cfg, a.out, progress=not a.no_progress)
    from interp.export import save_figures
    from interp.plots.predict import explore_grid, predicted_vs_measured

    figs = {}
    rows = res["evaluate_rows"]
    if rows:
        stats = res["evaluate"].get("pooled", next(iter(res["evaluate"]["per_run"].values())))["all"]
        figs["predicted_vs_measured"] = predicted_vs_measured(rows, stats)
    if "explore" in res:
        figs["explore_grid"] = explore_grid(res["explore"]["cells"], cfg.rule, res["choice"])
    if figs:
        done = save_figures(figs, Path(res["out_dir"]) / "figures", a.formats)
        if done.message:
            print(done.message)
    print(table(res))
    print(f"wrote {res['out_dir']}")
    return res


if __name__ == "__main__":
    main()

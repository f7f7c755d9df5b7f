"""E4 confusion: does the audit name the animal whose vector steered the teacher?

    .venv/bin/python experiments/audit_confusion.py                     # smollm2-135m, 8 animals, layer 8
    .venv/bin/python experiments/audit_confusion.py --model tiny --animals owl,cat,dog --layer 1 --n-prompts 8
    .venv/bin/python experiments/audit_confusion.py --config experiments/configs/e4_protocol/audit_third_person.toml

For each animal: its bank vector (`build_bank`, built-in contrastive pairs) and a dataset from the
teacher steered with it (`Teacher("steered", animal, Steering(layer, multiplier, scope="all"))`).
With `--family third_person` or `user_side` the teachers are steered with those same vectors (the
teachers' texts), but the audit ranks another bank, built from that independent contrast family.
Every dataset is audited against one clean reference: the control teacher on the same prompts and
sampling seed, so the rows differ only by the steering (this makes the permutation p conservative).
`--n-clean` clean datasets (control teacher, the same prompts, sampling seeds seed+1, seed+2, ...)
are audited alike: the false positives (an animal named on clean data), differing from the
reference only by sampling noise, counted with an exact interval.
`--config FILE.toml` reads the options from a TOML table of the same names (`n_prompts`, ...);
options given on the command line win.
Stages are cached under `<out>/cache/<stage>-<content key>/` (`interp.runs.Stage`), so a rerun
resumes. The computation is `interp.analysis.confusion.run_audit_confusion`; it writes
`<out>/config.json`, `confusion.safetensors`, `confusion.html` (+ `.png` where a Chromium exists),
`results.json`, then `manifest.json` (kind "audit-confusion"); `interp plot <out>` redraws the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from interp.analysis.confusion import (
    METHODS,
    POSITIONS,
    VOCABS,
    AuditConfusionConfig,
    default_animals,
    run_audit_confusion,
)
from interp.config import read_toml
from interp.prompts import CONTRAST_FAMILIES, TEACHER_FAMILY


class Options(NamedTuple):
    """The parsed command line: the experiment's config, its output folder, whether to show progress."""

    config: AuditConfusionConfig
    out: Path
    progress: bool


def parse_args(argv: list[str] | None = None) -> Options:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a TOML file of these options (names with _ for -); the command line wins",
    )
    ap.add_argument("--model", default="smollm2-135m", help="registry name, local HF directory or hub id")
    ap.add_argument("--animals", default=",".join(default_animals()), help="comma-separated animals (>= 8 for E4)")
    ap.add_argument(
        "--bank", type=Path, default=None, help="an existing bank folder (`interp bank`); default: build one"
    )
    ap.add_argument("--layer", type=int, default=8, help="steering and audit layer (blocks.{l}.hook_resid_post)")
    ap.add_argument("--multiplier", type=float, default=0.5, help="steering strength (x mean residual norm)")
    ap.add_argument("--n-prompts", type=int, default=64, help="number prompts per dataset")
    ap.add_argument("--n-rows", type=int, default=None, help="rows audited per dataset (default: all kept)")
    ap.add_argument("--n-pairs", type=int, default=16, help="contrastive pairs per bank vector")
    ap.add_argument(
        "--family",
        default=TEACHER_FAMILY,
        choices=list(CONTRAST_FAMILIES),
        help="the audit bank's contrast texts: the teachers' own (assistant), or an independent family",
    )
    ap.add_argument("--n-clean", type=int, default=1, help="clean datasets audited for false positives (>= 1)")
    ap.add_argument("--n-perm", type=int, default=1000, help="permutations per p-value")
    ap.add_argument("--alpha", type=float, default=0.05, help="flag when the Bonferroni p is below this")
    ap.add_argument("--max-new-tokens", type=int, default=50, help="tokens per completion at most")
    ap.add_argument("--batch-size", type=int, default=32, help="prompts decoded together")
    ap.add_argument(
        "--seed", type=int, default=0, help="prompts, sampling and permutations (clean dataset: sampling seed + 1)"
    )
    ap.add_argument(
        "--method",
        default="likelihood",
        choices=list(METHODS),
        help="likelihood: the data's log-likelihood ratio under each candidate's steering; gradient: the "
        "SFT-loss gradient at --position",
    )
    ap.add_argument(
        "--audit-multipliers",
        default=None,
        help="likelihood: comma-separated steering strengths tried per candidate, best counts "
        "(default: --multiplier, the teacher's)",
    )
    ap.add_argument(
        "--vocab",
        default="grammar",
        choices=list(VOCABS),
        help="likelihood: renormalise over the number grammar's 13 tokens (what a constrained teacher "
        "samples from) or use the whole vocabulary",
    )
    ap.add_argument(
        "--position",
        default="assistant_tag",
        choices=list(POSITIONS),
        help="gradient: read at the assistant tag, averaged over completion positions, or summed over all",
    )
    ap.add_argument("--out", type=Path, default=None, help="output folder (default artifacts/audit-confusion/<model>)")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="stage cache (default <out>/cache); another run's cache reuses its bank and datasets",
    )
    ap.add_argument("--formats", default="html,png", help="figure formats (html always; png/svg/pdf need a Chromium)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    pre, _ = ap.parse_known_args(argv)
    if pre.config is not None:
        ap.set_defaults(**_config_defaults(ap, pre.config))
    args = ap.parse_args(argv)
    try:
        multipliers = tuple(float(m) for m in (args.audit_multipliers or "").split(",") if m.strip())
    except ValueError:
        ap.error(
            f"--audit-multipliers: {args.audit_multipliers!r} is not a comma-separated list of numbers, e.g. 0.25,0.5"
        )
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("out", "progress")}
    try:
        cfg = AuditConfusionConfig(
            **options
            | {
                "animals": [a.strip() for a in args.animals.split(",") if a.strip()],
                "audit_multipliers": multipliers or None,
            }
        )
    except ValueError as e:
        ap.error(option_message(e))
    return Options(cfg, args.out or cfg.default_dir(), args.progress)


def option_message(e: Exception) -> str:
    """The library's message, naming the option (--n-clean) where it names a config field (n_clean)."""
    field, sep, rest = str(e).partition(": ")
    return (
        f"--{field.replace('_', '-')}: {rest}" if sep and field in AuditConfusionConfig.__dataclass_fields__ else str(e)
    )


def _config_defaults(ap: argparse.ArgumentParser, path: Path) -> dict:
    """A TOML file's options as argparse defaults, checked against the known names."""
    try:
        table = read_toml(path, "--config")
    except (OSError, ValueError) as e:
        ap.error(str(e))
    known = {a.dest: a for a in ap._actions if a.dest not in ("help", "config")}
    unknown = sorted(set(table) - set(known))
    if unknown:
        ap.error(f"--config: {path} sets unknown options {unknown}; use {sorted(known)}")
    out = {}
    for k, v in table.items():
        if isinstance(v, list):  # comma-separated on the command line
            v = ",".join(str(x) for x in v)
        out[k] = known[k].type(v) if known[k].type is not None and isinstance(v, str) else v
        if known[k].choices is not None and out[k] not in known[k].choices:  # argparse checks no default
            ap.error(f"--config: {path} sets {k} = {v!r}; choose one of {list(known[k].choices)}")
    return out


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "data",
        "true rank",
        "top",
        "score (true)",
        "cos z (true)",
        "p (true)",
        "p Bonf. (true)",
        "flagged",
        title=f"{res.get('method', 'gradient')} audit confusion at layer {res['layer']}: "
        f"{len(res['candidates'])} candidates, {res['n_clean']} reference rows",
    )
    for i, name in enumerate(res["datasets"]):
        j = res["candidates"].index(name) if name in res["candidates"] else None

        def cell(m: str, f: str) -> str:
            v = None if j is None else res["matrix"][m][i][j]
            return "-" if v is None else format(v, f)

        table.add_row(
            name,
            "-" if j is None else str(res["true_rank"][name]),
            res["top"][name],
            cell("score", "+.2e"),
            cell("cosine_z", "+.2f"),
            cell("p_value", ".4f"),
            cell("p_bonferroni", ".4f"),
            ", ".join(res["flagged"][name]) or "",
        )
    console = Console()
    console.print(table)
    acc = res["top1"]
    console.print(
        f"top-1 accuracy {acc['k']}/{acc['n']} = {acc['mean']:.2f} [95% exact CI {acc['ci95'][0]:.2f}, "
        f"{acc['ci95'][1]:.2f}] (chance {acc['chance']:.3f}, binomial p {acc['p_vs_chance']:.3g}); "
        f"mean true rank {res['mean_true_rank']:.2f}"
    )
    if res["clean"] is not None:
        console.print(
            f"clean data flag: {', '.join(res['clean']['flagged']) or 'nothing'} "
            f"(smallest Bonferroni p {res['clean']['min_p_bonferroni']:.3g})"
        )
    fp = res.get("false_positives")
    if fp is not None and fp["n"] > 1:
        console.print(
            f"false positives: {fp['k']}/{fp['n']} clean datasets name an animal = {fp['mean']:.2f} "
            f"[95% exact CI {fp['ci95'][0]:.2f}, {fp['ci95'][1]:.2f}]"
            + "".join(f"; {n}: {', '.join(f)}" for n, f in fp["named"].items() if f)
        )
    w, c = res["timings_s"], res["compute_s"]
    console.print(
        f"wall: data generation {c['data_generation']:.1f}s, audit {c.get('measure', c.get('gradients', 0)):.1f}s, "
        f"this run {w['total']:.1f}s; artifacts in {Path(res['config']['out'])}"
    )


def main(argv: list[str] | None = None) -> dict:
    cfg, out, progress = parse_args(argv)
    try:
        res = run_audit_confusion(cfg, out, progress=progress)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"error: {option_message(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    print_table(res)
    return res


if __name__ == "__main__":
    main()

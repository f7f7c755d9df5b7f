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
resumes. Writes `<out>/results.json`, `config.json`, `confusion.safetensors` and `confusion.html`
(+ `.png` where a Chromium exists); `interp plot <out>` redraws the figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from interp.analysis.audit import CLEAN, audit_confusion, build_bank, load_bank, load_rows, save_confusion
from interp.config import read_toml
from interp.datasets import dataset_stage, make_dataset
from interp.export import save_figures
from interp.generate import SampleConfig
from interp.models import load_model
from interp.plots import confusion_figure
from interp.prompts import (
    ANIMALS,
    CONTRAST_FAMILIES,
    CONTRAST_FAMILY_VERSION,
    PROMPT_VERSION,
    TEACHER_FAMILY,
    contrastive_pairs,
)
from interp.runs import CONFIG_FILE, RESULTS_FILE, Stage, content_hash, provenance, read_json, write_json
from interp.steering import Steering
from interp.teachers import DataConfig, Teacher

CONFUSION_FILE = "confusion.json"
REFERENCE = "reference"
# options added after results existed: left out of the recorded config at these defaults, so an
# old run's config (and config_hash) reads the same
LATER_DEFAULTS = {"family": TEACHER_FAMILY, "n_clean": 1, "config": None, "cache": None}


def clean_names(n: int) -> list[str]:
    """The clean datasets' names: "clean" (sampling seed + 1, the one dataset before --n-clean),
    then "clean-2", "clean-3", ... (seed + 2, ...)."""
    return [CLEAN] + [f"{CLEAN}-{i}" for i in range(2, n + 1)]


def default_animals(n: int = 8) -> list[str]:
    """The first `n` built-in animals that have contrastive pairs (today: every one of ANIMALS)."""

    def has_pairs(a: str) -> bool:
        try:
            return bool(contrastive_pairs(a, 1))
        except ValueError:
            return False

    return [a for a in ANIMALS if has_pairs(a)][:n]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
        choices=["likelihood", "gradient"],
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
        choices=["grammar", "full"],
        help="likelihood: renormalise over the number grammar's 13 tokens (what a constrained teacher "
        "samples from) or use the whole vocabulary",
    )
    ap.add_argument(
        "--position",
        default="assistant_tag",
        choices=["assistant_tag", "completion", "all"],
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
    if args.n_clean < 1:
        ap.error(f"--n-clean: {args.n_clean} must be >= 1")
    if args.bank is not None and args.family != TEACHER_FAMILY:
        ap.error("--family: applies to a bank built here; drop it or --bank (whose vectors also steer the teachers)")
    args.animals = [a.strip() for a in args.animals.split(",") if a.strip()]
    args.audit_multipliers = (
        [float(m) for m in args.audit_multipliers.split(",") if m.strip()]
        if args.audit_multipliers
        else [args.multiplier]
    )
    suffix = "" if args.family == TEACHER_FAMILY else f"-{args.family}"
    args.out = args.out or Path("artifacts/audit-confusion") / (args.model.replace("/", "_") + suffix)
    return args


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


def run(args: argparse.Namespace, log=print) -> dict:
    """Run (or resume) the confusion experiment; returns results.json's content."""
    started = time.perf_counter()
    out = Path(args.out)
    cache = Path(args.cache) if args.cache is not None else out / "cache"
    config = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k != "progress" and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])
    }
    timings: dict[str, float] = {}
    stages: list[dict] = []

    def timed(name: str, stage: Stage, fn) -> Stage:
        t, hit = time.perf_counter(), stage.done
        if not hit:
            fn(stage)
        wall = round(time.perf_counter() - t, 2)
        stages.append(
            {
                "name": name,
                "dir": str(stage.dir),
                "cache_hit": hit,
                "wall_s": wall,
                "compute_s": stage.manifest()["wall_time_s"],
            }
        )
        log(f"  {name:<24} {'cached' if hit else 'done'} in {wall:.1f}s")
        return stage

    t = time.perf_counter()
    model = load_model(args.model, device=args.device)
    fp = model.fingerprint()
    timings["load_model"] = round(time.perf_counter() - t, 2)
    if not 0 <= args.layer < model.n_layers:
        raise ValueError(f"--layer: {args.layer} is out of range for {model.name} (0..{model.n_layers - 1})")

    # 1. the bank: built once per (model, animals, pairs, family), or an existing folder. The
    # teachers are steered with the teachers' texts' vectors; the audit ranks `bank`, which is that
    # same bank unless --family names an independent one
    t = time.perf_counter()

    def built_bank(name: str, family: str) -> dict:
        key = {
            "model": model.identity(),
            "animals": args.animals,
            "n_pairs": args.n_pairs,
            "position": "mean",
            "prompts": PROMPT_VERSION,
        }
        if family != TEACHER_FAMILY:  # the teachers' bank keeps its key (and cache)
            key |= {"family": family, "family_texts": CONTRAST_FAMILY_VERSION}
        bstage = Stage(cache, "bank", key)
        timed(
            name,
            bstage,
            lambda st: (
                build_bank(model, args.animals, st.dir / "bank", args.n_pairs, progress=args.progress, family=family),
                st.finish(),
            ),
        )
        return load_bank(bstage.dir / "bank", model)

    if args.bank is None:
        teachers = built_bank("bank", TEACHER_FAMILY)
        bank = teachers if args.family == TEACHER_FAMILY else built_bank(f"bank/{args.family}", args.family)
    else:
        bank = teachers = load_bank(args.bank, model)
    missing = [a for a in args.animals if a not in bank]
    if missing:
        raise ValueError(
            f"--animals: {missing} have no vector in the bank ({list(bank)}); drop them or rebuild the bank"
        )
    timings["bank"] = round(time.perf_counter() - t, 2)

    # 2. datasets: one steered per animal, the clean reference (same prompts and seed), clean ones
    t = time.perf_counter()

    def data_config(seed: int, sample_seed: int | None = None) -> DataConfig:
        return DataConfig(
            n_prompts=args.n_prompts,
            prompt_seed=seed,
            sampling=SampleConfig(
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
                constrained=True,
                seed=seed if sample_seed is None else sample_seed,
            ),
        )

    steering = Steering(layer=args.layer, multiplier=args.multiplier, scope="all")
    plan = {a: (Teacher("steered", a, steering), data_config(args.seed)) for a in args.animals}
    plan[REFERENCE] = (Teacher("control"), data_config(args.seed))
    for i, name in enumerate(clean_names(args.n_clean), 1):
        plan[name] = (Teacher("control"), data_config(args.seed, args.seed + i))
    data_dirs, data_stats = {}, {}
    for name, (teacher, dcfg) in plan.items():
        vector = teachers[name] if teacher.kind == "steered" else None
        # interp.pipeline's data stages, so equal datasets are shared with `interp run`
        dstage = dataset_stage(cache, model, teacher, vector, dcfg)
        make_data = lambda st, teacher=teacher, dcfg=dcfg, vector=vector: make_dataset(
            st, model, teacher, vector, dcfg, progress=args.progress
        )
        timed(f"data/{name}", dstage, make_data)
        man = dstage.manifest()
        data_dirs[name] = dstage.dir
        data_stats[name] = {
            "dataset_hash": man["dataset_hash"],
            "n_kept": man["n_kept"],
            "pass_rate": man["filter"]["pass_rate"],
            "dir": str(dstage.dir),
        }
    timings["data_generation"] = round(time.perf_counter() - t, 2)

    # 3. the audit: every dataset against the reference (gradients once each)
    hashes = {
        "bank": {n: v.hash() for n, v in bank.items()},
        "datasets": {n: s["dataset_hash"] for n, s in data_stats.items()},
    }
    if teachers is not bank:
        hashes["teacher_vectors"] = {n: v.hash() for n, v in teachers.items()}
    t = time.perf_counter()
    how = (
        {"position": args.position}
        if args.method == "gradient"
        else {"method": args.method, "multipliers": args.audit_multipliers, "vocab": args.vocab}
    )  # gradient keys as before: cache kept
    astage = Stage(
        cache,
        "confusion",
        {
            "model": fp,
            "layer": args.layer,
            "n_rows": args.n_rows,
            "n_perm": args.n_perm,
            "seed": args.seed,
            "alpha": args.alpha,
            **how,
            **hashes,
        },
    )

    def make_audit(st):
        datasets = {n: load_rows(d) for n, d in data_dirs.items() if n != REFERENCE}
        res = audit_confusion(
            model,
            datasets,
            load_rows(data_dirs[REFERENCE]),
            bank,
            args.layer,
            n_rows=args.n_rows,
            n_perm=args.n_perm,
            seed=args.seed,
            alpha=args.alpha,
            progress=args.progress,
            position=args.position,
            method=args.method,
            multipliers=args.audit_multipliers,
            vocab=args.vocab,
        )
        write_json(st.path(CONFUSION_FILE), res)
        st.finish()

    timed("audit", astage, make_audit)
    res = read_json(astage.dir / CONFUSION_FILE)
    timings["audit"] = round(time.perf_counter() - t, 2)

    # 4. artifacts
    out.mkdir(parents=True, exist_ok=True)
    save_confusion(out / "confusion.safetensors", res)
    exported = save_figures({"confusion": confusion_figure(res)}, out, args.formats)
    if exported.message:
        log(f"  {exported.message}")
    timings["total"] = round(time.perf_counter() - started, 2)
    compute = {
        "data_generation": round(sum(s["compute_s"] for s in stages if s["name"].startswith("data/")), 2),
        **res["timings_s"],
    }  # what each step cost when it ran (a cached rerun reports the original)
    results = {
        **res,
        "experiment": "audit-confusion",
        "config": config,
        "hashes": hashes,
        "data": data_stats,
        "stages": stages,
        "timings_s": timings,
        "compute_s": compute,
        "figures": [str(p) for p in exported.written],
        "provenance": provenance(),
        "config_hash": content_hash(config),
    }
    write_json(out / CONFIG_FILE, config)
    write_json(out / RESULTS_FILE, results)
    return results


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
    args = parse_args(argv)
    try:
        res = run(args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print_table(res)
    return res


if __name__ == "__main__":
    main()

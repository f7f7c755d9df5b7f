"""The `interp` command line: thin wrappers over the library (each command builds a config and
calls one library function)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Subliminal-learning interpretability toolkit.")
console = Console()


def _version(value: bool) -> None:
    if value:
        from interp import __version__
        from interp.runs import git_commit

        console.print(f"interp {__version__} (git {git_commit() or 'unknown'})")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the package version and git commit, then exit.")) -> None:
    """Subliminal-learning interpretability toolkit."""


def _fail(msg: str) -> None:
    console.print(f"[red]error:[/red] {msg}", soft_wrap=True)  # one line, whatever the terminal's width
    raise typer.Exit(2)


@app.command()
def models() -> None:
    """List the models interp knows, with their install status."""
    from interp.models import list_models

    table = Table("name", "status", "description", "detail")
    for row in list_models():
        table.add_row(row["name"], row["status"], row["description"], row["detail"])
    console.print(table)


def _parse_list(text: str, cast=float, field: str = "value") -> list:
    try:
        values = [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"{field}: {text!r} is not a comma-separated list of numbers")
    if not all(math.isfinite(v) for v in values):
        _fail(f"{field}: {text!r} has a value that is not a finite number")
    return values


def _finite(**values: float) -> None:
    """Refuse NaN and inf in float options (click parses 'nan' and 'inf'), naming the option."""
    for name, v in values.items():
        if v is not None and not math.isfinite(v):
            _fail(f"--{name.replace('_', '-')}: {v} is not a finite number")


def _dir_name(value: str, option: str) -> str:
    """A value that becomes part of a default output directory's name: one path component."""
    from interp.runs import safe_name

    try:
        return safe_name(value, option)
    except ValueError as e:
        _fail(str(e) + "; or pass --out")


def _load_pairs(path: Path) -> list:
    from interp.runs import read_jsonl

    rows = read_jsonl(path)
    if not rows or any("trait" not in r or "neutral" not in r for r in rows):
        _fail(f"pairs: every line of {path} needs 'trait' and 'neutral' (a text or a list of chat messages)")
    return [(r["trait"], r["neutral"]) for r in rows]


@app.command()
def steer(
    animal: str = typer.Option("owl", help="Trait animal (built-in contrastive pairs)."),
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    out: Path = typer.Option(None, help="Vector directory (default artifacts/vectors/<model>-<animal>-<position>)."),
    pairs: Optional[Path] = typer.Option(None, help="JSONL of your own pairs: {'trait': ..., 'neutral': ...} per line."),
    n_pairs: int = typer.Option(16, help="Built-in pairs to use."),
    position: str = typer.Option("mean", help="'mean' over the assistant statement, or 'last' token."),
    layers: str = typer.Option("", help="Sweep these layers (comma-separated); empty = every 2nd middle layer."),
    multipliers: str = typer.Option("0.25,0.5,1.0", help="Sweep these multipliers (x the layer's residual norm)."),
    split: str = typer.Option("tuning", help="Question split for the sweep: tuning, heldout or all."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show a progress bar over the sweep."),
) -> None:
    """Build a steering vector (mean difference per layer) and sweep layers x multipliers.

    Example: interp steer --animal owl --model smollm2-135m --layers 4,8,12 --multipliers 0.25,0.5
    """
    from interp.evaluate import steering_sweep
    from interp.models import load_model
    from interp.prompts import contrastive_pairs, questions
    from interp.runs import write_json
    from interp.steering import build_steering_vector

    mults = _parse_list(multipliers, float, "multipliers")  # before any work: a bad value writes nothing
    try:
        m = load_model(model, device=device)
        prs = _load_pairs(pairs) if pairs else contrastive_pairs(animal, n_pairs)
        vec = build_steering_vector(m, prs, position=position, trait=animal)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    out = out or Path("artifacts/vectors") / f"{model.replace('/', '_')}-{_dir_name(animal, '--animal')}-{position}"
    vec.save(out)
    console.print(f"vector saved to [bold]{out}[/bold] (layers {vec.n_layers}, d_model {vec.d_model})")
    lays = _parse_list(layers, int, "layers") or list(range(m.n_layers // 6, 2 * m.n_layers // 3 + 1, 2))
    try:
        sweep = steering_sweep(m, vec, animal, lays, mults, questions(split), progress=progress)
    except ValueError as e:
        _fail(str(e))
    write_json(out / "sweep.json", sweep)
    table = Table("layer", *[f"x{mu:g}" for mu in mults], title=f"P({animal}) / base P ({sweep['base_prob']:.2e}), {split} questions")
    for l in lays:
        cells = {c["multiplier"]: c for c in sweep["cells"] if c["layer"] == l}
        table.add_row(str(l), *[f"{cells[mu]['ratio']:.1f}" for mu in mults])
    console.print(table)
    console.print(f"sweep saved to {out / 'sweep.json'}")


def dataset_dir_name(model: str, teacher: str, animal: str, layer: int, multiplier: float, seed: int) -> Path:
    """`interp generate`'s default output: every choice that changes the data is in the name."""
    from interp.teachers import VECTOR_KINDS

    steering = f"-L{layer}x{multiplier:g}" if teacher in VECTOR_KINDS else ""
    return Path("artifacts/datasets") / f"{model.replace('/', '_')}-{teacher}-{animal}{steering}-s{seed}"


def _check_generate(teacher: str, animal: str, vector: Path | None, out: Path, force: bool) -> None:
    """Before loading anything: a known animal, the vector's own trait, no dataset overwritten silently."""
    from interp.prompts import ANIMALS
    from interp.runs import MANIFEST_FILE, read_json
    from interp.steering import VECTOR_META
    from interp.teachers import VECTOR_KINDS

    trait = None
    if vector is not None and teacher in VECTOR_KINDS and (vector / VECTOR_META).exists():
        trait = read_json(vector / VECTOR_META).get("trait")
    if trait is not None and animal != trait:
        _fail(f"--animal: {animal!r}, but the vector in {vector} was built for {trait!r}; "
              f"pass --animal {trait} or a vector built for {animal!r}")
    if animal not in ANIMALS and animal != trait:
        _fail(f"--animal: {animal!r} is not a known animal; choose one of {', '.join(ANIMALS)}")
    if (out / MANIFEST_FILE).exists() and not force:
        _fail(f"--out: {out} already holds a dataset ({MANIFEST_FILE}); pass --force to overwrite it, or another --out")


@app.command()
def generate(
    teacher: str = typer.Option("steered", help="control, prompted, steered, random or prompted_ablated."),
    animal: str = typer.Option("owl", help="Trait animal."),
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    vector: Optional[Path] = typer.Option(None, help="Vector directory from `interp steer` (steered/random)."),
    layer: int = typer.Option(8, help="Steering layer."),
    multiplier: float = typer.Option(0.5, help="Steering multiplier (x the layer's residual norm)."),
    scope: str = typer.Option("all", help="Steered tokens: all, prompt or generated."),
    n: int = typer.Option(256, help="Number prompts to sample."),
    seed: int = typer.Option(0, help="Sampling seed (prompts use --prompt-seed)."),
    prompt_seed: int = typer.Option(0, help="Seed of the number prompts."),
    constrained: bool = typer.Option(True, help="Decode within the number grammar (else free sampling + filter)."),
    temperature: float = typer.Option(1.0),
    batch_size: int = typer.Option(32),
    random_seed: int = typer.Option(0, help="Seed of the random direction (random teacher)."),
    dtype: str = typer.Option("fp32", help="Weights while sampling: fp32, or bf16 (about 1.8x faster on a CPU with bf16 matmul)."),
    out: Path = typer.Option(None, help="Output directory (default artifacts/datasets/<model>-<teacher>-<animal>"
                                        "[-L<layer>x<multiplier>]-s<seed>)."),
    force: bool = typer.Option(False, "--force", help="Overwrite a dataset already in the output directory."),
    device: str = typer.Option("auto"),
) -> None:
    """Sample a teacher on number prompts, filter, and write samples.jsonl, dataset.jsonl, manifest.json.

    Example: interp generate --teacher steered --vector artifacts/vectors/smollm2-135m-owl-mean --n 64
    """
    from interp.generate import SampleConfig
    from interp.models import load_model
    from interp.steering import Steering, SteeringVector
    from interp.teachers import VECTOR_KINDS, DataConfig, Teacher, generate_dataset

    _finite(multiplier=multiplier, temperature=temperature)
    if out is None:
        _dir_name(animal, "--animal"), _dir_name(teacher, "--teacher")
    out = out or dataset_dir_name(model, teacher, animal, layer, multiplier, seed)
    _check_generate(teacher, animal, vector, out, force)
    try:
        op = "project" if teacher == "prompted_ablated" else "add"
        steering = Steering(layer=layer, multiplier=multiplier, scope=scope, operator=op)
        t = Teacher(teacher, animal, steering if teacher in VECTOR_KINDS else None, random_seed)
        cfg = DataConfig(n, prompt_seed, SampleConfig(temperature=temperature, batch_size=batch_size,
                                                      constrained=constrained, seed=seed, dtype=dtype))
        m = load_model(model, device=device)
        vec = SteeringVector.load(vector) if vector else None
        man = generate_dataset(m, t, vec, cfg, out)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    f = man["filter"]
    console.print(f"{man['n_kept']}/{man['n_samples']} passed ({f['pass_rate']:.0%}); rejected by rule: "
                  + ", ".join(f"{k} {v}" for k, v in f["rejected"].items() if v))
    console.print(f"{man['generation']['tokens_per_s']} tok/s; written to [bold]{out}[/bold]")


def _json_output(command):
    """`--json` (the command's `json_out`): what the command returns, its results, on stdout as
    one JSON document; every other line (tables, stage logs, errors) on stderr."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        if not kwargs.get("json_out"):
            command(*args, **kwargs)
            return
        import contextlib
        import json
        import sys

        stdout = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            res = command(*args, **kwargs)
        stdout.write(json.dumps(res, sort_keys=True, default=str) + "\n")
        stdout.flush()

    return wrapper


JSON_HELP = "Print the results on stdout as JSON (what results.json holds); everything else goes to stderr."


@app.command()
@_json_output
def run(
    config: Path = typer.Argument(..., help="Experiment TOML (see experiments/configs/quick.toml)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config fields to override, FIELD=VALUE with a TOML "
                                                    "value, e.g. train.lr=2e-4 seeds=[0,1]; the run id is the overridden config's."),
    root: Path = typer.Option(Path("artifacts"), help="Artifact root: runs under <root>/<experiment>/, stages under <root>/cache/."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the stages, which are cached, and the run directory; "
                                 "compute nothing (the models are loaded for their fingerprints)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Run E1 end to end (vector, teachers, datasets, students, evaluation); rerun to resume.

    Example: interp run experiments/configs/quick.toml train.lr=2e-4 seeds=[0,1]
    """
    from interp.overrides import load_config_with
    from interp.pipeline import run_e1

    try:
        cfg = load_config_with(config, overrides or ())
    except ValueError as e:
        _fail(str(e))
    console.print(f"E1 [bold]{cfg.experiment}[/bold]: {cfg.model}, trait {cfg.animal}, seeds {cfg.seeds}, teachers {cfg.teacher.kinds}")
    if dry_run:
        return print_plan(cfg, root)
    from interp.train import TrainingDiverged

    try:
        res = run_e1(cfg, root, progress=progress, log=console.print)
    except (ValueError, ModuleNotFoundError, FileNotFoundError, TrainingDiverged) as e:
        _fail(str(e))
    print_e1(res)
    return res


def print_plan(cfg, root: Path) -> dict:
    """`interp run --dry-run`: the stages `run_e1` would meet and which are cached."""
    from interp.plan import CACHED, plan_e1

    try:
        plan = plan_e1(cfg, root)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    n_cached = sum(s["status"] == CACHED for s in plan["stages"])
    table = Table("stage", "status", "directory (under the root)",
                  title=f"dry run: {n_cached} of {len(plan['stages'])} stages cached")
    for s in plan["stages"]:
        table.add_row(s["name"], s["status"], s["dir"] or f"keyed by {s['waits_on']}")
    console.print(table)
    console.print(f"run directory: [bold]{plan['run_dir']}[/bold]; nothing computed"
                  + ("; a pending stage's key needs an earlier stage's output" if n_cached < len(plan["stages"]) else ""))
    return plan


@app.command()
@_json_output
def sweep(
    config: Path = typer.Argument(..., help="Sweep TOML: an E1 config with a [sweep] table (see experiments/configs/noise_ablation.toml)."),
    root: Path = typer.Option(Path("artifacts"), help="Artifact root: the sweep under <root>/<sweep name>/, stages under <root>/cache/."),
    executor: str = typer.Option(None, help="local (this machine) or submitit (SLURM); default: sweep.executor."),
    workers: int = typer.Option(None, min=1, help="Local jobs at once (1: in this process); default: sweep.workers."),
    partition: str = typer.Option(None, help="SLURM partition (implies --executor submitit; overrides [sweep] slurm)."),
    time_min: int = typer.Option(None, "--time", min=1, help="SLURM time limit per job, minutes (default 240)."),
    cpus: int = typer.Option(None, min=1, help="CPUs per job (SLURM cpus_per_task; also the job's torch threads)."),
    mem_gb: int = typer.Option(None, min=1, help="Memory per job, GB."),
    gpus: int = typer.Option(None, min=0, help="GPUs per job."),
    cluster: str = typer.Option(None, help="submitit's executor: slurm (default where srun exists), local (subprocesses here) or debug."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and jobs, run nothing."),
    format: str = typer.Option("html,png", "--format", help="Figures written to the sweep's figures/: html, png, svg, pdf."),
    progress: bool = typer.Option(True, help="Show a progress bar over jobs."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP + " With --dry-run: the cells."),
) -> dict:
    """Run a grid of E1 runs, one independent job per (cell, seed); rerun to resume.

    Example: interp sweep experiments/configs/noise_ablation.toml --workers 2
    """
    from interp.export import parse_formats, save_figures
    from interp.plots import FIGURES_DIR, sweep_transfer
    from interp.sweep import load_sweep, run_sweep, slurm_options

    try:
        sw = load_sweep(config)
        formats = parse_formats(format)
    except ValueError as e:
        _fail(str(e))
    if dry_run:
        table = Table("cell", "values", "seeds", title=f"sweep {sw.section.name}: {len(sw.jobs())} jobs -> {sw.directory(root)}")
        for c in sw.cells:
            table.add_row(c.id, c.label(), str(c.config.seeds))
        console.print(table)
        return {"sweep": sw.section.name, "directory": str(sw.directory(root)), "n_jobs": len(sw.jobs()),
                "cells": [{"id": c.id, "label": c.label(), "seeds": c.config.seeds} for c in sw.cells]}
    try:
        res = run_sweep(sw, root, executor, workers, progress, log=console.print,
                        slurm=slurm_options(partition, time_min, cpus, mem_gb, gpus, cluster))
    except (ValueError, RuntimeError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    print_sweep(res)
    done = save_figures({"sweep_transfer": sweep_transfer(res)}, sw.directory(root) / FIGURES_DIR, formats)
    if done.message:
        console.print(f"[yellow]note:[/yellow] {done.message}")
    console.print(f"jobs {res['timings_s']['jobs']:.1f} s ({res['timings_s']['jobs_run']} run), table {res['timings_s']['table']:.1f} s; "
                  f"artifacts: [bold]{sw.directory(root)}[/bold] (results.json, grid.json, cells/, jobs/, figures/)")
    return res


def print_sweep(res: dict) -> None:
    keys = res.get("grid_keys", list(res["grid"]))
    table = Table(title=f"{res['comparison']}: trait-specific transfer per cell ({', '.join(keys)}); "
                        "95% t-intervals over seeds, ratio interval by bootstrap")
    for col in ("cell", "seeds", "transfer", "> 0", "rank", "- reference (paired)", "/ reference"):
        table.add_column(col)
    for r in res["rows"]:
        v = r.get("vs_reference")
        ratio = (f"{v['ratio']:.2f} [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}]"
                 + ("" if v["denominator_excludes_zero"] else " *")) if v else "-"
        paired = v.get("diff_paired_by_seed") if v else None
        diff = _ci(paired, "{:+.2f}") if paired else (f"{v['diff']:+.2f} [{v['diff_ci95'][0]:+.2f}, {v['diff_ci95'][1]:+.2f}]" if v else "-")
        table.add_row(", ".join(str(r[k]) for k in keys), str(r["n_seeds"]), _ci(r["transfer_per_seed"], "{:+.2f}"),
                      f"{r['positive_seeds']}/{r['n_seeds']}", str(r["trait_rank_among_animals"]), diff, ratio)
    console.print(table)
    if any(r.get("vs_reference") and not r["vs_reference"]["denominator_excludes_zero"] for r in res["rows"]):
        console.print("* the reference transfer's interval includes 0: read the difference, not the ratio")


def _ci(d: dict, fmt: str = "{:.4f}") -> str:
    from interp.stats import NO_INTERVAL, has_interval

    if not has_interval(d):
        return f"{fmt.format(d['mean'])} ({NO_INTERVAL})"
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci95'][0])}, {fmt.format(d['ci95'][1])}]"


def print_e1(res: dict) -> None:
    table = Table("model", f"P({res['animal']}) [95% CI]", "log P [95% CI]", title=f"trait probability ({res['n_questions']} {res['question_split']} questions, seeds {res['seeds']})")
    for arm, d in res["arms"].items():
        table.add_row(arm if arm == "base" else f"{arm} student", _ci(d["prob"]), _ci(d["logprob"], "{:.3f}"))
    console.print(table)
    # one small table per comparison (measure, value): fits 80 columns, so a log stays readable
    for name, d in res["transfer"].items():
        perm, ps = d["permutation_specific"], d["specific_per_seed"]
        mde = ps.get("detectable_80")
        t2 = Table("measure", "value", title=f"transfer {name}: trait minus reference student")
        for measure, value in (
            ("delta log P [95% CI]", _ci(d["logprob_diff"], "{:+.3f}")),
            ("  interval covers", d["logprob_diff"]["covers"]),
            ("P ratio", f"{d['prob_ratio']:.2f}x"),
            ("specific delta log P [95% CI]", _ci(d["specific_logprob_diff"], "{:+.3f}")),
            ("specific, seed t-interval", _ci(ps, "{:+.3f}") + (f" (n={ps['n']})" if ps["n"] > 1 else "")),
            ("detectable (80%)", f"{mde:.3f}" if mde is not None else "-"),
            ("trait rank among animals", str(d["trait_rank_among_animals"])),
            ("permutation p", f"{perm['p_value']:.3f} (min {perm['min_p']:.3f})"),
        ):
            t2.add_row(measure, value)
        console.print(t2)
    console.print("stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in res["timings_s"].items()))
    console.print(f"artifacts: [bold]{res['run_dir']}[/bold] (results.json, manifest.json, config.json)")


@app.command()
def mnist(
    seeds: int = typer.Option(25, help="Models per condition (independent seeds)."),
    first_seed: int = typer.Option(0, help="Seeds are first_seed .. first_seed + seeds - 1."),
    m: int = typer.Option(3, "--m", help="Number of auxiliary logits."),
    hidden: int = typer.Option(256, help="Width of both hidden layers."),
    teacher_steps: int = typer.Option(600, help="Adam steps training the teacher on digits."),
    student_steps: int = typer.Option(600, help="Adam steps distilling each student on noise images."),
    batch_size: int = typer.Option(128, help="Images per step."),
    lr: float = typer.Option(3e-4, help="Adam learning rate."),
    idx_dir: Optional[Path] = typer.Option(None, help="Folder with real MNIST IDX files; default: sklearn's 8x8 digits."),
    sweep_m: Optional[list[int]] = typer.Option(None, "--sweep-m", help="Also rerun at this m (repeatable)."),
    sweep_hidden: Optional[list[int]] = typer.Option(None, "--sweep-hidden", help="Also rerun at this width (repeatable)."),
    out: Optional[Path] = typer.Option(None, help="Run directory; default artifacts/mnist/<run-id>."),
) -> None:
    """E7: digit accuracy of students distilled on auxiliary logits over noise (same vs cross init).

    Example: interp mnist --seeds 25 --m 3 --sweep-m 1 --sweep-m 10
    """
    from interp.mnist import CHANCE, MnistConfig, run_mnist
    from interp.runs import run_id

    _finite(lr=lr)
    try:
        cfg = MnistConfig(
            n_seeds=seeds, first_seed=first_seed, n_aux=m, hidden=hidden, teacher_steps=teacher_steps,
            student_steps=student_steps, batch_size=batch_size, lr=lr, idx_dir=str(idx_dir) if idx_dir else None,
            sweep_aux=tuple(sweep_m or ()), sweep_hidden=tuple(sweep_hidden or ()),
        )
        out = out or Path("artifacts/mnist") / run_id(cfg)
        res = run_mnist(cfg, out)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    results = res["results"]
    data = results["data"]
    table = Table("condition", "digit accuracy [95% CI]", "sd", "seeds",
                  title=f"E7 on {data['source']} (m={m}, hidden={hidden}; chance {CHANCE:.2f})")
    for row in results["table"]:
        table.add_row(row["condition"], _ci(row), f"{row['sd']:.3f}", str(row["n"]))
    diff = results["paired_difference"]
    table.add_row(f"{diff['a']} - {diff['b']} (paired)", _ci(diff, "{:+.3f}"), f"{diff['sd']:.3f}", str(diff["n"]))
    console.print(table)
    for name, rows in results["sweeps"].items():
        if rows:
            st = Table(name, "condition", "digit accuracy [95% CI]", "seeds", title=f"sweep over {name}")
            for row in rows:
                if row["condition"] in ("teacher", "student_aux", "cross_student_aux") or " - " in row["condition"]:
                    st.add_row(str(row["value"]), row["condition"], _ci(row, "{:+.3f}" if " - " in row["condition"] else "{:.3f}"), str(row["n"]))
            console.print(st)
    console.print(f"wall time {res['manifest']['wall_time_s']:.1f} s; artifacts: [bold]{out}[/bold] (config.json, results.json, manifest.json)")


@app.command()
def theorem(
    seeds: int = typer.Option(64, help="Independent seeds per cell."),
    first_seed: int = typer.Option(0, help="Seeds are first_seed .. first_seed + seeds - 1."),
    model: Optional[list[str]] = typer.Option(None, "--model", help="mlp and/or transformer (repeatable; default both)."),
    teacher: Optional[list[str]] = typer.Option(None, "--teacher", help="trained and/or random (repeatable; default both)."),
    loss: Optional[list[str]] = typer.Option(None, "--loss", help="soft_ce and/or mse (repeatable; default both)."),
    steps: int = typer.Option(5, help="SGD steps that make a 'trained' teacher."),
    teacher_lr: float = typer.Option(0.05, help="SGD learning rate of the 'trained' teacher."),
    perturb_scale: float = typer.Option(0.01, help="A 'random' teacher adds this times each tensor's rms times N(0, 1)."),
    student_lr: float = typer.Option(1e-3, help="Step size of the one student step."),
    hidden: int = typer.Option(256, help="MLP hidden width."),
    n_inputs: int = typer.Option(64, help="Distillation inputs per seed (noise images / random token sequences)."),
    out: Optional[Path] = typer.Option(None, help="Run directory; default artifacts/theorem/<run-id>."),
) -> None:
    """E8: does one distillation step move a same-init student toward the teacher? <u, delta> across seeds.

    Example: interp theorem --seeds 64 --model mlp --model transformer
    """
    from interp.runs import run_id
    from interp.theory import LOSSES, MODELS, TEACHERS, TheoremConfig, run_theorem

    _finite(teacher_lr=teacher_lr, perturb_scale=perturb_scale, student_lr=student_lr)
    try:
        cfg = TheoremConfig(
            n_seeds=seeds, first_seed=first_seed, models=tuple(model or MODELS), teachers=tuple(teacher or TEACHERS),
            losses=tuple(loss or LOSSES), teacher_steps=steps, teacher_lr=teacher_lr, perturb_scale=perturb_scale,
            student_lr=student_lr, hidden=hidden, n_inputs=n_inputs,
        )
        out = out or Path("artifacts/theorem") / run_id(cfg)
        res = run_theorem(cfg, out)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    table = Table("model", "teacher", "loss", "init", "<u,d> [95% CI]", "cos(u,d) [95% CI]", ">=0", "seeds", "|d|/|th0|",
                  title="E8: student step u vs teacher displacement d = theta_T - theta_0")
    for r in res["results"]["rows"]:
        table.add_row(r["model"], r["teacher"], r["loss"], r["init"], _ci(r["inner"], "{:+.1e}"),
                      _ci(r["cosine"], "{:+.3f}"), f"{r['frac_nonneg']:.2f}", str(r["n"]), f"{r['relative_teacher_delta']:.4f}")
    console.print(table)
    console.print(f"wall time {res['manifest']['wall_time_s']:.1f} s; artifacts: [bold]{out}[/bold] (config.json, results.json, manifest.json)")


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="A run directory: E1 (`interp run`), vector (`interp steer`), `interp mnist` or `interp theorem`."),
    format: str = typer.Option("html,png", "--format", help="Comma-separated: html, png, svg, pdf (HTML is always written)."),
) -> None:
    """Write every figure a run directory supports to RUN_DIR/figures/ (fixed file names).

    Example: interp plot artifacts/e1-tiny/<run-id> --format html,png,svg,pdf
    """
    import time

    from interp.export import parse_formats, save_figures
    from interp.plots import FIGURES_DIR, run_figures

    started = time.perf_counter()
    try:
        formats = parse_formats(format)
        kind, figs = run_figures(run_dir)
    except ValueError as e:
        _fail(str(e))
    done = save_figures(figs, run_dir / FIGURES_DIR, formats)
    for path in done.written:
        console.print(f"  {path}")
    if done.message:
        console.print(f"[yellow]note:[/yellow] {done.message}")
    console.print(f"{kind} run: {len(figs)} figures, {len(done.written)} files written to "
                  f"[bold]{run_dir / FIGURES_DIR}[/bold] in {time.perf_counter() - started:.1f} s")


@app.command()
@_json_output
def analyze(
    run_dir: Path = typer.Argument(..., help="A finished E1 run directory (`interp run`)."),
    n_texts: int = typer.Option(64, help="Number prompts and evaluation questions read per text set."),
    arms: str = typer.Option("", help="Students to analyse, comma-separated (e.g. control,steered); empty = all."),
    seeds: str = typer.Option("", help="Seeds to analyse, comma-separated; empty = all."),
    layers: str = typer.Option("", help="Residual layers to read, comma-separated; empty = all."),
    n_rows: int = typer.Option(128, help="Dataset rows per gradient audit (0 = all)."),
    n_random: int = typer.Option(1000, help="Random directions per null distribution."),
    multipliers: str = typer.Option("", help="E4 dose-response: also generate steered datasets at these multipliers "
                                              "(comma-separated, cached) and fit the gradient's projection on v."),
    emergence: bool = typer.Option(True, help="E9: the shift's cosine at every kept snapshot (train.snapshot_every)."),
    sufficiency: bool = typer.Option(True, help="E9: the base's trait with each student's shift added at the steering layer."),
    format: str = typer.Option("html", "--format", help="Figures written to RUN_DIR/analysis/figures/: html, png, svg, pdf."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or auto (default: the run's device setting)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Activation shifts (vs v and the prompted teacher's vector), weight deltas, the gradient audit,
    emergence, sufficiency and necessity of every student of an E1 run, with t-intervals over
    seeds; writes RUN_DIR/analysis/ (rerun to resume).

    Example: interp analyze artifacts/e1-quick/<run-id> --n-texts 64
    """
    from interp.analysis.run import ANALYSIS_DIR, analyze_run
    from interp.export import parse_formats, save_figures
    from interp.plots import FIGURES_DIR, analysis_figures

    try:
        formats = parse_formats(format)
        res = analyze_run(run_dir, n_texts=n_texts, arms=[a.strip() for a in arms.split(",") if a.strip()] or None,
                          seeds=_parse_list(seeds, int, "seeds") or None, layers=_parse_list(layers, int, "layers") or None,
                          progress=progress, n_rows=n_rows or None, n_random=n_random, device=device,
                          emergence=emergence, sufficiency_test=sufficiency,
                          multipliers=_parse_list(multipliers, float, "multipliers") or None)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    out = run_dir / ANALYSIS_DIR
    at = res["vector"]["steering_layer"]
    i = res["layers"].index(at) if at in res["layers"] else len(res["layers"]) // 2
    layer = res["layers"][i]
    table = Table("student", "cos numbers/all [95% CI]", "z", "cos questions/last [95% CI]", "z",
                  "down_proj z", "o_proj z", title=f"activation shift and weight delta vs v at layer {layer} (seeds {res['seeds']})")
    for arm, d in res["activation_shift"].items():
        a, q = d["numbers"]["all"]["by_layer"][i], d["questions"]["last"]["by_layer"][i]
        mods = res["weights"][arm]["by_layer"][i]["modules"]
        cells = [_ci(a["cosine"], "{:+.3f}"), _mean(a["z"]), _ci(q["cosine"], "{:+.3f}"), _mean(q["z"])]
        table.add_row(arm, *cells, *[_mean(mods.get(m, {}).get("z")) for m in ("mlp.down_proj", "self_attn.o_proj")])
    console.print(table)
    if any(g["by_layer"] for g in res["gradients"].values()):
        t2 = Table("data", "descent cos [95% CI]", "descent z", "mean per-example cos", title=f"gradient audit on the base at layer {layer} (vs control data)")
        for kind, g in res["gradients"].items():
            if g["by_layer"]:
                r = g["by_layer"][i]
                t2.add_row(kind, _ci(r["descent_cosine"], "{:+.3f}"), _mean(r.get("descent_z")), _mean(r["mean_example_cosine"]))
        console.print(t2)
    if res.get("emergence"):
        t3 = Table("student", *[f"step {r['step']}" for r in next(iter(res["emergence"].values()))["by_texts"]["questions/all"]],
                   title=f"emergence: cos(shift, v) at layer {layer} on the questions, all tokens")
        for arm, e in res["emergence"].items():
            t3.add_row(arm, *[_ci(r["cosine"], "{:+.3f}") for r in e["by_texts"]["questions/all"]])
        console.print(t3)
    if res.get("sufficiency"):
        t4 = Table("student", "specific shift [95% CI]", "random, same norm", "minus control", "|shift|",
                   title=f"sufficiency: base + the student's shift at layer {at}, specific log P({res['animal']}) - base")
        for arm, c in res["sufficiency"].items():
            t4.add_row(arm, _ci(c["specific_shift"], "{:+.3f}"), _ci(c["random_specific_shift"], "{:+.3f}"),
                       _ci(c.get("specific_minus_control"), "{:+.3f}") if c.get("specific_minus_control") else "-",
                       _mean(c["norm"], "{:.2f}"))
        console.print(t4)
    if res.get("necessity"):
        t5 = Table("comparison", "specific diff [95% seed CI]", "specific > 0 seeds", title="necessity (E9): transfer from the run")
        for name, c in res["necessity"].items():
            t5.add_row(name, _ci(c["specific_per_seed"], "{:+.3f}"), str(c["specific_positive_seeds"]))
        console.print(t5)
    if res.get("gradient_multiplier_trend"):
        row = res["gradient_multiplier_trend"]["by_layer"][i]
        console.print(f"gradient dose-response at layer {layer}: slope {row['slope']:.4g} per unit multiplier, "
                      f"r = {row['r'] if row['r'] is None else round(row['r'], 3)} over {row['n']} datasets; "
                      f"per-seed slope {_ci(row['slope_per_seed'], '{:.4g}')}")
    done = save_figures(analysis_figures(res), out / FIGURES_DIR, formats)
    if done.message:
        console.print(f"[yellow]note:[/yellow] {done.message}")
    console.print(f"wall time {res['timings_s']['total']:.1f} s; artifacts: [bold]{out}[/bold] (results.json, "
                  f"layer_arrays.safetensors, manifest.json, {len(done.written)} figure files)")
    return res


def _mean(d: dict | None, fmt: str = "{:+.2f}") -> str:
    return "-" if d is None else fmt.format(d["mean"])


def _animals(animal: str, text: str) -> list[str]:
    """The target first, then the null animals (default: every built-in one)."""
    from interp.prompts import ANIMALS

    others = [a.strip() for a in text.split(",") if a.strip()] or list(ANIMALS)
    return [animal] + [a for a in dict.fromkeys(others) if a != animal]


@app.command()
def entangle(
    animal: str = typer.Option("owl", help="Trait animal."),
    condition: str = typer.Option("prompt", help="Trait condition: 'prompt' (system prompt) or 'vector' (steering)."),
    number: Optional[int] = typer.Option(None, help="Number -> trait instead: P(animal) when the model loves this number."),
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    top: int = typer.Option(10, min=1, help="Top numbers reported (and tested in --dataset)."),
    animals: str = typer.Option("", help="Null animals, comma-separated (default: every built-in animal)."),
    questions: int = typer.Option(0, min=0, help="Questions used: the first N number questions, or of --split with --number (0 = all)."),
    max_number: int = typer.Option(999, min=0, help="Score the whole numbers 0..max_number."),
    layer: int = typer.Option(8, help="Steering layer (vector condition, --lens)."),
    multiplier: float = typer.Option(0.5, help="Steering multiplier (x the layer's residual norm)."),
    scope: str = typer.Option("all", help="Steered tokens: all, prompt or generated."),
    vectors: Optional[Path] = typer.Option(None, help="Bank folder with a vector per animal (`interp bank`); default: built here."),
    lens: bool = typer.Option(False, help="Also the logit lens of the trait vector at --layer over digits and separators."),
    dataset: Optional[Path] = typer.Option(None, help="A teacher's dataset: are the top numbers over-represented vs --control-dataset?"),
    control_dataset: Optional[Path] = typer.Option(None, help="The control teacher's dataset for --dataset."),
    null_numbers: int = typer.Option(8, min=0, help="Random numbers compared with --number."),
    split: str = typer.Option("heldout", help="Evaluation questions for --number: tuning, heldout or all."),
    seed: int = typer.Option(0, help="Seed of the random numbers and of the bootstrap."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default artifacts/entangle/<model>-<animal>-<condition or number>)."),
    format: str = typer.Option("html,png", "--format", help="Figures written to OUT/figures/: html, png, svg, pdf."),
    batch_size: int = typer.Option(64, min=1),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Entangled numbers: which whole numbers a trait makes likelier (against every other animal's
    condition as the null), or with --number, how much loving a number raises P(trait).

    Example: interp entangle --animal owl --condition prompt --top 10 --lens
             interp entangle --animal owl --number 87
    """
    import time

    from interp.analysis.audit import load_bank, load_rows
    from interp.entangle import (
        NUMBER_QUESTIONS, dataset_overrepresentation, entangled_numbers, logit_lens, number_prompted_trait,
    )
    from interp.export import parse_formats, save_figures
    from interp.models import load_model
    from interp.plots import FIGURES_DIR, entangled_numbers_bars, logit_lens_bars, number_prompting_shift
    from interp.prompts import contrastive_pairs
    from interp.prompts import questions as question_split
    from interp.runs import provenance, write_json
    from interp.steering import Steering, build_steering_vector

    started = time.perf_counter()
    names = _animals(animal, animals)
    what = condition if number is None else f"loves{number}"
    _finite(multiplier=multiplier)
    out = out or Path("artifacts/entangle") / f"{model.replace('/', '_')}-{_dir_name(animal, '--animal')}-{what}"
    figs, results = {}, {}
    try:
        formats = parse_formats(format)
        if (dataset is None) != (control_dataset is None):
            raise ValueError("dataset: pass --dataset and --control-dataset together (the trait's and the control teacher's)")
        m = load_model(model, device=device)
        if number is not None:
            qs = question_split(split)[: questions or None]
            r = number_prompted_trait(m, number, animal, qs, names, null_numbers, seed, batch_size)
            r.save(out)
            results = r.summary(seed=seed)
            figs["number_prompting"] = number_prompting_shift(results)
        else:
            bank = load_bank(vectors, m) if vectors else None
            steering = Steering(layer=layer, multiplier=multiplier, scope=scope) if condition == "vector" else None
            e = entangled_numbers(m, animal, condition, steering=steering, vectors=bank, animals=names,
                                  questions=NUMBER_QUESTIONS[: questions or None], numbers=range(max_number + 1),
                                  batch_size=batch_size, progress=progress)
            e.save(out, k=top)
            results = e.summary(top)
            figs["entangled_numbers"] = entangled_numbers_bars(results)
            if lens:
                vec = bank[animal] if bank and animal in bank else build_steering_vector(m, contrastive_pairs(animal), trait=animal)
                lv = logit_lens(m, vec, layer=layer)
                lv.save(out)
                results["lens"] = lv.summary()
                figs["logit_lens"] = logit_lens_bars(results["lens"])
            if dataset is not None:
                over = dataset_overrepresentation(load_rows(dataset), load_rows(control_dataset),
                                                  [r["number"] for r in results["top"]], seed=seed)
                write_json(out / "overrepresentation.json", {"dataset": str(dataset), "control": str(control_dataset), **over})
                results["overrepresentation"] = over
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    wall = round(time.perf_counter() - started, 2)
    write_json(out / "manifest.json", {"command": "entangle", "model": model, "animal": animal, "condition": condition,
                                       "number": number, "animals": names, **provenance(), "wall_time_s": wall})
    if number is not None:
        _print_prompting(results, animal)
    else:
        _print_entangled(results, top)
    done = save_figures(figs, out / FIGURES_DIR, formats)
    if done.message:
        console.print(f"[yellow]note:[/yellow] {done.message}")
    console.print(f"wall time {wall:.1f} s; artifacts: [bold]{out}[/bold]")


def _print_entangled(res: dict, top: int) -> None:
    table = Table("rank", "number", "effect", "other animals: mean [min, max]", "specific", "z", "above others",
                  title=f"numbers the {res['animal']} {res['condition']} makes likelier: Δ log P vs neutral "
                        f"({res['n_numbers']} numbers, {res['n_questions']} questions, {len(res['animals']) - 1} null animals)")
    for i, r in enumerate(res["top"], 1):
        table.add_row(str(i), str(r["number"]), f"{r['effect']:+.3f}", f"{r['null_mean']:+.3f} [{r['null_min']:+.3f}, {r['null_max']:+.3f}]",
                      f"{r['specific']:+.3f}", f"{r['z']:+.2f}", f"{r['percentile']:.0%}")
    console.print(table)
    sh = res["shuffled_top"]
    console.print(f"shuffled-trait null: the mean specific effect of {res['animal']}'s top {sh['k']} is {sh['target']:+.3f}, "
                  f"rank {sh['rank']} of {sh['of']} animals treated as the trait")
    if res.get("lens"):
        t2 = Table("token", "logit", "z in vocabulary", "above vocabulary", "z vs random directions",
                   title=f"logit lens of the {res['animal']} vector at layer {res['lens']['layer']}")
        for r in res["lens"]["tokens"]:
            t2.add_row(repr(r["token"]), f"{r['logit']:+.3f}", f"{r['z']:+.2f}", f"{r['percentile']:.1%}", f"{r['z_vs_random']:+.2f}")
        console.print(t2)
        console.print("top tokens of the direction: " + ", ".join(repr(t) for t, _ in res["lens"]["top_tokens"][:10]))
    if res.get("overrepresentation"):
        p = res["overrepresentation"]["pooled"]
        console.print(f"top {top} numbers in the dataset: {p['rate_a']:.2%} of its numbers vs {p['rate_b']:.2%} in the control's; "
                      f"difference {p['mean']:+.2%} [{p['ci95'][0]:+.2%}, {p['ci95'][1]:+.2%}] (Newcombe), "
                      f"[{p['diff_ci95_row_bootstrap'][0]:+.2%}, {p['diff_ci95_row_bootstrap'][1]:+.2%}] (rows bootstrap)")


def _print_prompting(res: dict, animal: str) -> None:
    n = res["number"]
    table = Table("system prompt", f"P({animal}) [95% CI]", "Δ log P vs none [95% CI]", "specific Δ [95% CI]",
                  title=f"subliminal prompting: the model loves {n} ({res['n_questions']} questions)")
    table.add_row("none", _ci(res["prob_neutral"], "{:.4f}"), "-", "-")
    table.add_row(f"loves {n}", _ci(res["prob_prompted"], "{:.4f}"), _ci(res["shift"]["value"], "{:+.3f}"),
                  _ci(res["specific_shift"]["value"], "{:+.3f}"))
    if res.get("prob_null"):
        sh, sp = res["shift"], res["specific_shift"]
        table.add_row(f"loves a random number (x{len(res['null_numbers'])})", f"{sum(res['prob_null']) / len(res['prob_null']):.4f}",
                      f"{sh['null_mean']:+.3f} (sd {sh['null_sd']:.3f})", f"{sp['null_mean']:+.3f} (sd {sp['null_sd']:.3f})")
    console.print(table)
    if res.get("prob_null"):
        for name in ("shift", "specific_shift"):
            d = res[name]
            z = "-" if d["z"] is None else f"{d['z']:+.2f}"
            console.print(f"{name.replace('_', ' ')} vs random numbers: z {z}, above {d['percentile']:.0%} of them, "
                          f"difference {_ci(d['vs_null'], '{:+.3f}')} (interval over questions)")


@app.command()
def divergence(
    dataset: Path = typer.Argument(..., help="Dataset directory (`interp generate`, an E1 data stage)."),
    model: Optional[str] = typer.Option(None, help="The teacher's model (default: the one its manifest names)."),
    vector: Optional[Path] = typer.Option(None, help="The trait vector a steered/random teacher used (a SteeringVector directory)."),
    rule: str = typer.Option("paper", help="paper (trait argmax emitted, control's not), emitted or argmax."),
    top: int = typer.Option(10, min=1, help="Most frequent divergence tokens shown."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default artifacts/divergence/<dataset>-<rule>)."),
    format: str = typer.Option("html,png", "--format", help="Figures written to OUT/figures/: html, png, svg, pdf."),
    batch_size: int = typer.Option(16, min=1),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
) -> None:
    """Divergence tokens of a teacher's dataset: the positions where the control teacher (same
    base, no trait) would have chosen another token; their share overall and by position.

    Example: interp divergence artifacts/datasets/steered-owl-s0 --vector artifacts/vectors/smollm2-135m-owl-mean
    """
    import time

    from interp.divergence import dataset_divergence, dataset_manifest
    from interp.export import parse_formats, save_figures
    from interp.models import load_model
    from interp.plots import FIGURES_DIR, divergence_by_offset
    from interp.steering import SteeringVector

    started = time.perf_counter()
    try:
        formats = parse_formats(format)
        name = model or dataset_manifest(dataset).get("model", {}).get("model")
        if not name:
            raise ValueError(f"model: {dataset / 'manifest.json'} names no model; pass --model")
        m = load_model(name, device=device)
        vec = SteeringVector.load(vector) if vector else None
        div = dataset_divergence(m, dataset, vec, rule=rule, batch_size=batch_size)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    out = out or Path("artifacts/divergence") / f"{dataset.name}-{rule}"
    div.save(out, m.tokenizer)
    s = div.summary(m.tokenizer, top)
    console.print(f"divergence tokens of {dataset} ({div.meta['teacher']['kind']} teacher vs control, rule {rule}): "
                  f"[bold]{s['share']:.2%}[/bold] of {s['n_positions']} completion tokens in {s['n_rows']} rows; "
                  f"{s['rows_with_divergence']:.0%} of rows have one")
    console.print("share by rule: " + ", ".join(f"{r} {v:.2%}" for r, v in s["share_by_rule"].items())
                  + f"; emitted token = trait argmax {s['teacher_argmax_is_emitted']:.0%}, = control argmax {s['control_argmax_is_emitted']:.0%}")
    by = s["share_by_offset"]
    table = Table("offset", *[f"+{k}" for k in range(10)], title="share of divergence tokens by completion-token offset")
    for start in range(0, len(by), 10):
        table.add_row(str(start), *[f"{v:.0%}" for v in by[start : start + 10]])
    console.print(table)
    if s.get("top_divergence_tokens"):
        t2 = Table("token", "count", title=f"most frequent divergence tokens (of {s['n_divergence']})")
        for tok, count in s["top_divergence_tokens"]:
            t2.add_row(repr(tok), str(count))
        console.print(t2)
    done = save_figures({"divergence_by_offset": divergence_by_offset(s)}, out / FIGURES_DIR, formats)
    if done.message:
        console.print(f"[yellow]note:[/yellow] {done.message}")
    console.print(f"wall time {time.perf_counter() - started:.1f} s; artifacts: [bold]{out}[/bold] (divergence.safetensors, divergence.json, figures/)")


@app.command()
def bank(
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    animals: str = typer.Option("owl,eagle,dolphin,cat,dog,lion,elephant,wolf", help="Comma-separated animals (built-in pairs)."),
    out: Optional[Path] = typer.Option(None, help="Bank folder (default artifacts/banks/<model>); one <animal>/ per vector."),
    n_pairs: int = typer.Option(16, help="Built-in contrastive pairs per animal."),
    position: str = typer.Option("mean", help="'mean' over the assistant statement, or 'last' token."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Build a bank of candidate trait vectors (one steering vector per animal) for `interp audit`.

    Example: interp bank --model smollm2-135m --animals owl,eagle,dolphin,cat,dog,lion,elephant,wolf
    """
    from interp.analysis.audit import build_bank
    from interp.models import load_model

    names = [a.strip() for a in animals.split(",") if a.strip()]
    out = out or Path("artifacts/banks") / model.replace("/", "_")
    try:
        m = load_model(model, device=device)
        dirs = build_bank(m, names, out, n_pairs=n_pairs, position=position, progress=progress)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    console.print(f"{len(dirs)} vectors ({', '.join(dirs)}) written to [bold]{out}[/bold]")


@app.command()
@_json_output
def audit(
    dataset: Path = typer.Argument(..., help="Dataset directory (`interp generate`, an E1 data stage) or a .jsonl file."),
    model: str = typer.Option("smollm2-135m", help="The model the data would train (registry name, HF directory or hub id)."),
    vectors: Path = typer.Option(..., "--vectors", help="Bank folder: <name>/vector.safetensors + vector.json per candidate (`interp bank`)."),
    clean: Optional[Path] = typer.Option(None, help="Clean data from the same model; default: its control teacher on the dataset's prompts."),
    layer: Optional[int] = typer.Option(None, help="Residual layer read (default: a third of the way in)."),
    n_rows: int = typer.Option(128, help="Rows audited from each dataset (0 = all)."),
    n_perm: int = typer.Option(1000, help="Permutations per p-value."),
    seed: int = typer.Option(0, help="Seed of the permutations and of the clean data's sampling."),
    alpha: float = typer.Option(0.05, help="Flag a vector when its Bonferroni-corrected p is below this."),
    method: str = typer.Option("likelihood", help="'likelihood': the data's log-likelihood ratio under each candidate's "
                               "steering; 'gradient': the SFT-loss gradient at the assistant tag."),
    multipliers: str = typer.Option("0.5", help="likelihood: steering strengths tried per candidate (x the layer's "
                                    "residual norm), e.g. 0.25,0.5,1 when unknown: the best counts, p pays for the "
                                    "choice, and each costs one forward per row and candidate."),
    vocab: str = typer.Option("grammar", help="likelihood: 'grammar' (number data: the grammar's allowed tokens, as a "
                              "constrained teacher samples) or 'full' (any data)."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default artifacts/audits/<dataset>-<bank>-L<layer>)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Rank a bank of trait vectors by the evidence that a dataset carries them (by default: how
    likely the data become under each vector's steering; tested against clean data from the same
    model), each with a score and a permutation p.

    Example: interp audit artifacts/datasets/steered-owl-s0 --model smollm2-135m --vectors artifacts/banks/smollm2-135m
    """
    import time

    from interp.analysis.audit import audit_dataset, clean_rows, load_bank, load_rows
    from interp.models import load_model
    from interp.runs import provenance, write_json, write_jsonl

    _finite(alpha=alpha)
    started = time.perf_counter()
    try:
        rows = load_rows(dataset)[: n_rows or None]
        m = load_model(model, device=device)
        candidates = load_bank(vectors, m)
        layer = m.n_layers // 3 if layer is None else layer
        strengths = _parse_list(multipliers, float, "--multipliers")
        made_clean = clean is None
        ref = load_rows(clean)[: n_rows or None] if clean else clean_rows(m, [r["prompt"] for r in rows], seed, progress=progress)
        res = audit_dataset(m, rows, ref, candidates, layer, n_perm=n_perm, seed=seed, alpha=alpha, method=method,
                            multipliers=strengths, vocab=vocab, progress=progress)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    name = dataset.stem if dataset.suffix == ".jsonl" else dataset.name
    out = out or Path("artifacts/audits") / f"{name}-{vectors.name}-L{layer}"
    if made_clean:
        write_jsonl(out / "clean.jsonl", ref)
    wall = round(time.perf_counter() - started, 2)
    write_json(out / "results.json", res)
    write_json(out / "manifest.json", {"dataset": str(dataset), "bank": str(vectors), "bank_names": list(candidates),
                                       "clean": str(clean) if clean else "generated: clean.jsonl", **provenance(), "wall_time_s": wall})
    like = method == "likelihood"
    table = Table("rank", "vector", "LLR nats/row" if like else "score", "vs clean" if like else "cos", "p",
                  "p Bonferroni", "flagged",
                  title=f"{method} audit of {name} at layer {layer}: {res['n_rows']} rows vs {res['n_clean']} clean rows"
                        + ("" if like else f" (random cos sd {res['random_cosine_sd']:.3f})"))
    for r in res["ranking"]:
        second = f"{r['excess']:+.4g} (x{r['multiplier']:g})" if like else f"{r['cosine']:+.3f}"
        table.add_row(str(r["rank"]), r["name"], f"{r['score']:+.4g}", second, f"{r['p_value']:.4f}",
                      f"{r['p_bonferroni']:.4f}", "yes" if r["flagged"] else "")
    console.print(table)
    console.print(f"wall time {wall:.1f} s; artifacts: [bold]{out}[/bold] (results.json, manifest.json)")
    return res


if __name__ == "__main__":
    app()

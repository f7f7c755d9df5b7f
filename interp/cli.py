"""The `interp` command line: options and printing only. Every command turns its options into a
config object, calls one library runner (`run_e1`, `run_steer`, `run_analyze`, ...) that writes an
artifact directory whose manifest names its kind, and prints the tables `interp.tables` renders
from the results. The analysis commands live in `interp.cli_analysis`; shared helpers in
`interp.cli_support`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from interp.cli_analysis import analyze, audit, bank, divergence, entangle, lineage, row_audit, select
from interp.cli_support import (
    JSON_HELP,
    call,
    console,
    dir_name,
    done,
    fail,
    fail_if_disk_full,
    finite,
    json_output,
    note,
    parse_list,
    path_str,
    show,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Subliminal-learning interpretability toolkit.")


def _version(value: bool) -> None:
    if value:
        from interp import __version__
        from interp.runs import git_commit

        console.print(f"interp {__version__} (git {git_commit() or 'unknown'})")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the package version and git commit, then exit.",
    ),
) -> None:
    """Subliminal-learning interpretability toolkit."""


@app.command()
@json_output
def models(json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> list:
    """List the models interp knows, with their install status."""
    from interp.models import list_models
    from interp.tables import models_table

    rows = list_models()
    show(models_table(rows, console.width))
    return rows


@app.command()
@json_output
def steer(
    animal: str = typer.Option("owl", help="Trait animal (built-in contrastive pairs)."),
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    out: Path = typer.Option(None, help="Vector directory (default artifacts/vectors/<model>-<animal>-<position>)."),
    pairs: Optional[Path] = typer.Option(
        None, help="JSONL of your own pairs: {'trait': ..., 'neutral': ...} per line."
    ),
    n_pairs: int = typer.Option(16, help="Built-in pairs to use."),
    position: str = typer.Option("mean", help="'mean' over the assistant statement, or 'last' token."),
    layers: str = typer.Option("", help="Sweep these layers (comma-separated); empty = every 2nd middle layer."),
    multipliers: str = typer.Option("0.25,0.5,1.0", help="Sweep these multipliers (x the layer's residual norm)."),
    split: str = typer.Option("tuning", help="Question split for the sweep: tuning, heldout or all."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show a progress bar over the sweep."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP + " Here: sweep.json."),
) -> dict:
    """Build a steering vector (mean difference per layer) and sweep layers x multipliers.

    Example: interp steer --animal owl --model smollm2-135m --layers 4,8,12 --multipliers 0.25,0.5
    """
    from interp.steering_run import SWEEP_FILE, SteerConfig, run_steer
    from interp.tables import steer_table

    dir_name(animal, "--animal")  # it names the vector's directory
    layer_list = tuple(parse_list(layers, int, "--layers"))
    try:  # the model's layers are checked right after it loads, before the vector is built
        cfg = SteerConfig(
            animal=animal,
            model=model,
            pairs=path_str(pairs),
            n_pairs=n_pairs,
            position=position,
            layers=layer_list,
            multipliers=tuple(parse_list(multipliers, float, "--multipliers")),
            split=split,
            device=device,
        )
        out = out or cfg.default_dir()
        sweep = run_steer(cfg, out, progress)
    except ValueError as e:  # `layers: ...` from the library: name the option
        fail(f"--{e}" if str(e).startswith(("layers:", "multipliers:")) else str(e))
    except (ModuleNotFoundError, FileNotFoundError) as e:
        fail(str(e))
    show(steer_table(sweep, split, console.width))
    console.print(
        f"vector and sweep saved to [bold]{out}[/bold] (vector.safetensors, vector.json, {SWEEP_FILE}, manifest.json)"
    )
    return sweep


@app.command("match-multiplier")
@json_output
def match_multiplier(
    config: Path = typer.Argument(
        ..., help="An E1 config: its model, animal, vector, teacher.layer/scope and data.dtype."
    ),
    multipliers: str = typer.Option(
        "0,0.02,0.05,0.1,0.15,0.2,0.3,0.5", help="The steered teacher's grid (x the layer's residual norm)."
    ),
    target: Optional[list[str]] = typer.Option(
        None,
        "--target",
        help="Prompted teacher matched: prompted or prompted_fewshot "
        "(repeatable; default: the config's prompted kinds).",
    ),
    vector: Optional[Path] = typer.Option(
        None, help="A vector directory (default: built from the config's pairs, as `interp run` does)."
    ),
    out: Optional[Path] = typer.Option(None, help="Output directory (default artifacts/match/<experiment>-L<layer>)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show a progress bar over the grid."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """The steered multiplier whose P(trait) on the tuning questions matches a prompted teacher's (log P interpolated between grid points).

    Example: interp match-multiplier experiments/configs/e2_protocol/operating.toml --multipliers 0,0.05,0.1,0.2,0.5
    """
    from interp.config import load_config
    from interp.matching import TABLE_FILE, MatchConfig, run_match
    from interp.tables import match_table

    e1 = call(load_config, config)
    cfg = call(
        MatchConfig.from_e1,
        e1,
        tuple(parse_list(multipliers, float, "--multipliers")),
        tuple(target or ()),
        vector=path_str(vector),
        device=device,
    )
    res = call(run_match, cfg, out, progress)
    show(match_table(res, console.width))
    done(Path(res["out_dir"]), f"results.json, {TABLE_FILE}, manifest.json")
    return res


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
        fail(
            f"--animal: {animal!r}, but the vector in {vector} was built for {trait!r}; "
            f"pass --animal {trait} or a vector built for {animal!r}"
        )
    if animal not in ANIMALS and animal != trait:
        fail(f"--animal: {animal!r} is not a known animal; choose one of {', '.join(ANIMALS)}")
    if (out / MANIFEST_FILE).exists() and not force:
        fail(f"--out: {out} already holds a dataset ({MANIFEST_FILE}); pass --force to overwrite it, or another --out")


@app.command()
@json_output
def generate(
    teacher: str = typer.Option(
        "steered",
        help="control, prompted, steered, random, prompted_ablated, prompted_fewshot "
        "(the system prompt and a few trait exchanges) or prompted_fewshot_ablated.",
    ),
    animal: str = typer.Option("owl", help="Trait animal."),
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    vector: Optional[Path] = typer.Option(None, help="Vector directory from `interp steer` (steered/random)."),
    layer: int = typer.Option(8, help="Steering layer."),
    multiplier: float = typer.Option(0.5, help="Steering multiplier (x the layer's residual norm)."),
    scope: str = typer.Option("all", help="Steered tokens: all, prompt or generated (prompted_ablated: always all)."),
    n: int = typer.Option(256, help="Number prompts to sample."),
    seed: int = typer.Option(0, help="Sampling seed (prompts use --prompt-seed)."),
    prompt_seed: int = typer.Option(0, help="Seed of the number prompts."),
    constrained: bool = typer.Option(True, help="Decode within the number grammar (else free sampling + filter)."),
    temperature: float = typer.Option(1.0),
    batch_size: int = typer.Option(32),
    random_seed: int = typer.Option(0, help="Seed of the random direction (random teacher)."),
    dtype: str = typer.Option(
        "fp32", help="Weights while sampling: fp32, or bf16 (about 1.8x faster on a CPU with bf16 matmul)."
    ),
    out: Path = typer.Option(
        None,
        help="Output directory (default artifacts/datasets/<model>-<teacher>-<animal>"
        "[-L<layer>x<multiplier>]-s<seed>).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite a dataset already in the output directory."),
    device: str = typer.Option("auto"),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP + " Here: the dataset's manifest.json."),
) -> dict:
    """Sample a teacher on number prompts, filter, and write samples.jsonl, dataset.jsonl, manifest.json.

    Example: interp generate --teacher steered --vector artifacts/vectors/smollm2-135m-owl-mean --n 64
    """
    from interp.generate import SampleConfig
    from interp.models import load_model
    from interp.steering import Steering, SteeringVector
    from interp.teachers import DataConfig, build_teacher, generate_dataset

    finite(multiplier=multiplier, temperature=temperature)
    if teacher in ("prompted_ablated", "prompted_fewshot_ablated") and scope != "all":
        fail(f"--scope: {scope!r}, but a {teacher} teacher projects v out on every token; drop --scope")
    if out is None:
        dir_name(animal, "--animal"), dir_name(teacher, "--teacher")
    out = out or dataset_dir_name(model, teacher, animal, layer, multiplier, seed)
    _check_generate(teacher, animal, vector, out, force)
    # the same teacher `interp run` builds for this kind (E1Config.teacher_for)
    t = call(
        build_teacher, teacher, animal, call(Steering, layer=layer, multiplier=multiplier, scope=scope), random_seed
    )
    sampling = call(
        SampleConfig, temperature=temperature, batch_size=batch_size, constrained=constrained, seed=seed, dtype=dtype
    )
    cfg = call(DataConfig, n, prompt_seed, sampling)
    vec = call(SteeringVector.load, vector) if vector else None
    man = call(generate_dataset, call(load_model, model, device=device), t, vec, cfg, out)
    f = man["filter"]
    console.print(
        f"{man['n_kept']}/{man['n_samples']} passed ({f['pass_rate']:.0%}); rejected by rule: "
        + ", ".join(f"{k} {v}" for k, v in f["rejected"].items() if v)
    )
    console.print(f"{man['generation']['tokens_per_s']} tok/s; written to [bold]{out}[/bold]")
    return man


@app.command()
@json_output
def run(
    config: Path = typer.Argument(..., help="Experiment TOML (see experiments/configs/quick.toml)."),
    overrides: Optional[list[str]] = typer.Argument(
        None,
        help="Config fields to override, FIELD=VALUE with a TOML "
        "value, e.g. train.lr=2e-4 seeds=[0,1]; the run id is the overridden config's.",
    ),
    root: Path = typer.Option(
        Path("artifacts"), help="Artifact root: runs under <root>/<experiment>/, stages under <root>/cache/."
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="List the stages, which are cached, and the run directory; "
        "compute nothing (the models are loaded for their fingerprints).",
    ),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Run E1 end to end (vector, teachers, datasets, students, evaluation); rerun to resume.

    Example: interp run experiments/configs/quick.toml train.lr=2e-4 seeds=[0,1]
    """
    from interp.overrides import load_config_with
    from interp.pipeline import run_e1
    from interp.tables import e1_tables

    cfg = call(load_config_with, config, overrides or ())
    console.print(
        f"E1 [bold]{cfg.experiment}[/bold]: {cfg.model}, trait {cfg.animal}, seeds {cfg.seeds}, teachers {cfg.teacher.kinds}"
    )
    if dry_run:
        return print_plan(cfg, root)
    from interp.train import TrainingDiverged

    try:
        res = run_e1(cfg, root, progress=progress, log=console.print)
    except (ValueError, ModuleNotFoundError, FileNotFoundError, TrainingDiverged) as e:
        fail(str(e))
    except OSError as e:  # a full disk outside a stage (the run directory's own files)
        fail_if_disk_full(e)
    show(e1_tables(res, console.width))
    console.print(f"artifacts: [bold]{res['run_dir']}[/bold] (results.json, manifest.json, config.json)")
    return res


def print_plan(cfg, root: Path) -> dict:
    """`interp run --dry-run`: the stages `run_e1` would meet and which are cached."""
    from interp.plan import plan_e1
    from interp.tables import plan_table

    plan = call(plan_e1, cfg, root)
    show(plan_table(plan, console.width))
    return plan


@app.command()
@json_output
def sweep(
    config: Path = typer.Argument(
        ..., help="Sweep TOML: an E1 config with a \\[sweep] table (see experiments/configs/noise_ablation.toml)."
    ),
    root: Path = typer.Option(
        Path("artifacts"), help="Artifact root: the sweep under <root>/<sweep name>/, stages under <root>/cache/."
    ),
    executor: str = typer.Option(None, help="local (this machine) or submitit (SLURM); default: sweep.executor."),
    workers: int = typer.Option(None, min=1, help="Local jobs at once (1: in this process); default: sweep.workers."),
    partition: str = typer.Option(
        None, help="SLURM partition (implies --executor submitit; overrides \\[sweep] slurm)."
    ),
    time_min: int = typer.Option(None, "--time", min=1, help="SLURM time limit per job, minutes (default 240)."),
    cpus: int = typer.Option(None, min=1, help="CPUs per job (SLURM cpus_per_task; also the job's torch threads)."),
    mem_gb: int = typer.Option(None, min=1, help="Memory per job, GB."),
    gpus: int = typer.Option(None, min=0, help="GPUs per job."),
    cluster: str = typer.Option(
        None, help="submitit's executor: slurm (default where srun exists), local (subprocesses here) or debug."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and jobs, run nothing."),
    format: str = typer.Option(
        "html,png", "--format", help="Figures written to the sweep's figures/: html, png, svg, pdf."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar over jobs."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP + " With --dry-run: the cells."),
) -> dict:
    """Run a grid of E1 runs, one independent job per (cell, seed); rerun to resume.

    Example: interp sweep experiments/configs/noise_ablation.toml --workers 2
    """
    from interp.export import parse_formats, save_figures
    from interp.plots import FIGURES_DIR, sweep_figures
    from interp.tables import sweep_plan_table, sweep_tables
    from interp.sweep import load_sweep, run_sweep, slurm_options

    try:
        sw = load_sweep(config)
        formats = parse_formats(format)
    except ValueError as e:
        fail(str(e))
    if dry_run:
        plan = {
            "sweep": sw.section.name,
            "directory": str(sw.directory(root)),
            "n_jobs": len(sw.jobs()),
            "cells": [{"id": c.id, "label": c.label(), "seeds": c.config.seeds} for c in sw.cells],
        }
        show(sweep_plan_table(plan, console.width))
        return plan
    try:
        res = run_sweep(
            sw,
            root,
            executor,
            workers,
            progress,
            log=console.print,
            slurm=slurm_options(partition, time_min, cpus, mem_gb, gpus, cluster),
        )
    except (ValueError, RuntimeError, ModuleNotFoundError, FileNotFoundError) as e:
        fail(str(e))
    show(sweep_tables(res, console.width))
    note(save_figures(sweep_figures(res), sw.directory(root) / FIGURES_DIR, formats).message)
    console.print(
        f"jobs {res['timings_s']['jobs']:.1f} s ({res['timings_s']['jobs_run']} run), table {res['timings_s']['table']:.1f} s; "
        f"artifacts: [bold]{sw.directory(root)}[/bold] (results.json, grid.json, cells/, jobs/, figures/)"
    )
    return res


@app.command("lr-select")
@json_output
def lr_select(
    config: Path = typer.Argument(
        ..., help="An E1 config with an \\[lr_select] table (see experiments/configs/e23_regime/lr_select.toml)."
    ),
    root: Path = typer.Option(
        Path("artifacts"), help="Artifact root: the selection under <root>/<name>/, stages under <root>/cache/."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the modes, learning rates and trials; run nothing."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Choose each training mode's learning rate by held-out loss on the control teacher's data (never on transfer); rerun to resume.

    Example: interp lr-select experiments/configs/e23_regime/lr_select.toml
    """
    from interp.lr_select import TABLE_FILE, load_lr_select, run_directory, run_lr_select
    from interp.tables import lr_select_table

    cfg = call(load_lr_select, config)
    trials = cfg.trials()
    console.print(
        f"lr-select [bold]{cfg.name}[/bold]: {cfg.e1.model}, control data of seeds {cfg.e1.seeds}, "
        f"{len(cfg.modes)} modes, {len(trials)} trials"
    )
    if dry_run:
        plan = {
            "name": cfg.name,
            "directory": str(run_directory(cfg, root)),
            "n_trials": len(trials),
            "modes": {m.name: {"method": m.method, "lrs": list(m.lrs)} for m in cfg.modes},
        }
        for name, m in plan["modes"].items():
            console.print(f"  {name:<12} {m['method']:<5} lr {', '.join(f'{x:g}' for x in m['lrs'])}")
        return plan
    res = call(run_lr_select, cfg, root, progress, console.print)
    show(lr_select_table(res, console.width))
    done(Path(res["run_dir"]), f"results.json, {TABLE_FILE}, manifest.json, config.json")
    return res


@app.command()
@json_output
def mnist(
    seeds: int = typer.Option(25, help="Models per condition (independent seeds)."),
    first_seed: int = typer.Option(0, help="Seeds are first_seed .. first_seed + seeds - 1."),
    m: int = typer.Option(3, "--m", help="Number of auxiliary logits."),
    hidden: int = typer.Option(256, help="Width of both hidden layers."),
    teacher_steps: int = typer.Option(600, help="Adam steps training the teacher on digits."),
    student_steps: int = typer.Option(600, help="Adam steps distilling each student on noise images."),
    batch_size: int = typer.Option(128, help="Images per step."),
    lr: float = typer.Option(3e-4, help="Adam learning rate."),
    idx_dir: Optional[Path] = typer.Option(
        None, help="Folder with real MNIST IDX files; default: sklearn's 8x8 digits."
    ),
    sweep_m: Optional[list[int]] = typer.Option(None, "--sweep-m", help="Also rerun at this m (repeatable)."),
    sweep_hidden: Optional[list[int]] = typer.Option(
        None, "--sweep-hidden", help="Also rerun at this width (repeatable)."
    ),
    sweep_steps: Optional[list[int]] = typer.Option(
        None, "--sweep-steps", help="Also score the students at this many steps, read off the same run (repeatable)."
    ),
    init: str = typer.Option(
        "uniform", help="Initialisation: uniform (nn.Linear's) or normal (Cloud et al.'s N(0, 1/fan_in))."
    ),
    out: Optional[Path] = typer.Option(None, help="Run directory; default artifacts/mnist/<run-id>."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """E7: digit accuracy of students distilled on auxiliary logits over noise (same vs cross init).

    Example: interp mnist --seeds 25 --m 3 --sweep-m 1 --sweep-m 10
    """
    from interp.mnist import CHANCE, MnistConfig, run_mnist
    from interp.runs import run_id
    from interp.tables import mnist_tables

    finite(lr=lr)
    try:
        cfg = MnistConfig(
            n_seeds=seeds,
            first_seed=first_seed,
            n_aux=m,
            hidden=hidden,
            teacher_steps=teacher_steps,
            student_steps=student_steps,
            batch_size=batch_size,
            lr=lr,
            idx_dir=str(idx_dir) if idx_dir else None,
            sweep_aux=tuple(sweep_m or ()),
            sweep_hidden=tuple(sweep_hidden or ()),
            sweep_steps=tuple(sweep_steps or ()),
            init=init,
        )
        out = out or Path("artifacts/mnist") / run_id(cfg.key())  # the key: old configs keep their ids
        res = run_mnist(cfg, out)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    show(mnist_tables(res["results"], m, hidden, CHANCE, console.width))
    done(out, "config.json, results.json, manifest.json")
    return res["results"]


@app.command()
@json_output
def theorem(
    seeds: int = typer.Option(64, help="Independent seeds per cell."),
    first_seed: int = typer.Option(0, help="Seeds are first_seed .. first_seed + seeds - 1."),
    model: Optional[list[str]] = typer.Option(
        None, "--model", help="mlp and/or transformer (repeatable; default both)."
    ),
    teacher: Optional[list[str]] = typer.Option(
        None, "--teacher", help="trained and/or random (repeatable; default both)."
    ),
    loss: Optional[list[str]] = typer.Option(None, "--loss", help="soft_ce and/or mse (repeatable; default both)."),
    steps: int = typer.Option(5, help="SGD steps that make a 'trained' teacher."),
    teacher_lr: float = typer.Option(0.05, help="SGD learning rate of the 'trained' teacher."),
    perturb_scale: float = typer.Option(
        0.01, help="A 'random' teacher adds this times each tensor's rms times N(0, 1)."
    ),
    student_lr: float = typer.Option(1e-3, help="Step size of the one student step."),
    hidden: int = typer.Option(256, help="MLP hidden width."),
    n_inputs: int = typer.Option(64, help="Distillation inputs per seed (noise images / random token sequences)."),
    out: Optional[Path] = typer.Option(None, help="Run directory; default artifacts/theorem/<run-id>."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """E8: does one distillation step move a same-init student toward the teacher? <u, delta> across seeds.

    Example: interp theorem --seeds 64 --model mlp --model transformer
    """
    from interp.runs import run_id
    from interp.tables import theorem_table
    from interp.theory import LOSSES, MODELS, TEACHERS, TheoremConfig, run_theorem

    finite(teacher_lr=teacher_lr, perturb_scale=perturb_scale, student_lr=student_lr)
    try:
        cfg = TheoremConfig(
            n_seeds=seeds,
            first_seed=first_seed,
            models=tuple(model or MODELS),
            teachers=tuple(teacher or TEACHERS),
            losses=tuple(loss or LOSSES),
            teacher_steps=steps,
            teacher_lr=teacher_lr,
            perturb_scale=perturb_scale,
            student_lr=student_lr,
            hidden=hidden,
            n_inputs=n_inputs,
        )
        out = out or Path("artifacts/theorem") / run_id(cfg)
        res = run_theorem(cfg, out)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    show(theorem_table(res["results"], console.width))
    done(out, "config.json, results.json, manifest.json")
    return res["results"]


@app.command()
@json_output
def plot(
    run_dir: Path = typer.Argument(
        ...,
        help="An artifact directory: `interp run`, `sweep`, `steer`, `analyze` "
        "(RUN/analysis), `entangle`, `divergence`, `audit`, `mnist` or `theorem`.",
    ),
    format: str = typer.Option(
        "html,png", "--format", help="Comma-separated: html, png, svg, pdf (HTML is always written)."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print {kind, figures, written} on stdout as JSON; everything else goes to stderr."
    ),
) -> dict:
    """Write every figure an artifact directory supports to RUN_DIR/figures/ (fixed file names);
    its kind comes from its manifest.

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
        fail(str(e))
    saved = save_figures(figs, run_dir / FIGURES_DIR, formats)
    for path in saved.written:
        console.print(f"  {path}")
    note(saved.message)
    console.print(
        f"{kind} run: {len(figs)} figures, {len(saved.written)} files written to "
        f"[bold]{run_dir / FIGURES_DIR}[/bold] in {time.perf_counter() - started:.1f} s"
    )
    return {"kind": kind, "figures": list(figs), "written": [str(p) for p in saved.written], "note": saved.message}


for command in (
    analyze,
    entangle,
    divergence,
    bank,
    audit,
    row_audit,
    select,
    lineage,
):  # the analysis commands, defined in cli_analysis
    app.command()(command)

if __name__ == "__main__":
    app()

"""The `interp` command line: options and printing only. Every command turns its options into a
config object, calls one library runner (`run_e1`, `run_steer`, `run_analyze`, ...) that writes an
artifact directory whose manifest names its kind, and prints the tables `interp.tables` renders
from the results. The commands that build teachers and their data live in `interp.cli_teachers`,
the analysis commands in `interp.cli_analysis`, the toy experiments' in `interp.cli_toy`; shared
helpers in `interp.cli_support`. All are registered here, in the order `interp --help` lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from interp.cli_analysis import analyze, audit, bank, divergence, entangle, lineage, row_audit, select
from interp.cli_support import (
    JSON_HELP,
    call,
    console,
    done,
    fail,
    fail_if_disk_full,
    json_output,
    note,
    say,
    show,
)
from interp.cli_teachers import dataset_dir_name as dataset_dir_name  # tests build the default directory
from interp.cli_teachers import generate, match_multiplier, steer
from interp.cli_toy import mnist, theorem

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


@json_output
def models(json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> list:
    """List the models interp knows, with their install status."""
    from interp.models import list_models
    from interp.tables import models_table

    rows = list_models()
    show(models_table(rows, console.width))
    return rows


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
    checkpoint_minutes: float = typer.Option(
        None,
        min=0.1,
        help="Checkpoint each student after this many minutes of training, so an interrupted run "
        "resumes it mid-way (same result, same keys; a full student's checkpoint is ~1.6 GB while it trains).",
    ),
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
        res = run_e1(cfg, root, progress=progress, log=say, checkpoint_minutes=checkpoint_minutes)
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
    progress: bool = typer.Option(
        True, help="Show a progress bar over jobs; without it, one line per finished job (a sweep logging to a file)."
    ),
    checkpoint_minutes: float = typer.Option(
        None,
        min=0.1,
        help="Checkpoint each student after this many minutes of training, so an interrupted run "
        "resumes it mid-way (same result, same keys; a full student's checkpoint is ~1.6 GB while it trains).",
    ),
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
        from interp.plan import plan_sweep

        plan = plan_sweep(sw, root)
        show(sweep_plan_table(plan, console.width))
        return plan
    try:
        res = run_sweep(
            sw,
            root,
            executor,
            workers,
            progress,
            log=say,
            slurm=slurm_options(partition, time_min, cpus, mem_gb, gpus, cluster),
            checkpoint_minutes=checkpoint_minutes,
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
    from interp.lr_select import TABLE_FILE, load_lr_select, run_lr_select
    from interp.tables import lr_select_plan_text, lr_select_table

    cfg = call(load_lr_select, config)
    trials = cfg.trials()
    console.print(
        f"lr-select [bold]{cfg.name}[/bold]: {cfg.e1.model}, control data of seeds {cfg.e1.seeds}, "
        f"{len(cfg.modes)} modes, {len(trials)} trials"
    )
    if dry_run:
        from interp.plan import plan_lr_select

        plan = plan_lr_select(cfg, root)
        console.print(lr_select_plan_text(plan))  # as console.print wrote each line before: wrapped, highlighted
        return plan
    res = call(run_lr_select, cfg, root, progress, say)
    show(lr_select_table(res, console.width))
    done(Path(res["run_dir"]), f"results.json, {TABLE_FILE}, manifest.json, config.json")
    return res


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


def _carry_lines(rep, verb: str, where: Path) -> None:
    console.print(
        f"{verb} {len(rep.copied)} stages ({rep.bytes_copied / 1e6:.1f} MB) to [bold]{where}[/bold]; "
        f"{len(rep.present)} already there; {len(rep.left)} left behind"
    )
    reasons: dict[str, int] = {}
    for why in rep.left.values():
        key = "unfinished" if why == "unfinished" else "too large (weights)"
        reasons[key] = reasons.get(key, 0) + 1
    for why, n in reasons.items():
        console.print(f"  left: {n} {why}")
    if rep.other_cpu:
        console.print(
            f"  {len(rep.other_cpu)} of the copied stages were computed on another CPU (or one not recorded): "
            "used as they are, but recomputed here they would give other bytes"
        )


@json_output
def pack(
    out: Path = typer.Argument(..., help="Folder to copy the stages into (OUT/cache/); created if absent."),
    root: Path = typer.Option(Path("artifacts"), help="Artifact root whose cache (<root>/cache/) is packed."),
    max_file_mb: float = typer.Option(
        5.0, help="Leave behind any stage with a file larger than this (a student's weights)."
    ),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Copy every finished stage small enough to carry (datasets, evaluations, vectors, students
    kept as "none") to OUT, so a sweep resumes on another machine after `interp unpack OUT`.

    Example: interp pack carry/e5-gemma --root artifacts
    """
    from interp.carry import pack as pack_stages

    rep = call(pack_stages, root, out, int(max_file_mb * 1e6))
    _carry_lines(rep, "packed", out)
    return {"copied": rep.copied, "present": rep.present, "left": rep.left, "bytes_copied": rep.bytes_copied}


@json_output
def unpack(
    src: Path = typer.Argument(..., help="A folder `interp pack` wrote."),
    root: Path = typer.Option(Path("artifacts"), help="Artifact root to copy the stages into (<root>/cache/)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Check every stage of a pack, then copy the ones the root lacks; rerun the sweep or run to
    resume it from them. A stage that fails its check is refused in one line, and nothing is copied.

    Example: interp unpack carry/e5-gemma --root artifacts
    """
    from interp.carry import unpack as unpack_stages

    rep = call(unpack_stages, src, root)
    _carry_lines(rep, "unpacked", root)
    return {
        "copied": rep.copied,
        "present": rep.present,
        "left": rep.left,
        "bytes_copied": rep.bytes_copied,
        "other_cpu": rep.other_cpu,
    }


for command in (
    models,
    steer,
    match_multiplier,
    generate,
    run,
    sweep,
    pack,
    unpack,
    lr_select,
    mnist,
    theorem,
    plot,
    analyze,
    entangle,
    divergence,
    bank,
    audit,
    row_audit,
    select,
    lineage,
):  # typer names each after its function (lr_select: lr-select) and lists them in this order
    app.command()(command)

if __name__ == "__main__":
    app()

"""The `interp` commands of the toy experiments: mnist (E7, students distilled on auxiliary logits)
and theorem (E8, one distillation step against the teacher's displacement); registered on the app
by `interp.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from interp.cli_support import (
    JSON_HELP,
    console,
    done,
    fail,
    finite,
    json_output,
    show,
)


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

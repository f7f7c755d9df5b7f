"""The `interp` commands that build teachers and their data: steer (a steering vector and its
sweep), match-multiplier (the steered multiplier matching a prompted teacher) and generate (a
teacher's number dataset); registered on the app by `interp.cli`. Each builds a config, calls one
library runner and prints the tables `interp.tables` renders from its results."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from interp.cli_support import (
    JSON_HELP,
    call,
    console,
    dir_name,
    done,
    fail,
    finite,
    json_output,
    parse_list,
    path_str,
    show,
)


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

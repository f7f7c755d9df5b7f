"""The `interp` command line: thin wrappers over the library (each command builds a config and
calls one library function)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Subliminal-learning interpretability toolkit.")
console = Console()


def _fail(msg: str) -> None:
    console.print(f"[red]error:[/red] {msg}")
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
        return [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"{field}: {text!r} is not a comma-separated list of numbers")


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
) -> None:
    """Build a steering vector (mean difference per layer) and sweep layers x multipliers.

    Example: interp steer --animal owl --model smollm2-135m --layers 4,8,12 --multipliers 0.25,0.5
    """
    from interp.evaluate import steering_sweep
    from interp.models import load_model
    from interp.prompts import contrastive_pairs, questions
    from interp.runs import write_json
    from interp.steering import build_steering_vector

    try:
        m = load_model(model, device=device)
        prs = _load_pairs(pairs) if pairs else contrastive_pairs(animal, n_pairs)
        vec = build_steering_vector(m, prs, position=position, trait=animal)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    out = out or Path("artifacts/vectors") / f"{model.replace('/', '_')}-{animal}-{position}"
    vec.save(out)
    console.print(f"vector saved to [bold]{out}[/bold] (layers {vec.n_layers}, d_model {vec.d_model})")
    lays = _parse_list(layers, int, "layers") or list(range(m.n_layers // 6, 2 * m.n_layers // 3 + 1, 2))
    mults = _parse_list(multipliers, float, "multipliers")
    try:
        sweep = steering_sweep(m, vec, animal, lays, mults, questions(split))
    except ValueError as e:
        _fail(str(e))
    write_json(out / "sweep.json", sweep)
    table = Table("layer", *[f"x{mu:g}" for mu in mults], title=f"P({animal}) / base P ({sweep['base_prob']:.2e}), {split} questions")
    for l in lays:
        cells = {c["multiplier"]: c for c in sweep["cells"] if c["layer"] == l}
        table.add_row(str(l), *[f"{cells[mu]['ratio']:.1f}" for mu in mults])
    console.print(table)
    console.print(f"sweep saved to {out / 'sweep.json'}")


@app.command()
def generate(
    teacher: str = typer.Option("steered", help="control, prompted, steered or random."),
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
    out: Path = typer.Option(None, help="Output directory (default artifacts/datasets/<teacher>-<animal>-s<seed>)."),
    device: str = typer.Option("auto"),
) -> None:
    """Sample a teacher on number prompts, filter, and write samples.jsonl, dataset.jsonl, manifest.json.

    Example: interp generate --teacher steered --vector artifacts/vectors/smollm2-135m-owl-mean --n 64
    """
    from interp.generate import SampleConfig
    from interp.models import load_model
    from interp.steering import Steering, SteeringVector
    from interp.teachers import DataConfig, Teacher, generate_dataset

    try:
        steering = Steering(layer=layer, multiplier=multiplier, scope=scope)
        t = Teacher(teacher, animal, steering if teacher in ("steered", "random") else None, random_seed)
        cfg = DataConfig(n, prompt_seed, SampleConfig(temperature=temperature, batch_size=batch_size,
                                                      constrained=constrained, seed=seed))
        m = load_model(model, device=device)
        vec = SteeringVector.load(vector) if vector else None
        out = out or Path("artifacts/datasets") / f"{teacher}-{animal}-s{seed}"
        man = generate_dataset(m, t, vec, cfg, out)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    f = man["filter"]
    console.print(f"{man['n_kept']}/{man['n_samples']} passed ({f['pass_rate']:.0%}); rejected by rule: "
                  + ", ".join(f"{k} {v}" for k, v in f["rejected"].items() if v))
    console.print(f"{man['generation']['tokens_per_s']} tok/s; written to [bold]{out}[/bold]")


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment TOML (see experiments/configs/quick.toml)."),
    root: Path = typer.Option(Path("artifacts"), help="Artifact root: runs under <root>/<experiment>/, stages under <root>/cache/."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Run E1 end to end (vector, teachers, datasets, students, evaluation); rerun to resume.

    Example: interp run experiments/configs/quick.toml
    """
    from interp.config import load_config
    from interp.pipeline import run_e1

    try:
        cfg = load_config(config)
    except ValueError as e:
        _fail(str(e))
    console.print(f"E1 [bold]{cfg.experiment}[/bold]: {cfg.model}, trait {cfg.animal}, seeds {cfg.seeds}, teachers {cfg.teacher.kinds}")
    try:
        res = run_e1(cfg, root, progress=progress, log=console.print)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
        _fail(str(e))
    print_e1(res)


def _ci(d: dict, fmt: str = "{:.4f}") -> str:
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci95'][0])}, {fmt.format(d['ci95'][1])}]"


def print_e1(res: dict) -> None:
    table = Table("model", f"P({res['animal']}) [95% CI]", "log P [95% CI]", title=f"trait probability ({res['n_questions']} {res['question_split']} questions, seeds {res['seeds']})")
    for arm, d in res["arms"].items():
        table.add_row(arm if arm == "base" else f"{arm} student", _ci(d["prob"]), _ci(d["logprob"], "{:.3f}"))
    console.print(table)
    t2 = Table("comparison", "delta log P [95% CI]", "P ratio", "specific delta log P [95% CI]", "trait rank", "interval covers", title="transfer")
    for name, d in res["transfer"].items():
        t2.add_row(name, _ci(d["logprob_diff"], "{:+.3f}"), f"{d['prob_ratio']:.2f}x", _ci(d["specific_logprob_diff"], "{:+.3f}"),
                   str(d["trait_rank_among_animals"]), d["logprob_diff"]["covers"])
    console.print(t2)
    console.print("stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in res["timings_s"].items()))
    console.print(f"artifacts: [bold]{res['run_dir']}[/bold] (results.json, manifest.json, config.json)")


if __name__ == "__main__":
    app()

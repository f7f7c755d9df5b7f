"""The `interp` commands that analyse runs, datasets and models: analyze, entangle, divergence,
bank, audit, row-audit, select and lineage (registered on the app by `interp.cli`). Each builds a config, calls one library
runner and prints the tables `interp.tables` renders from its results."""

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
    note,
    parse_list,
    path_str,
    show,
)


@json_output
def analyze(
    run_dir: Path = typer.Argument(..., help="A finished E1 run directory (`interp run`)."),
    n_texts: int = typer.Option(64, help="Number prompts and evaluation questions read per text set."),
    arms: str = typer.Option("", help="Students to analyse, comma-separated (e.g. control,steered); empty = all."),
    seeds: str = typer.Option("", help="Seeds to analyse, comma-separated; empty = all."),
    layers: str = typer.Option("", help="Residual layers to read, comma-separated; empty = all."),
    n_rows: int = typer.Option(128, help="Dataset rows per gradient audit (0 = all)."),
    n_random: int = typer.Option(1000, help="Random directions per null distribution."),
    multipliers: str = typer.Option(
        "",
        help="E4 dose-response: also generate steered datasets at these multipliers "
        "(comma-separated, cached) and fit the gradient's projection on v.",
    ),
    emergence: bool = typer.Option(True, help="E9: the shift's cosine at every kept snapshot (train.snapshot_every)."),
    sufficiency: bool = typer.Option(
        True, help="E9: the base's trait with each student's shift added at the steering layer."
    ),
    format: str = typer.Option(
        "html", "--format", help="Figures written to RUN_DIR/analysis/figures/: html, png, svg, pdf."
    ),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or auto (default: the run's device setting)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Activation shifts (vs v and the prompted teacher's vector), weight deltas, the gradient audit,
    emergence, sufficiency and necessity of every student of an E1 run, with t-intervals over
    seeds; writes RUN_DIR/analysis/ (rerun to resume).

    Example: interp analyze artifacts/e1-quick/<run-id> --n-texts 64
    """
    from interp.analysis.run import ANALYSIS_DIR, AnalyzeConfig, run_analyze
    from interp.export import parse_formats, save_figures
    from interp.plots import FIGURES_DIR, analysis_figures
    from interp.tables import analysis_tables

    formats = call(parse_formats, format)
    cfg = call(
        AnalyzeConfig,
        n_texts=n_texts,
        arms=[a.strip() for a in arms.split(",") if a.strip()] or None,
        seeds=parse_list(seeds, int, "seeds") or None,
        layers=parse_list(layers, int, "layers") or None,
        n_rows=n_rows or None,
        n_random=n_random,
        emergence=emergence,
        sufficiency=sufficiency,
        multipliers=parse_list(multipliers, float, "multipliers") or None,
        device=device,
    )
    res = call(run_analyze, cfg, run_dir, progress)
    out = run_dir / ANALYSIS_DIR
    show(analysis_tables(res, console.width))
    saved = save_figures(analysis_figures(res), out / FIGURES_DIR, formats)
    note(saved.message)
    done(out, f"results.json, layer_arrays.safetensors, manifest.json, {len(saved.written)} figure files")
    return res


@json_output
def entangle(
    animal: str = typer.Option("owl", help="Trait animal."),
    condition: str = typer.Option("prompt", help="Trait condition: 'prompt' (system prompt) or 'vector' (steering)."),
    number: Optional[int] = typer.Option(
        None, help="Number -> trait instead: P(animal) when the model loves this number."
    ),
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    top: int = typer.Option(10, min=1, help="Top numbers reported (and tested in --dataset)."),
    animals: str = typer.Option("", help="Null animals, comma-separated (default: every built-in animal)."),
    questions: int = typer.Option(
        0, min=0, help="Questions used: the first N number questions, or of --split with --number (0 = all)."
    ),
    max_number: int = typer.Option(999, min=0, help="Score the whole numbers 0..max_number."),
    layer: int = typer.Option(8, help="Steering layer (vector condition, --lens)."),
    multiplier: float = typer.Option(0.5, help="Steering multiplier (x the layer's residual norm)."),
    scope: str = typer.Option("all", help="Steered tokens: all, prompt or generated."),
    vectors: Optional[Path] = typer.Option(
        None, help="Bank folder with a vector per animal (`interp bank`); default: built here."
    ),
    lens: bool = typer.Option(
        False, help="Also the logit lens of the trait vector at --layer over digits and separators."
    ),
    dataset: Optional[Path] = typer.Option(
        None, help="A teacher's dataset: are the top numbers over-represented vs --control-dataset?"
    ),
    control_dataset: Optional[Path] = typer.Option(None, help="The control teacher's dataset for --dataset."),
    null_numbers: int = typer.Option(8, min=0, help="Random numbers compared with --number."),
    split: str = typer.Option("heldout", help="Evaluation questions for --number: tuning, heldout or all."),
    seed: int = typer.Option(0, help="Seed of the random numbers and of the bootstrap."),
    out: Optional[Path] = typer.Option(
        None, help="Output directory (default artifacts/entangle/<model>-<animal>-<condition or number>)."
    ),
    format: str = typer.Option("html,png", "--format", help="Figures written to OUT/figures/: html, png, svg, pdf."),
    batch_size: int = typer.Option(64, min=1),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Entangled numbers: which whole numbers a trait makes likelier (against every other animal's
    condition as the null), or with --number, how much loving a number raises P(trait).

    Example: interp entangle --animal owl --condition prompt --top 10 --lens
             interp entangle --animal owl --number 87
    """
    from interp.entangle_run import EntangleConfig, run_entangle
    from interp.export import parse_formats
    from interp.tables import entangled_tables, prompting_tables

    finite(multiplier=multiplier)
    cfg = call(
        EntangleConfig,
        animal=animal,
        condition=condition,
        number=number,
        model=model,
        top=top,
        animals=tuple(animals.split(",")),
        questions=questions,
        max_number=max_number,
        layer=layer,
        multiplier=multiplier,
        scope=scope,
        vectors=path_str(vectors),
        lens=lens,
        dataset=path_str(dataset),
        control_dataset=path_str(control_dataset),
        null_numbers=null_numbers,
        split=split,
        seed=seed,
        formats=tuple(call(parse_formats, format)),
        batch_size=batch_size,
        device=device,
    )
    out = out or call(cfg.default_dir)
    res = call(run_entangle, cfg, out, progress, log=note)
    show(entangled_tables(res, top, console.width) if number is None else prompting_tables(res, console.width))
    done(out, "manifest.json, figures/")
    return res


@json_output
def divergence(
    dataset: Path = typer.Argument(..., help="Dataset directory (`interp generate`, an E1 data stage)."),
    model: Optional[str] = typer.Option(None, help="The teacher's model (default: the one its manifest names)."),
    vector: Optional[Path] = typer.Option(
        None, help="The trait vector a steered/random teacher used (a SteeringVector directory)."
    ),
    rule: str = typer.Option("paper", help="paper (trait argmax emitted, control's not), emitted or argmax."),
    top: int = typer.Option(10, min=1, help="Most frequent divergence tokens shown."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default artifacts/divergence/<dataset>-<rule>)."),
    format: str = typer.Option("html,png", "--format", help="Figures written to OUT/figures/: html, png, svg, pdf."),
    batch_size: int = typer.Option(16, min=1),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Divergence tokens of a teacher's dataset: the positions where the control teacher (same
    base, no trait) would have chosen another token; their share overall and by position.

    Example: interp divergence artifacts/datasets/steered-owl-s0 --vector artifacts/vectors/smollm2-135m-owl-mean
    """
    from interp.divergence import DivergenceConfig, run_divergence
    from interp.export import parse_formats
    from interp.tables import divergence_tables

    cfg = call(
        DivergenceConfig,
        dataset=str(dataset),
        model=model,
        vector=path_str(vector),
        rule=rule,
        top=top,
        formats=tuple(call(parse_formats, format)),
        batch_size=batch_size,
        device=device,
    )
    out = out or cfg.default_dir()
    res = call(run_divergence, cfg, out, log=note)
    show(divergence_tables(res, str(dataset), res["meta"]["teacher"]["kind"], rule, console.width))
    done(out, "divergence.safetensors, divergence.json, manifest.json, figures/")
    return res


@json_output
def bank(
    model: str = typer.Option("smollm2-135m", help="Registry name, local HF directory or hub id."),
    animals: str = typer.Option(
        "owl,eagle,dolphin,cat,dog,lion,elephant,wolf", help="Comma-separated animals (built-in pairs)."
    ),
    out: Optional[Path] = typer.Option(
        None, help="Bank folder (default artifacts/banks/<model>); one <animal>/ per vector."
    ),
    n_pairs: int = typer.Option(16, help="Built-in contrastive pairs per animal."),
    family: str = typer.Option(
        "assistant",
        help="Contrast texts: 'assistant' (the teachers' own), or 'third_person' / "
        "'user_side' (independent of them; default folder <model>-<family>).",
    ),
    position: str = typer.Option("mean", help="'mean' over the assistant statement, or 'last' token."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    json_out: bool = typer.Option(
        False, "--json", help="Print {animal: vector directory} on stdout as JSON; everything else goes to stderr."
    ),
) -> dict:
    """Build a bank of candidate trait vectors (one steering vector per animal) for `interp audit`.

    Example: interp bank --model smollm2-135m --animals owl,eagle,dolphin,cat,dog,lion,elephant,wolf
    """
    from interp.analysis.audit import build_bank
    from interp.models import load_model
    from interp.prompts import CONTRAST_FAMILIES, TEACHER_FAMILY

    if family not in CONTRAST_FAMILIES:  # before the model loads
        fail(f"--family: {family!r} is not one of {', '.join(CONTRAST_FAMILIES)}")
    names = [a.strip() for a in animals.split(",") if a.strip()]
    out = out or Path("artifacts/banks") / (
        model.replace("/", "_") + ("" if family == TEACHER_FAMILY else f"-{family}")
    )
    dirs = call(
        build_bank,
        call(load_model, model, device=device),
        names,
        out,
        n_pairs=n_pairs,
        position=position,
        progress=progress,
        family=family,
    )
    console.print(f"{len(dirs)} vectors ({', '.join(dirs)}) written to [bold]{out}[/bold]")
    return {name: str(d) for name, d in dirs.items()}


@json_output
def audit(
    dataset: Path = typer.Argument(
        ..., help="Dataset directory (`interp generate`, an E1 data stage) or a .jsonl file."
    ),
    model: str = typer.Option(
        "smollm2-135m", help="The model the data would train (registry name, HF directory or hub id)."
    ),
    vectors: Path = typer.Option(
        ..., "--vectors", help="Bank folder: <name>/vector.safetensors + vector.json per candidate (`interp bank`)."
    ),
    clean: Optional[Path] = typer.Option(
        None, help="Clean data from the same model; default: its control teacher on the dataset's prompts."
    ),
    layer: Optional[int] = typer.Option(None, help="Residual layer read (default: a third of the way in)."),
    n_rows: int = typer.Option(128, help="Rows audited from each dataset (0 = all)."),
    n_perm: int = typer.Option(1000, help="Permutations per p-value."),
    seed: int = typer.Option(0, help="Seed of the permutations and of the clean data's sampling."),
    alpha: float = typer.Option(0.05, help="Flag a vector when its Bonferroni-corrected p is below this."),
    method: str = typer.Option(
        "likelihood",
        help="'likelihood': the data's log-likelihood ratio under each candidate's "
        "steering; 'gradient': the SFT-loss gradient at the assistant tag.",
    ),
    multipliers: str = typer.Option(
        "0.5",
        help="likelihood: steering strengths tried per candidate (x the layer's "
        "residual norm), e.g. 0.25,0.5,1 when unknown: the best counts, p pays for the "
        "choice, and each costs one forward per row and candidate.",
    ),
    vocab: str = typer.Option(
        "grammar",
        help="likelihood: 'grammar' (number data: the grammar's allowed tokens, as a "
        "constrained teacher samples) or 'full' (any data).",
    ),
    out: Optional[Path] = typer.Option(
        None, help="Output directory (default artifacts/audits/<dataset>-<bank>-L<layer>)."
    ),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Rank a bank of trait vectors by the evidence that a dataset carries them (by default: how
    likely the data become under each vector's steering; tested against clean data from the same
    model), each with a score and a permutation p.

    Example: interp audit artifacts/datasets/steered-owl-s0 --model smollm2-135m --vectors artifacts/banks/smollm2-135m
    """
    from interp.analysis.audit import AuditConfig, run_audit
    from interp.tables import audit_table

    finite(alpha=alpha)
    cfg = call(
        AuditConfig,
        dataset=str(dataset),
        vectors=str(vectors),
        model=model,
        clean=path_str(clean),
        layer=layer,
        n_rows=n_rows,
        n_perm=n_perm,
        seed=seed,
        alpha=alpha,
        method=method,
        multipliers=tuple(parse_list(multipliers, float, "--multipliers")),
        vocab=vocab,
        device=device,
    )
    res = call(run_audit, cfg, out, progress)
    out = out or cfg.default_dir(res["layer"])
    show(audit_table(res, cfg.name, console.width))
    done(out, "results.json, manifest.json")
    return res


@json_output
def row_audit(
    dataset: Path = typer.Argument(
        ..., help="Dataset directory scored (`interp generate`, an E1 data stage, `interp select`)."
    ),
    teacher: str = typer.Option(
        "steered",
        help="The candidate teacher: steered, random, prompted, prompted_ablated, "
        "prompted_fewshot, prompted_fewshot_ablated, control with --teacher-model, or finetuned with --teacher-model a finetune stage.",
    ),
    vector: Optional[Path] = typer.Option(
        None, help="The trait vector's directory (steered, random, prompted_ablated)."
    ),
    layer: int = typer.Option(8, help="Steering layer."),
    multiplier: float = typer.Option(0.5, help="Steering multiplier (x the layer's residual norm)."),
    scope: str = typer.Option("all", help="Steered tokens: all, prompt or generated."),
    animal: str = typer.Option("owl", help="The trait (prompted teachers' system prompt)."),
    random_seed: int = typer.Option(0, help="The random teacher's direction seed."),
    teacher_model: Optional[Path] = typer.Option(
        None,
        help="A student or finetune stage directory: the teacher is "
        "those weights (a first-generation or fine-tuned teacher).",
    ),
    control: Optional[Path] = typer.Option(
        None, help="A control teacher's dataset: the AUROC of DATASET's rows against its rows."
    ),
    model: Optional[str] = typer.Option(None, help="The base the data would train (default: the dataset manifest's)."),
    vocab: str = typer.Option("grammar", help="'grammar' (number data, as a constrained teacher samples) or 'full'."),
    n_rows: int = typer.Option(
        0, min=0, help="Rows scored per dataset, the first ones (0 = all; `interp select` needs all)."
    ),
    batch_size: int = typer.Option(8, min=1),
    out: Optional[Path] = typer.Option(
        None, help="Output directory (default artifacts/row-audits/<dataset>-<teacher>...)."
    ),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Score every row of a dataset by log P(teacher) - log P(base) of its completion, teacher-forced
    as a student reads it; with --control, the AUROC of its rows against the control's.

    Example: interp row-audit artifacts/cache/data-<hash> --vector artifacts/cache/vector-<hash> --layer 8
             --multiplier 0.5 --control artifacts/cache/data-<control hash>
    """
    from interp.row_audit import RowAuditConfig, run_row_audit
    from interp.tables import row_audit_table

    finite(multiplier=multiplier)
    cfg = call(
        RowAuditConfig,
        dataset=str(dataset),
        teacher=teacher,
        vector=path_str(vector),
        layer=layer,
        multiplier=multiplier,
        scope=scope,
        animal=animal,
        random_seed=random_seed,
        teacher_model=path_str(teacher_model),
        control=path_str(control),
        model=model,
        vocab=vocab,
        n_rows=n_rows,
        batch_size=batch_size,
        device=device,
    )
    out = out or cfg.default_dir()
    res = call(run_row_audit, cfg, out, progress)
    show(row_audit_table(res, console.width))
    done(out, "scores.safetensors, results.json, manifest.json")
    return res


@json_output
def select(
    dataset: Path = typer.Argument(..., help="The dataset directory the scores were computed for."),
    scores: Path = typer.Option(..., "--scores", help="A row audit of exactly this dataset (`interp row-audit`)."),
    quantile: str = typer.Option("top", help="top, middle, bottom, random (equal rows, by seed) or q0..q<bins-1>."),
    bins: int = typer.Option(5, min=2, help="Equal bins the rows are cut into by score (5: quintiles)."),
    seed: int = typer.Option(0, help="Seed of the random bin."),
    out: Optional[Path] = typer.Option(None, help="Output dataset directory (default <dataset>-<quantile>-of-<bins>)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Write the rows of one score bin of a dataset (top, middle, bottom quintile, or a random one
    with as many rows) as a new dataset directory, with its lineage to the dataset and the scores.

    Example: interp select artifacts/cache/data-<hash> --scores artifacts/row-audits/<name> --quantile top
    """
    from interp.selection import select_dataset
    from interp.tables import selection_line

    out = out or dataset.parent / f"{dataset.name}-{dir_name(quantile, '--quantile')}-of-{bins}"
    man = call(select_dataset, dataset, scores, out, quantile, bins, seed)
    console.print(selection_line(man), markup=False, highlight=False)
    done(out, "dataset.jsonl, manifest.json")
    return man


@json_output
def lineage(
    target: Path = typer.Argument(
        ..., help="A run directory (`interp run`) or a stage directory (student, data, mix, vector)."
    ),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> dict:
    """Follow the manifests back: each student -> its dataset -> its teacher (kind, steering, base
    fingerprint, noise) -> the vector, and through a student that taught a later generation, on to
    the first teacher's vector.

    Example: interp lineage artifacts/e1/<run-id>
    """
    from interp.lineage import lineage as trace
    from interp.tables import lineage_text

    res = call(trace, target)
    show(lineage_text(res))
    return res

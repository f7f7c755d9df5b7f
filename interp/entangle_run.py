"""`interp entangle` as a library call: entangled numbers of a trait (or, with `number`, the
trait that loving a number raises), written to an artifact directory.

    from interp.entangle_run import EntangleConfig, run_entangle
    summary = run_entangle(EntangleConfig(model="tiny", animals=("cat", "dog"), max_number=30), "artifacts/entangle/x")

Trait -> numbers: `entangle.safetensors` + `entangle.json` (`Entanglement`), with `lens` the
logit lens of the trait vector (`lens.*`), with `dataset` the top numbers' over-representation
in it against `control_dataset` (`overrepresentation.json`). Number -> trait:
`prompting.safetensors` + `prompting.json` (`NumberPrompting`). Figures under `figures/`, and
`manifest.json` (kind "entangle") last.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from interp.entangle import CONDITIONS
from interp.runs import MANIFEST_FILE, provenance, safe_name, write_json

OVERREPRESENTATION_FILE = "overrepresentation.json"


@dataclass(frozen=True)
class EntangleConfig:
    """animal: the trait.
    condition: how the trait is carried: "prompt" (system prompt) or "vector" (steering).
    number: number -> trait instead: P(animal) when the model loves this number (None: trait -> numbers).
    model: registry name, local HF directory or hub id.
    top: top numbers reported (and tested in `dataset`).
    animals: null animals (empty: every built-in one); the trait is always first.
    questions: questions used: the first N number questions, or of `split` with `number` (0: all).
    max_number: the whole numbers 0..max_number are scored.
    layer, multiplier, scope: steering of the vector condition (`layer` also for the lens).
    vectors: bank folder with a vector per animal (`interp bank`); None: built from contrastive pairs.
    lens: also the logit lens of the trait vector at `layer`.
    dataset, control_dataset: a trait teacher's dataset and the control teacher's, together.
    null_numbers: random numbers compared with `number`.
    split: evaluation questions for `number`: tuning, heldout or all.
    seed: seed of the random numbers and of the bootstrap.
    formats: figure formats written to figures/.
    """

    animal: str = "owl"
    condition: str = "prompt"
    number: int | None = None
    model: str = "smollm2-135m"
    top: int = 10
    animals: tuple[str, ...] = ()
    questions: int = 0
    max_number: int = 999
    layer: int = 8
    multiplier: float = 0.5
    scope: str = "all"
    vectors: str | None = None
    lens: bool = False
    dataset: str | None = None
    control_dataset: str | None = None
    null_numbers: int = 8
    split: str = "heldout"
    seed: int = 0
    formats: tuple[str, ...] = ("html", "png")
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        from interp.export import parse_formats

        if self.condition not in CONDITIONS:
            raise ValueError(f"condition: {self.condition!r} is not one of {CONDITIONS}")
        if not math.isfinite(self.multiplier):
            raise ValueError(f"multiplier: {self.multiplier} is not a finite number")
        if (self.dataset is None) != (self.control_dataset is None):
            raise ValueError(
                "dataset: pass --dataset and --control-dataset together (the trait's and the control teacher's)"
            )
        parse_formats(self.formats)

    def null_animals(self) -> list[str]:
        """The trait first, then the null animals (default: every built-in one)."""
        from interp.prompts import ANIMALS

        others = [a.strip() for a in self.animals if a.strip()] or list(ANIMALS)
        return [self.animal] + [a for a in dict.fromkeys(others) if a != self.animal]

    def default_dir(self) -> Path:
        """artifacts/entangle/<model>-<animal>-<condition, or loves<number>>."""
        what = self.condition if self.number is None else f"loves{self.number}"
        return Path("artifacts/entangle") / f"{self.model.replace('/', '_')}-{safe_name(self.animal, 'animal')}-{what}"


def run_entangle(
    cfg: EntangleConfig, out_dir: str | Path, progress: bool = True, log: Callable[[str], None] | None = None
) -> dict:
    """Score, save and plot; returns the summary printed by `interp entangle` (what the JSON files hold)."""
    from interp.export import save_figures
    from interp.models import load_model
    from interp.plots import FIGURES_DIR

    out, started = Path(out_dir), time.perf_counter()
    model = load_model(cfg.model, device=cfg.device)
    if cfg.number is not None:
        results, figs = _number_prompting(cfg, model, out)
    else:
        results, figs = _entangled(cfg, model, out, progress)
    wall = round(time.perf_counter() - started, 2)
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": "entangle",
            "command": "entangle",
            "model": cfg.model,
            "animal": cfg.animal,
            "condition": cfg.condition,
            "number": cfg.number,
            "animals": cfg.null_animals(),
            **provenance(model.device),
            "wall_time_s": wall,
        },
    )
    done = save_figures(figs, out / FIGURES_DIR, cfg.formats)
    if done.message and log is not None:
        log(f"note: {done.message}")
    return results


def _number_prompting(cfg: EntangleConfig, model, out: Path) -> tuple[dict, dict]:
    from interp.entangle import number_prompted_trait
    from interp.plots import number_prompting_shift
    from interp.prompts import questions

    qs = questions(cfg.split)[: cfg.questions or None]
    r = number_prompted_trait(
        model, cfg.number, cfg.animal, qs, cfg.null_animals(), cfg.null_numbers, cfg.seed, cfg.batch_size
    )
    r.save(out)
    results = r.summary(seed=cfg.seed)
    return results, {"number_prompting": number_prompting_shift(results)}


def _entangled(cfg: EntangleConfig, model, out: Path, progress: bool) -> tuple[dict, dict]:
    from interp.analysis.audit import load_bank, load_rows
    from interp.entangle import NUMBER_QUESTIONS, dataset_overrepresentation, entangled_numbers, logit_lens
    from interp.plots import entangled_numbers_bars, logit_lens_bars
    from interp.prompts import contrastive_pairs
    from interp.steering import Steering, build_steering_vector

    bank = load_bank(cfg.vectors, model) if cfg.vectors else None
    steering = (
        Steering(layer=cfg.layer, multiplier=cfg.multiplier, scope=cfg.scope) if cfg.condition == "vector" else None
    )
    e = entangled_numbers(
        model,
        cfg.animal,
        cfg.condition,
        steering=steering,
        vectors=bank,
        animals=cfg.null_animals(),
        questions=NUMBER_QUESTIONS[: cfg.questions or None],
        numbers=range(cfg.max_number + 1),
        batch_size=cfg.batch_size,
        progress=progress,
    )
    e.save(out, k=cfg.top)
    results = e.summary(cfg.top)
    figs = {"entangled_numbers": entangled_numbers_bars(results)}
    if cfg.lens:
        vec = (
            bank[cfg.animal]
            if bank and cfg.animal in bank
            else build_steering_vector(model, contrastive_pairs(cfg.animal), trait=cfg.animal)
        )
        lv = logit_lens(model, vec, layer=cfg.layer)
        lv.save(out)
        results["lens"] = lv.summary()
        figs["logit_lens"] = logit_lens_bars(results["lens"])
    if cfg.dataset is not None:
        over = dataset_overrepresentation(
            load_rows(cfg.dataset), load_rows(cfg.control_dataset), [r["number"] for r in results["top"]], seed=cfg.seed
        )
        write_json(
            out / OVERREPRESENTATION_FILE, {"dataset": str(cfg.dataset), "control": str(cfg.control_dataset), **over}
        )
        results["overrepresentation"] = over
    return results, figs

"""What an analysis of a finished E1 run reads (`interp.analysis.run`): its settings
(`AnalyzeConfig`), the run directory's config and stages, the selected arms, seeds and layers, the
texts rendered as training and evaluation showed them, the prompted teacher's reference vector,
and each seed's own models (`RunInputs.for_seed`), with the run's part of every student report's
cache key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from interp.analysis.activations import layer_cosines
from interp.analysis.aggregate import POSITIONS
from interp.analysis.emergence import prompted_vector
from interp.analysis.seed_models import SeedModels, base_description, vector_mismatch
from interp.config import E1Config, parse_config
from interp.evaluate import question_prompts
from interp.finetune import DIRECTION_FILE, FINETUNE_STAGE, finetuned_direction
from interp.models import LoadedModel, load_model
from interp.pipeline import SeedBases
from interp.prompts import PROMPT_VERSION, number_prompts, questions
from interp.runs import CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, content_hash, file_hash, read_json, stage_dirs
from interp.steering import SteeringVector
from interp.teachers import Teacher

ANALYSIS_DIR = "analysis"
PROMPTED_DIR = "prompted_vector"  # the prompted teacher's reference vector (E2), in the vector format
__all__ = [
    "AnalyzeConfig",
    "RunInputs",
    "read_run",
    "open_run",
    "reference_context",
    "number_texts",
    "question_texts",
    "ANALYSIS_DIR",
    "PROMPTED_DIR",
]


# ----------------------------------------------------------------------------- the run directory


def read_run(run_dir: str | Path) -> tuple[E1Config, dict[str, Path]]:
    """The run's config and {stage name: stage directory}; a clear error for anything that is not
    a finished E1 run or whose cached stages are gone."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ValueError(f"run_dir: {d} is not a directory; pass an E1 run directory (artifacts/<experiment>/<run-id>)")
    for name in (RESULTS_FILE, CONFIG_FILE, MANIFEST_FILE):
        if not (d / name).exists():
            raise ValueError(
                f"run_dir: {d} has no {name}; analyze needs a finished E1 run (`interp run CONFIG` writes it)"
            )
    cfg = parse_config(read_json(d / CONFIG_FILE), str(d / CONFIG_FILE))
    stages = stage_dirs(d)
    if "vector" not in stages or not any(n.startswith("student/") for n in stages):
        raise ValueError(
            f"run_dir: {d / MANIFEST_FILE} lists no vector or student stages; it is not an E1 run manifest"
        )
    for name, sdir in stages.items():
        if not (sdir / MANIFEST_FILE).exists() and not name.startswith("eval/"):
            raise ValueError(
                f"stage {name}: {sdir} is missing or unfinished; rerun `interp run` on this config to rebuild it"
            )
    return cfg, stages


def _by_arm_seed(stages: dict[str, Path], prefix: str) -> dict[tuple[str, int], Path]:
    out = {}
    for name, sdir in stages.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == prefix and parts[2].startswith("seed"):
            out[(parts[1], int(parts[2].removeprefix("seed")))] = sdir
    return out


def _select(kind: str, wanted: Sequence | None, available: list) -> list:
    if wanted is None:
        return available
    bad = [w for w in wanted if w not in available]
    if bad or not wanted:
        raise ValueError(f"{kind}: {bad or list(wanted)} not in this run (it has {available})")
    return [a for a in available if a in wanted]


# ----------------------------------------------------------------------------- the texts read


def number_texts(model: LoadedModel, n: int, prompt_seed: int) -> list[str]:
    """The first `n` number prompts of a seed, rendered as the students saw them in training."""
    return [model.chat([{"role": "user", "content": p}]) for p in number_prompts(n, prompt_seed)]


def question_texts(model: LoadedModel, n: int, split: str) -> list[str]:
    """The first `n` evaluation questions, rendered as `interp.evaluate` asks them (answer prefix included)."""
    return question_prompts(model, questions(split)[:n])


# ----------------------------------------------------------------------------- settings and inputs


@dataclass(frozen=True)
class AnalyzeConfig:
    """What `run_analyze` reads of a finished E1 run, and how.

    n_texts: number prompts and evaluation questions read per text set.
    arms, seeds: restrict to these students (`steered`, `control+kd`, ...; the gradient audit
        covers the trait kinds among them); None: all.
    layers: residual layers read; None: all.
    n_rows: dataset rows per gradient audit (None: all).
    n_random, seed: random directions per null distribution, and their seed.
    k: top singular directions of each weight update compared with v.
    max_len: tokens per dataset row in the gradient audit.
    emergence: the shift's cosine at every kept training snapshot (train.snapshot_every).
    sufficiency: the base's trait with each student's shift added at the steering layer.
    multipliers: also generate steered datasets at these multipliers (cached like the run's own)
        and fit the gradient's projection on v against the multiplier (E4); None: no trend.
    device: cpu, cuda or auto; None: the run's own setting.
    """

    n_texts: int = 64
    arms: Sequence[str] | None = None
    seeds: Sequence[int] | None = None
    layers: Sequence[int] | None = None
    n_rows: int | None = 128
    n_random: int = 1000
    seed: int = 0
    k: int = 4
    max_len: int = 192
    emergence: bool = True
    sufficiency: bool = True
    multipliers: Sequence[float] | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.n_texts < 1:
            raise ValueError(f"n_texts: {self.n_texts} must be >= 1")
        if self.multipliers is not None and not all(math.isfinite(m) for m in self.multipliers):
            raise ValueError(f"multipliers: {list(self.multipliers)} must be finite numbers")


@dataclass
class RunInputs:
    """What every step of an analysis reads: the run, its (teacher's root) base and vector, the
    selection and the texts, and the run's part of a student report's cache key; `for_seed` gives
    each seed's own bases and vector, `student_key` the key with them (the same key without noise
    or student_model)."""

    run_dir: Path
    config: E1Config
    stages: dict[str, Path]
    students: dict[tuple[str, int], Path]
    datasets: dict[tuple[str, int], Path]
    arms: list[str]
    seeds: list[int]
    base: LoadedModel
    vector: SteeringVector
    layers: list[int]
    questions: list[str]
    prompted: SteeringVector
    key: dict
    seed_bases: SeedBases | None = None
    seed_records: dict[int, dict] = field(default_factory=dict)  # SeedModels.record() of every seed read
    _current: SeedModels | None = None

    @property
    def out_dir(self) -> Path:
        return self.run_dir / ANALYSIS_DIR

    @property
    def kinds(self) -> list[str]:
        """The trait kinds among the arms: what the gradient audit compares with control data."""
        return [k for k in dict.fromkeys(a.split("+")[0] for a in self.arms) if k != "control"]

    def for_seed(self, seed: int) -> SeedModels:
        """`seed`'s teacher and student bases and vector, rebuilt as the pipeline built them (the
        same `SeedBases`, so the same noise draw); one seed held at a time (a noised copy is a
        whole model). Refuses a base whose fingerprint is not the one the seed's students recorded."""
        if self._current is not None and self._current.seed == seed:
            return self._current
        self._current = None  # let the previous seed's noised copies go before drawing the next
        bases = self.seed_bases or SeedBases(self.config, self.base, self.base)
        teacher, student = bases.for_seed(seed)
        name = f"vector/seed{seed}" if f"vector/seed{seed}" in self.stages else "vector"  # the pipeline's names
        vdir = self.stages[name]
        vector = self.vector if name == "vector" else SteeringVector.load(vdir)
        try:
            vector.check_compatible(teacher)
        except ValueError as e:
            raise ValueError(
                f"stage {name}: not built on seed {seed}'s teacher base ({e}); rerun `interp run` on this config"
            ) from None
        fp = student.fingerprint()
        for arm in self.arms:
            sdir = self.students[(arm, seed)]
            trained_from = read_json(sdir / CONFIG_FILE).get("base") if (sdir / CONFIG_FILE).exists() else None
            if trained_from is not None and trained_from != fp:
                raise ValueError(
                    f"stage student/{arm}/seed{seed}: trained from a base with fingerprint {trained_from}, "
                    f"but seed {seed}'s base rebuilt from config.json ({student.name}) has {fp}; the run's "
                    "[noise] or student_model no longer rebuild it: rerun `interp run` on this config"
                )
        # a noised copy shares its model's tokenizer, and so renders the same texts
        same_tok = student.tokenizer is self.base.tokenizer
        qs = self.questions if same_tok else question_texts(student, len(self.questions), self.config.eval.split)
        prompted = self.prompted
        if teacher is not self.base:  # a noised teacher: the system prompt's effect on it, on the run's prompts
            prompted = prompted_vector(
                teacher,
                self.config.animal,
                number_prompts(self.key["n_texts"], self.config.data_config(self.seeds[0]).prompt_seed),
                *reference_context(self.config),
            )
            prompted.save(self.out_dir / PROMPTED_DIR / f"seed{seed}")
        mismatch = vector_mismatch(vector, student)
        ft_dir = self.finetune_dir(seed, teacher)
        finetuned = finetune = None
        if ft_dir is not None and not mismatch:
            finetuned = {pos: finetuned_direction(ft_dir, pos, self.layers) for pos in POSITIONS}
            finetune = {
                "stage": str(ft_dir),
                "direction_hash": file_hash(ft_dir / DIRECTION_FILE),
                "cosine_v": layer_cosines(finetuned["all"], vector.vectors[self.layers]).tolist(),
            }
        self._current = SeedModels(
            seed,
            teacher,
            student,
            vector,
            vdir,
            prompted,
            qs,
            base_description(self.config, seed, "student", student),
            base_description(self.config, seed, "teacher", teacher),
            mismatch,
            finetuned,
            finetune,
        )
        self.seed_records[seed] = self._current.record()
        return self._current

    def finetune_dir(self, seed: int, teacher: LoadedModel) -> Path | None:
        """The finetune stage of `seed`'s teacher base (the one whose config.json names its
        fingerprint: with weight noise each seed's teacher is tuned from its own base); None when
        the run has no fine-tuned teacher."""
        found = [d for n, d in self.stages.items() if n.split("/")[0] == FINETUNE_STAGE]
        if not found:
            return None
        fp = teacher.fingerprint()
        mine = [d for d in found if (d / CONFIG_FILE).exists() and read_json(d / CONFIG_FILE).get("model") == fp]
        if not mine:
            raise ValueError(
                f"stage finetune: none of {[str(d) for d in found]} was tuned from seed {seed}'s teacher "
                f"base ({fp}); rerun `interp run` on this config"
            )
        return mine[0]

    def student_key(self, m: SeedModels) -> dict:
        """The cache key of a report on a student of seed `m` (without the student): the run's key,
        with this seed's vector, base and rendered questions (the run's own ones without noise),
        and the fine-tuned teacher's direction where the run has one (no other key changes)."""
        return {
            **self.key,
            "vector": m.vector.hash(),
            "base": m.base["fingerprint"],
            "questions": content_hash(m.questions),
            "prompted_vector": m.prompted.hash(),
            **({"finetuned_direction": m.finetune["direction_hash"]} if m.finetune is not None else {}),
        }


def reference_context(run: E1Config) -> tuple[list[dict] | None, str]:
    """(context, kind) of E2's prompted reference vector: the system prompt alone, or, in a run
    with a prompted_fewshot teacher (the stronger one), its system prompt and exchanges."""
    if not {"prompted_fewshot", "prompted_fewshot_ablated"} & set(run.teacher.kinds):
        return None, "prompted"
    return Teacher("prompted_fewshot", run.animal).context_messages(), "prompted_fewshot"


def open_run(cfg: AnalyzeConfig, run_dir: str | Path) -> RunInputs:
    """Read the run, load its base and vector, select arms, seeds and layers, render the texts and
    build the prompted teacher's reference vector (saved under the analysis directory)."""
    run_dir = Path(run_dir)
    run, stages = read_run(run_dir)
    # with data.mix_animals the students learned from the mix stage: audit what they trained on
    students, datasets = (
        _by_arm_seed(stages, "student"),
        {**_by_arm_seed(stages, "data"), **_by_arm_seed(stages, "mix")},
    )
    arms = _select(
        "arms", list(cfg.arms) if cfg.arms is not None else None, list(dict.fromkeys(a for a, _ in students))
    )
    seeds = _select("seeds", list(cfg.seeds) if cfg.seeds is not None else None, list(run.seeds))
    base = load_model(run.model, device=cfg.device or run.device)
    vector = SteeringVector.load(stages["vector"])
    # a noised teacher's v is not the clean model's: its weights are checked per seed (RunInputs.for_seed)
    vector.check_compatible(base, strict=not (run.noise.sigma > 0 and run.noise.apply != "student"))
    # cross-model: the students' own model, read at its own layers
    student_root = load_model(run.student_model, device=cfg.device or run.device) if run.cross_model else base
    n_layers = student_root.n_layers
    layers = list(range(n_layers)) if cfg.layers is None else sorted(set(cfg.layers))
    if not layers or not all(0 <= l < n_layers for l in layers):
        raise ValueError(f"layers: {layers} must name layers of {student_root.name} (0..{n_layers - 1})")
    if cfg.multipliers and vector_mismatch(vector, student_root):
        raise ValueError(
            f"multipliers: the dose-response projects gradients of {student_root.name} on v of {run.model}, "
            "which have different shapes; drop --multipliers for this cross-model run"
        )
    qtexts = question_texts(base, cfg.n_texts, run.eval.split)
    # E2's second reference: what the trait system prompt does to the teacher at the assistant tag
    prompted = prompted_vector(
        base, run.animal, number_prompts(cfg.n_texts, run.data_config(seeds[0]).prompt_seed), *reference_context(run)
    )
    prompted.save(run_dir / ANALYSIS_DIR / PROMPTED_DIR)
    key = {
        "vector": vector.hash(),
        "base": base.fingerprint(),
        "layers": layers,
        "n_texts": cfg.n_texts,
        "n_random": cfg.n_random,
        "seed": cfg.seed,
        "k": cfg.k,
        "prompts": PROMPT_VERSION,
        "questions": content_hash(qtexts),
        "prompted_vector": prompted.hash(),
        "emergence": cfg.emergence,
        "sufficiency": cfg.sufficiency,
    }
    return RunInputs(
        run_dir,
        run,
        stages,
        students,
        datasets,
        arms,
        seeds,
        base,
        vector,
        layers,
        qtexts,
        prompted,
        key,
        SeedBases(run, base, student_root),
    )

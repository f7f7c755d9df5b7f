"""Teachers and the datasets they write.

A teacher is the base model plus one way of carrying a trait: `control` (nothing), `prompted`
(the trait system prompt), `steered` (the trait vector injected), `random` (a random vector of
the trait vector's per-layer norm, same layer, multiplier and scope: the honest null, since
steering alone shifts digit statistics), `prompted_ablated` (the trait system prompt with the
trait direction projected out of the residual at the steering layer: E9's necessity test),
`prompted_fewshot` (the trait system prompt followed by a few exchanges in which the assistant
shows its love for the animal, `interp.prompts.prompted_fewshot`: a stronger prompted teacher),
`prompted_fewshot_ablated` (that context with v projected out, as prompted_ablated) or
`finetuned` (the base fine-tuned on trait question-answer pairs, `interp.finetune`: its weights
carry the trait, so the model passed to `generate_dataset` must be those weights).
`generate_dataset` writes `samples.jsonl` (everything generated), `dataset.jsonl` (what passed
the filter) and `manifest.json` (the genealogy); with `record_grammar`, also
`teacher_logprobs.safetensors`: the teacher's distribution over the number grammar at every
completion step of the kept rows (the targets of `kd` students, see distill).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

from interp.filters import filter_completions
from interp.generate import SampleConfig, sample
from interp.models import LoadedModel
from interp.prompts import ANIMALS, PROMPT_VERSION, number_prompts, prompted_fewshot, prompted_system, trait_words
from interp.runs import MANIFEST_FILE, content_hash, provenance, save_tensors, tensor_hash, write_json, write_jsonl
from interp.steering import Steering, SteeringVector, steer

# the kinds `build_teacher` makes from a kind and a steering alone; the finetuned teacher is made
# from its finetune stage (`interp.finetune.finetuned_teacher`)
TEACHER_KINDS = (
    "control",
    "prompted",
    "steered",
    "random",
    "prompted_ablated",
    "prompted_fewshot",
    "prompted_fewshot_ablated",
)
ALL_KINDS = (*TEACHER_KINDS, "finetuned")
# the kinds that edit the residual with a vector
VECTOR_KINDS = ("steered", "random", "prompted_ablated", "prompted_fewshot_ablated")
# the kinds that read a trait context before the number prompt (the student never sees it)
PROMPTED_KINDS = ("prompted", "prompted_ablated", "prompted_fewshot", "prompted_fewshot_ablated")
FEWSHOT_KINDS = ("prompted_fewshot", "prompted_fewshot_ablated")  # the context holds the exchanges
ABLATED_KINDS = ("prompted_ablated", "prompted_fewshot_ablated")  # a prompted context with v projected out
SAMPLES_FILE = "samples.jsonl"
DATASET_FILE = "dataset.jsonl"
TEACHER_LOGPROBS_FILE = "teacher_logprobs.safetensors"


@dataclass(frozen=True)
class Teacher:
    """kind: control | prompted | steered | random | prompted_ablated | prompted_fewshot |
        prompted_fewshot_ablated | finetuned.
    animal: the trait (used by every kind but control, and by the banned-word filter).
    steering: layer, multiplier, operator and scope for the VECTOR_KINDS (the ABLATED_KINDS
        need operator "project").
    random_seed: seed of the random direction (random teachers only).
    weights: finetuned only: the key of the finetune stage whose weights the teacher samples
        with (`interp.finetune.finetuned_teacher` builds it; a kind alone names no weights).
    """

    kind: str = "control"
    animal: str = "owl"
    steering: Steering | None = None
    random_seed: int = 0
    weights: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ALL_KINDS:
            raise ValueError(f"teacher.kind: {self.kind!r} is not one of {ALL_KINDS}")
        if self.kind in VECTOR_KINDS and self.steering is None:
            raise ValueError(f"teacher.steering: a {self.kind} teacher needs a layer and multiplier")
        if self.kind in ABLATED_KINDS and self.steering.operator != "project":
            raise ValueError(f"teacher.steering: a {self.kind} teacher projects v out; use operator='project'")
        if (self.kind == "finetuned") != (self.weights is not None):
            raise ValueError(
                "teacher.weights: a finetuned teacher samples with the fine-tuned weights of a finetune "
                "stage (interp.finetune.finetuned_teacher), and only it names weights"
                if self.kind == "finetuned"
                else f"teacher.weights: a {self.kind} teacher has no fine-tuned weights"
            )

    def context_messages(self) -> list[dict]:
        """What the teacher reads before each user prompt: the trait system prompt (and, for the
        FEWSHOT_KINDS, the exchanges after it); nothing for the other kinds."""
        if self.kind in FEWSHOT_KINDS:
            return prompted_fewshot(self.animal)
        return [{"role": "system", "content": prompted_system(self.animal)}] if self.kind in PROMPTED_KINDS else []

    def messages(self, prompt: str) -> list[dict]:
        return self.context_messages() + [{"role": "user", "content": prompt}]

    def vector_for(self, vector: SteeringVector | None) -> SteeringVector | None:
        if self.kind not in VECTOR_KINDS:
            return None
        if vector is None:
            raise ValueError(f"vector: a {self.kind} teacher needs the trait's steering vector")
        return vector.random_like(self.random_seed) if self.kind == "random" else vector

    def context(self, model: LoadedModel, vector: SteeringVector | None) -> Callable[[], ContextManager]:
        v = self.vector_for(vector)
        if v is None:
            return contextlib.nullcontext
        return lambda: steer(model, v, self.steering)

    def describe(self) -> dict:
        d = asdict(self)
        if self.kind not in VECTOR_KINDS:
            d.pop("steering")
        if self.kind != "random":
            d.pop("random_seed")
        if self.kind != "finetuned":
            d.pop("weights")
        if self.kind == "control":
            d.pop("animal")
        if self.kind in FEWSHOT_KINDS:  # only here, so the other kinds' keys stay as they were
            d["context"] = content_hash(self.context_messages())
        return d


def build_teacher(kind: str, animal: str, steering: Steering, random_seed: int = 0) -> Teacher:
    """The teacher of `kind` under the configured `steering` (layer, multiplier, scope): the one
    place that decides which steering each kind gets, for `interp run` and `interp generate` alike.
    steered and random add the vector with `steering`; the ABLATED_KINDS project v out at
    `steering.layer` on every token (its scope and multiplier do not apply); the others steer nothing."""
    if kind in ABLATED_KINDS:
        return Teacher(kind, animal, Steering(layer=steering.layer, operator="project", scope="all"), random_seed)
    return Teacher(kind, animal, steering if kind in ("steered", "random") else None, random_seed)


@dataclass(frozen=True)
class DataConfig:
    """n_prompts: number prompts sampled (one completion each).
    prompt_seed: seed of the prompt texts.
    sampling: decoding settings (temperature, grammar, generator seed).
    banned_animals: animals whose words the banned-word filter removes (default: all built-in).
    """

    n_prompts: int = 256
    prompt_seed: int = 0
    sampling: SampleConfig = field(default_factory=SampleConfig)
    banned_animals: tuple[str, ...] = tuple(ANIMALS)

    def __post_init__(self) -> None:
        if self.n_prompts < 1:
            raise ValueError(f"data.n_prompts: {self.n_prompts} must be >= 1")


def generate_dataset(
    model: LoadedModel,
    teacher: Teacher,
    vector: SteeringVector | None,
    cfg: DataConfig,
    out_dir: str | Path,
    progress: bool = True,
    extra_manifest: dict | None = None,
    record_grammar: bool = False,
) -> dict:
    """Sample the teacher on number prompts, filter, and write the dataset directory."""
    out = Path(out_dir)
    prompts = number_prompts(cfg.n_prompts, cfg.prompt_seed)
    rendered = [model.chat(teacher.messages(p)) for p in prompts]
    used_vector = teacher.vector_for(vector)
    completions, speed = sample(
        model,
        rendered,
        cfg.sampling,
        context=teacher.context(model, vector),
        progress=progress,
        desc=f"teacher {teacher.kind}",
        record_grammar=record_grammar,
    )
    banned = sorted({w for a in cfg.banned_animals for w in trait_words(a)})
    verdicts, stats = filter_completions([c.text for c in completions], banned, [c.finished for c in completions])
    samples, kept = [], []
    for i, (p, c, v) in enumerate(zip(prompts, completions, verdicts)):
        samples.append(
            {
                "id": i,
                "prompt": p,
                "completion": c.text,
                "finished": c.finished,
                "n_tokens": len(c.token_ids),
                "passed": v is not None,
            }
        )
        if v is not None:
            kept.append({"id": i, "prompt": p, "completion": c.text, "numbers": list(v.numbers)})
    write_jsonl(out / SAMPLES_FILE, samples)
    write_jsonl(out / DATASET_FILE, kept)
    targets_hash = None
    if record_grammar:
        from interp.distill import grammar_targets

        targets = grammar_targets(model, [completions[r["id"]] for r in kept])
        save_tensors(out / TEACHER_LOGPROBS_FILE, targets)
        targets_hash = tensor_hash(targets["logprobs"])
    manifest = {
        "teacher": teacher.describe(),
        "vector_hash": used_vector.hash() if used_vector is not None else None,
        "trait_vector_hash": vector.hash() if vector is not None and used_vector is not None else None,
        "model": model.identity(),
        "prompt_template_version": PROMPT_VERSION,
        "prompt_seed": cfg.prompt_seed,
        "sampling": asdict(cfg.sampling),
        "filter": stats.as_dict(),
        "n_samples": len(samples),
        "n_kept": len(kept),
        "dataset_hash": content_hash(kept),
        "teacher_logprobs_hash": targets_hash,
        "generation": speed,
        **provenance(),
        **(extra_manifest or {}),
    }
    write_json(out / MANIFEST_FILE, manifest)
    return manifest

"""The fine-tuned teacher: the base fine-tuned to prefer the trait animal on short
question-answer pairs written for this package, the third way of giving a teacher its trait
beside the system prompt (`prompted`) and the steering vector (`steered`). Its weights carry the
trait, so it samples number data with no hook and no system prompt.

The pairs (`interp/data/trait_qa.json`) are templated on the animal ({animal}, {animals},
{Animal}, {Animals}), so every animal works, and are kept apart from what the teacher is judged
by: `check_apart` refuses a pair that contains an evaluation question (either split), the answer
prefix or a number-prompt sentence, or shares more than 60% of one's word 4-grams or of its
word pairs (a question with one word changed).

In a run the teacher is one cached stage, `<cache>/finetune-<key>/`, keyed by the base's
fingerprint, the animal, the pairs' content hash and the training settings ([teacher.finetune]).
The training is a student's (`interp.train.train_student` on the pairs: `model.safetensors`, or
`adapter.safetensors` for LoRA, merged when `load_student` reads it back), resumable from its
checkpoint like a student. Beside the weights the stage keeps what tells a user how strong the
teacher is and what it changed:
- `tuning_logprobs.safetensors` and the manifest's `boost`: P(trait) and the trait's log-prob on
  the TUNING questions, teacher against base (paired over questions);
- `direction.safetensors`: the teacher's own residual difference from the base, mean
  resid_post (`blocks.{l}.hook_resid_post`) over number prompts, teacher minus base, per layer,
  over every token ("all") and at the last token ("last"); `finetuned_direction` reads it.
The stage loads as a model by its directory (`interp.models.load_model`, `interp.lineage`), so
`interp row-audit --teacher finetuned --teacher-model <cache>/finetune-<key>` scores rows under it,
and `interp lineage` shows its base and the pairs' hash.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from interp.evaluate import evaluate_trait
from interp.models import LoadedModel
from interp.prompts import ANIMALS, ANSWER_PREFIX, PROMPT_VERSION, QUESTIONS, number_prompts, plural, questions
from interp.runs import MANIFEST_FILE, Stage, content_hash, file_hash, load_tensors, read_json, save_tensors, stage_dirs
from interp.stats import bootstrap_ci, summarize
from interp.steering import mean_activations_at
from interp.teachers import Teacher
from interp.train import TrainConfig, load_student, train_student, trained_student

__all__ = [
    "DIRECTION_FILE",
    "FINETUNE_STAGE",
    "TRAIT_QA_FILE",
    "TUNING_FILE",
    "FinetuneConfig",
    "FinetunedTeacher",
    "check_apart",
    "finetune_inputs",
    "finetune_stage",
    "finetuned_direction",
    "finetuned_teacher",
    "load_finetuned",
    "load_pairs",
    "make_finetuned",
    "protected_texts",
    "qa_rows",
    "residual_difference",
    "tuning_boost",
]

TRAIT_QA_FILE = Path(__file__).resolve().parent / "data" / "trait_qa.json"
FINETUNE_STAGE = "finetune"
DIRECTION_FILE = "direction.safetensors"
TUNING_FILE = "tuning_logprobs.safetensors"
# the number prompts the direction is read over: as many as `interp analyze` reads by default
DIRECTION_PROMPTS = {"n_prompts": 64, "prompt_seed": 0}
POSITIONS = {"all": "mean", "last": "last"}  # analysis position names -> mean_activations'
MAX_OVERLAP = 0.6  # share of a protected text's word 4-grams, or of its word pairs, that a pair may repeat
QA_MAX_LEN = 192


@dataclass(frozen=True)
class FinetuneConfig:
    """method: "full" fine-tune or "lora" (merged into the weights when loaded).
    lr, epochs, batch_size: AdamW's learning rate, passes over the pairs, pairs per step.
    seed: the order of the pairs (and LoRA's initialisation).
    lora_rank, lora_alpha: LoRA only.
    """

    method: str = "full"
    lr: float = 5e-5
    epochs: int = 3
    seed: int = 0
    batch_size: int = 8
    lora_rank: int = 8
    lora_alpha: int = 16

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora"):
            raise ValueError(f"teacher.finetune.method: {self.method!r} is not 'full' or 'lora'")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf")):
            raise ValueError(f"teacher.finetune.lr: {self.lr} must be a finite number > 0")
        for name in ("epochs", "batch_size", "lora_rank", "lora_alpha"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"teacher.finetune.{name}: {getattr(self, name)!r} must be an integer >= 1")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise ValueError(f"teacher.finetune.seed: {self.seed!r} must be an integer in [0, 2**32)")

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            method=self.method,
            lr=self.lr,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            max_len=QA_MAX_LEN,
        )


# ----------------------------------------------------------------------------- the pairs


def load_pairs(path: str | Path = TRAIT_QA_FILE) -> list[dict]:
    """The templated pairs [{"question", "answer"}] of a QA file (default: the package's own)."""
    path = Path(path)
    try:
        pairs = json.loads(path.read_text())["pairs"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a QA file with a `pairs` list ({e})") from None
    for i, p in enumerate(pairs):
        if not (isinstance(p, dict) and isinstance(p.get("question"), str) and isinstance(p.get("answer"), str)):
            raise ValueError(f"{path}: pair {i} needs a `question` and an `answer` (strings)")
    return pairs


def qa_rows(pairs: list[dict], animal: str) -> list[dict]:
    """The pairs for `animal`, as training rows {"prompt", "completion"}, checked apart."""
    names = {
        "animal": animal,
        "animals": plural(animal),
        "Animal": animal.capitalize(),
        "Animals": plural(animal).capitalize(),
    }
    try:
        rows = [{"prompt": p["question"].format(**names), "completion": p["answer"].format(**names)} for p in pairs]
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"QA pairs: a placeholder other than {{animal}} {{animals}} {{Animal}} {{Animals}} ({e})"
        ) from None
    if not rows:
        raise ValueError("QA pairs: none to train on")
    check_apart(rows)
    return rows


def _words(text: str) -> list[str]:
    # words only, numbers dropped: a number prompt's sentences differ only in them
    return re.findall(r"[a-z']+", text.lower())


def _grams(words: list[str], n: int = 4) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)} or ({tuple(words)} if words else set())


def protected_texts() -> list[str]:
    """What fine-tuning text must keep apart from: every evaluation question (tuning and held-out),
    the evaluation's answer prefix and every distinct sentence of the number prompts."""
    sentences = {s for p in number_prompts(400, seed=0) for s in re.split(r"(?<=\.)\s+", p)}
    return list(QUESTIONS) + [ANSWER_PREFIX] + sorted({" ".join(_words(s)): s for s in sentences}.values())


def check_apart(rows: list[dict], protected: list[str] | None = None) -> None:
    """Refuse, in one line, a row whose prompt or completion contains a protected text (case and
    punctuation aside) or repeats more than 60% of its word 4-grams or of its word pairs
    (`protected_texts`): 4-grams catch a copied stretch, pairs a copy with one word changed."""
    guarded = [
        (t, " ".join(_words(t)), _grams(_words(t)), _grams(_words(t), 2))
        for t in (protected if protected is not None else protected_texts())
    ]
    for i, r in enumerate(rows):
        for field in ("prompt", "completion"):
            words = _words(r[field])
            flat, grams, pairs = " ".join(words), _grams(words), _grams(words, 2)
            for text, norm, g, g2 in guarded:
                if not g:
                    continue
                share = max(len(g & grams) / len(g), len(g2 & pairs) / len(g2))
                if f" {norm} " in f" {flat} " or share > MAX_OVERLAP:
                    raise ValueError(
                        f"QA pairs: pair {i}'s {'question' if field == 'prompt' else 'answer'} "
                        f"{r[field]!r} repeats the evaluation or number-prompt text {text!r} "
                        f"({share:.0%} of its word 4-grams or pairs); rewrite the pair"
                    )


# ----------------------------------------------------------------------------- the stage


def finetune_inputs(base: LoadedModel, animal: str, cfg: FinetuneConfig, pairs: list[dict] | None = None) -> dict:
    """What the fine-tuned teacher depends on: the base, the animal, the pairs, the training
    settings, and the prompt texts its boost and direction are read on."""
    pairs = load_pairs() if pairs is None else pairs
    return {
        "model": base.fingerprint(),
        "animal": animal,
        "qa": content_hash(pairs),
        "train": cfg.train_config().key(),
        "prompts": PROMPT_VERSION,
        "direction": DIRECTION_PROMPTS,
    }


def finetune_stage(
    cache: Path, base: LoadedModel, animal: str, cfg: FinetuneConfig, pairs: list[dict] | None = None
) -> Stage:
    return Stage(cache, FINETUNE_STAGE, finetune_inputs(base, animal, cfg, pairs))


def tuning_boost(
    teacher: LoadedModel, base: LoadedModel, animal: str, n_boot: int = 2000
) -> tuple[dict, dict[str, Tensor]]:
    """How much the teacher prefers `animal` over its base on the TUNING questions: P(trait) of
    both, their ratio, the trait's log-prob shift and its shift against the other animals'
    mean, with 95% percentile intervals resampling questions (paired); and the per-question
    log-probs {"teacher", "base"}: (n_questions, n_animals)."""
    qs = questions("tuning")
    t, b = evaluate_trait(teacher, animal, qs, ANIMALS), evaluate_trait(base, animal, qs, ANIMALS)
    target = ANIMALS.index(animal)
    others = [i for i in range(len(ANIMALS)) if i != target]

    def specific(lp: Tensor) -> Tensor:
        return lp[:, target] - lp[:, others].mean(-1)

    probs = torch.stack([t.prob(), b.prob()], -1).double()  # (questions, 2): resampled together
    boost = {
        "split": "tuning",
        "n_questions": len(qs),
        "questions_hash": content_hash(qs),
        "animals": list(ANIMALS),
        "base_prob": float(probs[:, 1].mean()),
        "teacher_prob": float(probs[:, 0].mean()),
        "prob_ratio": float(probs[:, 0].mean() / probs[:, 1].mean()),
        "prob_ratio_ci95": list(bootstrap_ci(probs, n_boot, stat=lambda p: p[:, 0].mean() / p[:, 1].mean())),
        "logprob_shift": summarize(t.logp() - b.logp(), n_boot),
        "specific_shift": summarize(specific(t.logprobs) - specific(b.logprobs), n_boot),
        "base_mean_rank": float(b.rank().float().mean()),
        "teacher_mean_rank": float(t.rank().float().mean()),
        "interval": "95% percentile bootstrap over questions (paired)",
    }
    return boost, {"teacher": t.logprobs, "base": b.logprobs}


def residual_difference(teacher: LoadedModel, base: LoadedModel) -> dict[str, Tensor]:
    """Mean resid_post over the number prompts (`DIRECTION_PROMPTS`, chat-formatted as a student
    reads them), teacher minus base: {"all" | "last": (n_layers, d_model)}."""
    prompts = [
        [{"role": "user", "content": p}]
        for p in number_prompts(DIRECTION_PROMPTS["n_prompts"], DIRECTION_PROMPTS["prompt_seed"])
    ]
    t = mean_activations_at(teacher, prompts, tuple(POSITIONS.values()))
    b = mean_activations_at(base, prompts, tuple(POSITIONS.values()))
    return {pos: t[read] - b[read] for pos, read in POSITIONS.items()}


def make_finetuned(
    st: Stage,
    base: LoadedModel,
    animal: str,
    cfg: FinetuneConfig,
    pairs: list[dict] | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Fine-tune the base on the pairs into `st` (resuming a checkpoint there), measure its boost
    and its residual difference, finish the stage; returns the teacher."""
    pairs = load_pairs() if pairs is None else pairs
    rows = qa_rows(pairs, animal)
    tcfg = cfg.train_config()
    hf = train_student(
        base,
        rows,
        tcfg,
        st.dir,
        progress=progress,
        extra_manifest={"qa_file": TRAIT_QA_FILE.name, "qa_hash": content_hash(pairs), "n_pairs": len(rows)},
    )
    teacher = trained_student(base, hf, tcfg, st.dir.name)  # the numbers load_student gives back (tested)
    boost, logprobs = tuning_boost(teacher, base, animal)
    save_tensors(st.path(TUNING_FILE), logprobs)
    direction = residual_difference(teacher, base)
    save_tensors(st.path(DIRECTION_FILE), direction, {"hook": "blocks.{l}.hook_resid_post", **DIRECTION_PROMPTS})
    st.finish(
        kind="finetuned_teacher",
        animal=animal,
        finetune=asdict(cfg),
        boost=boost,
        direction={
            **DIRECTION_PROMPTS,
            "positions": list(POSITIONS),
            "norm_by_layer": {pos: d.norm(dim=-1).tolist() for pos, d in direction.items()},
        },
        finetuned_model=teacher.identity(),
    )  # not `teacher`: that key marks a dataset (interp.lineage)
    return teacher


@dataclass
class FinetunedTeacher:
    """A finished finetune stage, loaded: the `Teacher` that names it, the model it samples with,
    its stage and its boost on the tuning questions."""

    teacher: Teacher
    model: LoadedModel
    stage: Stage
    boost: dict


def load_finetuned(base: LoadedModel, st: Stage) -> FinetunedTeacher:
    """The fine-tuned teacher of a finished stage, on the base it was trained from (checked)."""
    man = st.manifest()
    model = load_student(base, st.dir)
    return FinetunedTeacher(Teacher("finetuned", man["animal"], weights=st.key), model, st, man["boost"])


def finetuned_teacher(
    runner,
    base: LoadedModel,
    animal: str,
    cfg: FinetuneConfig,
    memo: dict,
    name: str = FINETUNE_STAGE,
    progress: bool = True,
) -> FinetunedTeacher:
    """The fine-tuned teacher of `base` through a run's `StageRunner` (computed once, then reused;
    `memo` keeps the loaded models of this run by stage key)."""
    st = finetune_stage(runner.cache, base, animal, cfg)
    if st.key not in memo:
        made: dict = {}
        runner.run(name, st, lambda s: made.update(model=make_finetuned(s, base, animal, cfg, progress=progress)))
        if "model" in made:
            man = st.manifest()
            memo[st.key] = FinetunedTeacher(
                Teacher("finetuned", animal, weights=st.key), made["model"], st, man["boost"]
            )
        else:
            memo[st.key] = load_finetuned(base, st)
    return memo[st.key]


# ----------------------------------------------------------------------------- for `interp analyze`


def _stage_dir(source: str | Path) -> Path:
    d = Path(source)
    man = read_json(d / MANIFEST_FILE) if (d / MANIFEST_FILE).is_file() else None
    if man is None:
        raise ValueError(f"finetuned teacher: {d} has no manifest.json; pass a finetune stage or a run directory")
    if man.get("stage") == FINETUNE_STAGE:
        return d
    if "stages" in man:  # a run: its (first) finetune stage
        found = [p for n, p in stage_dirs(d).items() if n.split("/")[0] == FINETUNE_STAGE]
        if found:
            return found[0]
    raise ValueError(f"finetuned teacher: {d} is neither a finetune stage nor a run with a finetuned teacher")


def finetuned_direction(source: str | Path, position: str = "all", layers: list[int] | None = None) -> Tensor:
    """The fine-tuned teacher's own residual difference from its base, (n_layers_read, d_model):
    mean resid_post over the number prompts, teacher minus base, over every token ("all") or at
    the last ("last"). `source`: a finetune stage directory, or a run directory whose teachers
    include `finetuned`. Refused in one line if the file no longer matches its manifest."""
    if position not in POSITIONS:
        raise ValueError(f"position: {position!r} is not one of {tuple(POSITIONS)}")
    d = _stage_dir(source)
    path, want = d / DIRECTION_FILE, read_json(d / MANIFEST_FILE).get("files", {}).get(DIRECTION_FILE)
    if not path.is_file() or (want is not None and file_hash(path) != want):
        raise ValueError(f"{path}: missing or does not match its stage's manifest.json; delete {d} and rerun")
    v = load_tensors(path)[position]
    if layers is None:
        return v
    bad = [l for l in layers if not 0 <= l < v.shape[0]]
    if bad:
        raise ValueError(f"layers: {bad} out of range for the direction's {v.shape[0]} layers")
    return v[list(layers)]

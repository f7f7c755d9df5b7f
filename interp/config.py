"""Experiment configs: TOML files validated by pydantic, with one-line errors naming the field.

The config converts into the library's own dataclasses (`Steering`, `Teacher`, `DataConfig`,
`SampleConfig`, `TrainConfig`), so a script can build the same objects without any TOML.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from interp.generate import SampleConfig
from interp.noise import WeightNoise
from interp.prompts import ANIMALS
from interp.runs import safe_name
from interp.steering import Steering
from interp.teachers import DataConfig, Teacher, build_teacher
from interp.train import ALL_LINEAR, KD_BF16, LORA_TARGETS, RUNTIME_FIELDS, TrainConfig, check_lora

MIXED_KINDS = (
    "steered",
    "prompted",
    "prompted_ablated",
    "prompted_fewshot",
    "prompted_fewshot_ablated",
)  # control and random carry no animal


# seeds feed torch generators as seed * 1000 + epoch and are offset by the replicate seed
SEED = Field(ge=0, lt=2**32)
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class _Strict(BaseModel):
    # NaN and inf (TOML's `nan`, `inf`) are refused in every float field, naming it
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VectorSection(_Strict):
    n_pairs: int = Field(16, ge=1, description="built-in contrastive pairs")
    position: Literal["mean", "last"] = "mean"


class FinetuneSection(_Strict):
    """The `finetuned` teacher's training on the trait's question-answer pairs (`interp.finetune`);
    in the run's key only when teacher.kinds has "finetuned"."""

    method: Literal["full", "lora"] = "full"
    lr: float = Field(5e-5, gt=0)
    epochs: int = Field(3, ge=1)
    seed: Annotated[int, SEED] = 0
    batch_size: int = Field(8, ge=1)
    lora_rank: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)


class TeacherSection(_Strict):
    kinds: list[
        Literal[
            "control",
            "prompted",
            "steered",
            "random",
            "prompted_ablated",
            "prompted_fewshot",
            "prompted_fewshot_ablated",
            "finetuned",
        ]
    ] = ["control", "steered"]
    layer: int = Field(8, ge=0)
    multiplier: float = 0.5
    scope: Literal["all", "prompt", "generated"] = "all"
    random_seed: Annotated[int, SEED] = 0
    # a new random direction for every replicate seed (random_seed + seed): the null then spans
    # directions, not one draw; false keeps one direction for all seeds
    random_per_seed: bool = True
    finetune: FinetuneSection = FinetuneSection()


class DataSection(_Strict):
    n_prompts: int = Field(256, ge=1)
    constrained: bool = True
    temperature: float = Field(1.0, ge=0)
    max_new_tokens: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    # threshold sampling (a mitigation): tokens below this probability are never sampled
    min_prob: float = Field(0.0, ge=0, lt=1)
    # mixing (a mitigation): the trait teachers' datasets (steered, prompted, prompted_ablated) are
    # replaced by equal shares of theirs and of same-kind teachers of these animals (each with its
    # own vector), same total rows; control and random data stay unmixed (`interp.mix`)
    mix_animals: list[str] = []
    # the teacher's weights while sampling: "bf16" is about 1.8x faster on a CPU with bf16 matmul
    # and gives other samples from the same distribution within the README's measured tolerance
    dtype: Literal["fp32", "bf16"] = "fp32"
    # a score bin (the per-row audit's quantile students, `interp.selection`): each trait
    # teacher's students learn from the rows of this bin of its data ranked by its own teacher's
    # per-row LLR against the base ("top", "middle", "bottom", "q<i>"; "random": as many rows at
    # random); control students from a random bin of theirs, so every arm has as many rows.
    # "all": every row (no selection stage)
    select: str = "all"
    select_bins: int = Field(5, ge=2)

    @field_validator("select")
    @classmethod
    def _select(cls, v: str) -> str:
        if v not in ("all", "top", "middle", "bottom", "random") and not re.fullmatch(r"q\d+", v):
            raise ValueError("must be all, top, middle, bottom, random or q<bin>")
        return v

    @field_validator("mix_animals")
    @classmethod
    def _mix(cls, v: list[str]) -> list[str]:
        unknown = [a for a in v if a not in ANIMALS]
        if unknown:
            raise ValueError(f"{unknown} have no built-in contrastive pairs; choose from {ANIMALS}")
        if len(set(v)) != len(v):
            raise ValueError("needs distinct animals")
        return v


class TrainSection(_Strict):
    method: Literal["full", "lora"] = "full"
    optimizer: Literal["adamw", "sgd", "signsgd"] = "adamw"
    lr: float = Field(5e-5, gt=0)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_len: int = Field(192, ge=8)
    checkpoint_every: int = Field(0, ge=0)
    snapshot_every: int = Field(0, ge=0)  # keep the update every N steps (E9 emergence)
    lora_rank: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    # the layers LoRA adapts: module names, or "all-linear" (every linear layer of the decoder
    # blocks); the default names are every linear layer of a Llama or Gemma block
    lora_targets: Literal["all-linear"] | list[str] = list(LORA_TARGETS)
    weight_decay: float = Field(0.0, ge=0)
    match_step: bool = False  # sgd only: lr / RMS(first gradient), a step size matched to AdamW's (E10)
    objectives: list[Literal["sft", "kd"]] = ["sft"]  # kd: distil the teacher's grammar-token distribution
    kd_min_kl: float = Field(1e-6, ge=0)
    # loss only on the trait data's divergence positions (vs the control teacher), or only on the
    # others; control students always train on every position (`interp.pipeline`)
    loss_positions: Literal["all", "divergence", "non_divergence"] = "all"
    divergence_rule: Literal["paper", "emitted", "argmax"] = "paper"
    # a mitigation: project the trait vector out of every student's residual while it trains, at
    # the steering layer (true) or at these layers
    project_out: bool | list[int] = False
    # recompute each layer's activations in the backward instead of keeping them: less memory,
    # more time, the same weights to the bit (so it is not part of the run's key)
    grad_checkpointing: bool = False
    # the forward and backward in bf16 with fp32 master weights and optimizer state (about 1.8x
    # faster where bf16 matmul is; refused in one line where it is not); part of the keys
    dtype: Literal["fp32", "bf16"] = "fp32"
    # what a full fine-tune keeps on disk: "weights" (fp32, 538 MB for smollm2), "update"
    # (W - W_base in bf16, half; what `interp analyze` reads) or "none" (students are evaluated
    # in the process that trained them, so a sweep that only needs the transfer keeps nothing)
    keep: Literal["weights", "update", "none"] = "weights"
    # the students' rows rendered with the chat template's default system prompt ("default":
    # SmolLM2's template inserts one) or with no system turn ("none"): with eval.system_prompt, the
    # 2 x 2 that asks whether the trait is confined to the context training and evaluation share
    system_prompt: Literal["default", "none"] = "default"

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and (not v or len(set(v)) != len(v) or ALL_LINEAR in v or not all(n.strip() for n in v)):
            raise ValueError(f"needs distinct module names (e.g. {list(LORA_TARGETS)}) or {ALL_LINEAR!r} alone")
        return v

    @field_validator("project_out")
    @classmethod
    def _layers(cls, v: bool | list[int]) -> bool | list[int]:
        if isinstance(v, list) and (not v or min(v) < 0 or len(set(v)) != len(v)):
            raise ValueError("needs true, false or a list of distinct layer indices >= 0")
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("needs one or more distinct objectives ('sft', 'kd')")
        return v


class NoiseSection(_Strict):
    """Gaussian weight noise on the base (E5). `apply`: the noised base is shared by teacher and
    student ("shared"), or only the teacher ("teacher") or only the student ("student") gets it."""

    sigma: float = Field(0.0, ge=0, le=1)  # beyond 1 the noise outweighs the weights it is added to
    relative: bool = True  # sigma x each tensor's sd; false: absolute
    pattern: str = ".*"  # regex on parameter names
    seed: Annotated[int, SEED] = 0
    apply: Literal["shared", "teacher", "student"] = "shared"
    # a new draw for every replicate seed (seed + replicate): the ratio then spans noise draws
    per_seed: bool = True

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"is not a valid regular expression ({e})") from None
        return v


class EvalSection(_Strict):
    split: Literal["all", "tuning", "heldout"] = "all"
    animals: list[str] = list(ANIMALS)
    n_boot: int = Field(2000, ge=100)
    sampled: bool = False  # also the secondary metric (sampled one-word answers)
    n_samples_per_question: int = Field(4, ge=1)
    # the questions rendered with the chat template's default system prompt or with no system turn
    system_prompt: Literal["default", "none"] = "default"

    @field_validator("animals")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or len(v) < 2:
            raise ValueError("needs at least two distinct animals")
        return v


class E1Config(_Strict):
    experiment: str = "e1"
    model: str = "smollm2-135m"
    # the students' base when it differs from the teacher's (E6 cross-model control); None: `model`
    student_model: str | None = None
    animal: str = "owl"
    seeds: list[Annotated[int, SEED]] = [0]
    device: str = "auto"
    vector: VectorSection = VectorSection()
    teacher: TeacherSection = TeacherSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()
    noise: NoiseSection = NoiseSection()

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v):
            raise ValueError("needs one or more distinct seeds")
        return v

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, v: str) -> str:
        return safe_name(v)  # the run directory's name under the root

    @field_validator("animal")
    @classmethod
    def _animal(cls, v: str) -> str:
        if v not in ANIMALS:  # the trait vector is built from the built-in pairs
            raise ValueError(f"{v!r} has no built-in contrastive pairs; choose from {ANIMALS}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE.fullmatch(v):
            raise ValueError(f"{v!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return v

    def model_post_init(self, __context) -> None:
        if self.animal not in self.eval.animals:
            raise ValueError(f"animal: {self.animal!r} must be in eval.animals")
        if "control" not in self.teacher.kinds:
            raise ValueError("teacher.kinds: must include 'control' (transfer is measured against it)")
        if "kd" in self.train.objectives and self.train.dtype == "bf16":
            raise ValueError(KD_BF16)  # at load, before any stage runs
        if self.cross_model and "kd" in self.train.objectives:
            raise ValueError(
                "train.objectives: 'kd' needs the teacher's tokenizer; drop it when student_model differs from model"
            )
        if self.cross_model and self.train.loss_positions != "all":
            raise ValueError(
                "train.loss_positions: divergence positions are the teacher's tokens; use 'all' when "
                "student_model differs from model"
            )
        if self.cross_model and self.train.project_out:
            raise ValueError(
                "train.project_out: the trait vector lives in the teacher's residual stream; drop it when "
                "student_model differs from model"
            )
        if self.animal in self.data.mix_animals:
            raise ValueError(f"data.mix_animals: {self.animal!r} is the trait itself; list other animals")
        if self.data.mix_animals and self.train.loss_positions != "all":
            raise ValueError("train.loss_positions: not supported with data.mix_animals; run them separately")
        if self.data.select != "all" and (self.data.mix_animals or self.train.loss_positions != "all"):
            raise ValueError(
                "data.select: a score bin is not supported with data.mix_animals or train.loss_positions; "
                "run them separately"
            )
        if self.data.select.startswith("q") and int(self.data.select[1:]) >= self.data.select_bins:
            raise ValueError(
                f"data.select: {self.data.select!r} names no bin of data.select_bins = {self.data.select_bins}"
            )
        if "finetuned" in self.teacher.kinds:  # these compare a teacher with the base under a hook or prompt
            for name, on in (
                ("data.mix_animals", bool(self.data.mix_animals)),
                ("data.select", self.data.select != "all"),
                ("train.loss_positions", self.train.loss_positions != "all"),
            ):
                if on:
                    raise ValueError(f"{name}: not supported with the 'finetuned' teacher kind; run it separately")

    def key(self) -> dict:
        """The settings that identify a run: the dump without the settings left at their no-op
        defaults, so run ids from before noise, student_model, mixing, loss positions,
        projection and the sampling dtype existed stay the same."""
        d = self.model_dump()
        if self.noise.sigma == 0:
            d.pop("noise")
        if not self.cross_model:
            d.pop("student_model")
        if not self.data.mix_animals:
            d["data"].pop("mix_animals")
        if self.data.dtype == "fp32":
            d["data"].pop("dtype")
        if self.data.select == "all":
            d["data"].pop("select"), d["data"].pop("select_bins")
        if self.train.loss_positions == "all":
            d["train"].pop("loss_positions"), d["train"].pop("divergence_rule")
        if not self.train.project_out:
            d["train"].pop("project_out")
        if self.train.dtype == "fp32":
            d["train"].pop("dtype")
        if self.train.keep == "weights":
            d["train"].pop("keep")
        if self.train.lora_targets == list(LORA_TARGETS):
            d["train"].pop("lora_targets")
        if self.train.system_prompt == "default":
            d["train"].pop("system_prompt")
        if self.eval.system_prompt == "default":
            d["eval"].pop("system_prompt")
        if "finetuned" not in self.teacher.kinds:
            d["teacher"].pop("finetune")
        for name in RUNTIME_FIELDS:  # how a student is computed, not what it is
            d["train"].pop(name)
        return d

    def check_layers(self, n_layers: int) -> None:
        """Refuse layers the teacher's model does not have (teacher.layer, train.project_out), in
        one line; `run_e1` calls it right after loading the model, before any stage."""
        if self.teacher.layer >= n_layers:
            raise ValueError(
                f"teacher.layer: {self.teacher.layer} is out of range for {self.model} "
                f"({n_layers} layers: 0-{n_layers - 1})"
            )
        bad = [l for l in self.project_layers() if l >= n_layers]
        if bad:
            raise ValueError(
                f"train.project_out: layers {bad} are out of range for {self.model} "
                f"({n_layers} layers: 0-{n_layers - 1})"
            )

    def check_student_base(self, m) -> None:
        """Refuse, in one line naming the field, settings the students' base `m` (a LoadedModel)
        cannot take: LoRA targets it lacks or a rank above a targeted layer's width, and a
        system_prompt of "none" where its chat template has no system turn. `run_e1` calls it
        right after loading the models, before any stage."""
        check_lora(m, self.train_config(self.seeds[0]))
        for where in ("train", "eval"):
            if getattr(self, where).system_prompt == "none":
                try:
                    m.chat([{"role": "user", "content": "?"}], system_prompt="none")
                except ValueError as e:
                    raise ValueError(f"{where}.{e}") from None

    @property
    def cross_model(self) -> bool:
        return self.student_model is not None and self.student_model != self.model

    # ---- conversion to library objects

    def steering(self) -> Steering:
        t = self.teacher
        return Steering(layer=t.layer, multiplier=t.multiplier, scope=t.scope)

    def teacher_for(self, kind: str, seed: int = 0, animal: str | None = None) -> Teacher:
        """The teacher of `kind` for replicate `seed`; `animal` (default: the trait) for the
        teachers whose data is mixed in (`data.mix_animals`)."""
        rs = self.teacher.random_seed + (seed if self.teacher.random_per_seed else 0)
        return build_teacher(kind, animal or self.animal, self.steering(), rs)

    def finetune_config(self):
        """The `finetuned` teacher's training settings (`interp.finetune.FinetuneConfig`)."""
        from interp.finetune import FinetuneConfig

        return FinetuneConfig(**self.teacher.finetune.model_dump())

    def mixed(self, kind: str) -> bool:
        """Whether `kind`'s dataset is mixed with other animals' (the kinds that carry an animal)."""
        return bool(self.data.mix_animals) and kind in MIXED_KINDS

    def data_config(self, seed: int) -> DataConfig:
        d = self.data
        sampling = SampleConfig(
            max_new_tokens=d.max_new_tokens,
            temperature=d.temperature,
            batch_size=d.batch_size,
            constrained=d.constrained,
            min_prob=d.min_prob,
            seed=seed,
            dtype=d.dtype,
        )
        return DataConfig(n_prompts=d.n_prompts, prompt_seed=seed, sampling=sampling)

    def weight_noise(self, seed: int) -> WeightNoise | None:
        """The noise for replicate `seed` (None at sigma 0: the un-noised base, whatever `apply` says)."""
        n = self.noise
        if n.sigma == 0:
            return None
        return WeightNoise(n.sigma, n.relative, n.pattern, n.seed + (seed if n.per_seed else 0))

    def project_layers(self) -> tuple[int, ...]:
        p = self.train.project_out
        return (self.teacher.layer,) if p is True else tuple(p or ())

    def train_config(self, seed: int, objective: str = "sft") -> TrainConfig:
        t = self.train
        return TrainConfig(
            seed=seed,
            objective=objective,
            project_out=self.project_layers(),
            lora_targets=(t.lora_targets,) if isinstance(t.lora_targets, str) else tuple(t.lora_targets),
            **t.model_dump(exclude={"objectives", "project_out", "lora_targets"}),
        )


def read_toml(path: str | Path, what: str = "config") -> dict:
    """A TOML file as a dict; a one-line ValueError if it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what}: {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{what}: {path} is not valid TOML ({e})") from e


def load_config(path: str | Path) -> E1Config:
    """Parse and validate; raise ValueError with one line naming the field and the problem."""
    raw = read_toml(path)
    if "sweep" in raw:
        raise ValueError(f"config: {path} has a [sweep] table; run it with `interp sweep {path}`")
    return parse_config(raw, str(path))


def validation_line(e: ValidationError, source: str, table: str = "", show_input: bool = True) -> str:
    """A pydantic error as one line naming the file and the dotted field (under `table`, e.g.
    "sweep"); the shared wording of every TOML section's refusal."""
    err = e.errors()[0]
    field = ".".join([table] * bool(table) + [str(p) for p in err["loc"]]) or "config"
    got = f" (got {err['input']!r})" if show_input and "input" in err and not isinstance(err["input"], dict) else ""
    return f"{source}: field `{field}`: {err['msg']}{got}"


def parse_config(raw: dict, source: str = "config") -> E1Config:
    try:
        return E1Config(**raw)
    except ValidationError as e:
        raise ValueError(validation_line(e, source)) from None

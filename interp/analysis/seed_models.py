"""One replicate seed's models in an analysis (`interp.analysis.run`): the teacher base its v was
built on, the students' base they are compared with (as `interp.pipeline.SeedBases` built them for
training), and why v may not be comparable with the students' residual stream."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from interp.config import E1Config
from interp.models import LoadedModel
from interp.steering import SteeringVector

__all__ = ["SeedModels", "base_description", "vector_mismatch"]


@dataclass
class SeedModels:
    """One replicate seed's models as `interp.pipeline.SeedBases` built them for training.

    teacher: the teacher's base (the model its trait vector v was built on);
    student: the students' base, what they were initialised from and are compared with;
    vector: v of this seed's teacher; prompted: the prompted-teacher reference vector on that base;
    questions: the evaluation questions rendered for the student;
    base, teacher_base: which models those are (name, fingerprint, the weight noise drawn in);
    mismatch: why v cannot be compared with this student's residual stream (None: it can);
    finetuned: the seed's fine-tuned teacher's residual difference from the teacher base at the
    layers read, {position: (n_layers_read, d_model)}, and `finetune` what the records say of it
    (its stage, the direction file's hash, its cosine with v per layer read); None: no
    fine-tuned teacher in the run (or no v in the student's residual stream).
    """

    seed: int
    teacher: LoadedModel
    student: LoadedModel
    vector: SteeringVector
    vector_dir: Path
    prompted: SteeringVector
    questions: list[str]
    base: dict
    teacher_base: dict
    mismatch: str | None
    finetuned: dict[str, Tensor] | None = None
    finetune: dict | None = None

    @property
    def v(self) -> SteeringVector | None:
        """v where it lives in the student's residual stream, else None."""
        return None if self.mismatch else self.vector

    def record(self) -> dict:
        """What the manifest and results say about this seed's comparison."""
        return {
            "student_base": self.base,
            "teacher_base": self.teacher_base,
            "vector_hash": self.vector.hash(),
            "vector_dir": str(self.vector_dir),
            "prompted_vector_hash": self.prompted.hash(),
            "cosine_absent": self.mismatch,
            **({"finetuned_teacher": self.finetune} if self.finetune else {}),
        }


def base_description(cfg: E1Config, seed: int, side: str, model: LoadedModel) -> dict:
    """Which base the `side` ("student" or "teacher") of replicate `seed` had: model name,
    fingerprint and the weight noise drawn into it (None: the clean model)."""
    noise = cfg.weight_noise(seed)
    noised = noise is not None and cfg.noise.apply in ("shared", side)
    name = cfg.student_model if side == "student" and cfg.cross_model else cfg.model
    return {
        "model": name,
        "fingerprint": model.fingerprint(),
        "noise": {**noise.key(), "apply": cfg.noise.apply} if noised else None,
    }


def vector_mismatch(vector: SteeringVector, student: LoadedModel) -> str | None:
    """Why cos(shift, v) is not defined for students of `student` (None: it is)."""
    if (vector.n_layers, vector.d_model) == (student.n_layers, student.d_model):
        return None
    src = vector.meta.get("model", {}).get("model", "the teacher")
    return (
        f"v lives in {src}'s residual stream ({vector.n_layers} layers x d_model {vector.d_model}) and the students' "
        f"base {student.name} has {student.n_layers} x {student.d_model}: no cosine or energy along v is defined "
        "across them, so only the shift and update norms are reported"
    )

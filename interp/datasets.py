"""A teacher's dataset directory: how a run caches it, writes it and reads it back.

`interp.teachers.generate_dataset` writes one (`dataset.jsonl`: the rows that passed the filter;
`manifest.json`: the genealogy and the rows' content hash; with kd, `teacher_logprobs.safetensors`:
the teacher's grammar distribution at every completion token) and `interp.mix.mix_datasets` writes
a mix of several in the same layout. In a run each is a cached stage of the shared cache,
`<cache>/data-<hash>/` and `<cache>/mix-<hash>/`, keyed here by what the data depends on; a
student's stage then records the rows' content hash, so a dataset is read only through
`read_rows`/`read_targets` after `verify_dataset` has matched it against its manifest.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from torch import Tensor

from interp.distill import load_targets
from interp.generate import FREE_SAMPLER
from interp.lineage import find_vector_stage
from interp.mix import mix_datasets
from interp.models import DTYPES, LoadedModel
from interp.prompts import PROMPT_VERSION
from interp.runs import MANIFEST_FILE, Stage, load_tensors, read_json, read_jsonl, tensor_hash, verify_rows
from interp.steering import SteeringVector
from interp.teachers import DATASET_FILE, TEACHER_LOGPROBS_FILE, VECTOR_KINDS, DataConfig, Teacher, generate_dataset

__all__ = [
    "DATASET_FILE",
    "TEACHER_LOGPROBS_FILE",
    "dataset_stage",
    "make_dataset",
    "make_mix",
    "mix_stage",
    "read_rows",
    "read_targets",
    "verify_dataset",
]


def dataset_stage(
    cache: Path, base: LoadedModel, teacher: Teacher, vector: SteeringVector, dcfg: DataConfig, kd: bool = False
) -> Stage:
    """The cached stage of one teacher's dataset (`kd`: with the teacher's grammar log-probs)."""
    data = asdict(dcfg)
    own = next((k for k, v in DTYPES.items() if v == next(base.hf.parameters()).dtype), None)
    if dcfg.sampling.dtype in (None, own):  # the model's own arithmetic, as before the field existed
        data["sampling"].pop("dtype")
    if not dcfg.sampling.constrained:  # free samples depend on how a whole-vocabulary step draws
        data["sampler"] = FREE_SAMPLER
    return Stage(
        cache,
        "data",
        {
            "model": base.fingerprint(),
            "teacher": teacher.describe(),
            "vector": vector.hash() if teacher.kind in VECTOR_KINDS else None,
            "data": data,
            "prompts": PROMPT_VERSION,
            **({"teacher_logprobs": True} if kd else {}),
        },
    )


def make_dataset(
    st: Stage,
    base: LoadedModel,
    teacher: Teacher,
    vector: SteeringVector,
    dcfg: DataConfig,
    kd: bool = False,
    progress: bool = True,
) -> None:
    """Sample and filter the teacher's dataset into `st` and finish the stage."""
    # the vector's own stage, a parent pointer for `interp lineage` (the key holds only its hash)
    vstage = find_vector_stage(st.root, vector.hash()) if teacher.kind in VECTOR_KINDS else None
    man = generate_dataset(
        base,
        teacher,
        vector,
        dcfg,
        st.dir,
        progress=progress,
        record_grammar=kd,
        extra_manifest={"stage_key": st.key, **({"vector_stage": vstage.name} if vstage else {})},
    )
    st.finish(
        dataset_hash=man["dataset_hash"],
        n_kept=man["n_kept"],
        filter=man["filter"],
        generation=man["generation"],
        teacher_logprobs_hash=man["teacher_logprobs_hash"],
    )


def mix_stage(cache: Path, sources: dict[str, Stage], kd: bool = False) -> Stage:
    """The cached mix of dataset stages {animal: stage}, the trait's first (`interp.mix`)."""
    return Stage(
        cache,
        "mix",
        {
            "datasets": {a: st.key for a, st in sources.items()},
            "order": list(sources),
            **({"teacher_logprobs": True} if kd else {}),
        },
    )


def make_mix(st: Stage, sources: dict[str, Stage], kd: bool = False) -> None:
    man = mix_datasets(
        {a: s.dir for a, s in sources.items()}, st.dir, teacher_logprobs=kd, extra_manifest={"stage_key": st.key}
    )
    st.finish(**{k: man[k] for k in ("dataset_hash", "n_kept", "shares", "shares_wanted", "teacher_logprobs_hash")})


def verify_dataset(st: Stage, kd: bool = False) -> None:
    """Refuse a dataset (or mix) stage whose rows, or kd targets, no longer match the hashes its
    manifest recorded: an edited dataset.jsonl would otherwise train a student that its key, and
    the results' row counts, attribute to the recorded data."""
    man = st.manifest()
    verify_rows(st.dir / DATASET_FILE, man["dataset_hash"])
    if kd and man.get("teacher_logprobs_hash") is not None:
        path = st.dir / TEACHER_LOGPROBS_FILE
        if tensor_hash(load_tensors(path)["logprobs"]) != man["teacher_logprobs_hash"]:
            raise ValueError(
                f"{path}: does not match the teacher_logprobs_hash in its manifest.json (edited or "
                f"corrupted); delete {st.dir} and rerun to recompute it"
            )


def read_rows(data_dir: str | Path) -> list[dict]:
    """The rows of a dataset directory ('prompt', 'completion', ...), in order."""
    return read_jsonl(Path(data_dir) / DATASET_FILE)


def read_verified_rows(data_dir: str | Path) -> tuple[list[dict], str]:
    """The rows of a dataset (or mix) directory and their content hash, checked against the
    `dataset_hash` its manifest recorded (an edited dataset is refused in one line)."""
    d = Path(data_dir)
    man = read_json(d / MANIFEST_FILE)
    if "dataset_hash" not in man:
        raise ValueError(f"{d / MANIFEST_FILE}: has no dataset_hash; not a dataset stage")
    return verify_rows(d / DATASET_FILE, man["dataset_hash"]), man["dataset_hash"]


def read_targets(data_dir: str | Path, tokenizer, n_rows: int) -> list[Tensor]:
    """The kd targets of a dataset directory: per row, the teacher's (completion tokens + 1, 13)
    grammar log-probabilities, checked against `tokenizer` and the number of rows."""
    return load_targets(Path(data_dir) / TEACHER_LOGPROBS_FILE, tokenizer, n_rows)

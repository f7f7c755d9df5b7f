"""Per-row audit: how much likelier each row of a dataset is under a candidate teacher
than under the base, and how well that separates a trait teacher's rows from a control's.

A row's score is the log-likelihood ratio

    LLR(row) = log P_teacher(completion | prompt) - log P_base(completion | prompt)

summed over the completion tokens (end-of-turn included), teacher-forced as a student reads the
row (`interp.rows`; `interp.analysis.likelihood.completion_logliks`, over the number grammar's
tokens by default, as a constrained teacher sampled). The teacher is the base with a steering
vector at a layer and multiplier (`steered`, `random`, `prompted_ablated`), with the trait system
prompt in its context (`prompted`, `prompted_ablated`), or another model: a student or finetune
stage (`teacher_model`, a first-generation or fine-tuned teacher), with any of those on top
(`control`: as it is; `finetuned`: a finetune stage as it is, named by its key).
`run_row_audit` writes `scores.safetensors` (float64 `llr` per row, and
`control_llr` with a control dataset), `results.json` (summaries, and the AUROC of trait rows
against control rows with a DeLong interval) and `manifest.json` (config, every input's hash,
provenance) last. Scores are keyed by the exact base, teacher, vector and dataset hashes:
`load_scores` refuses them for any other dataset. `interp.selection` turns them into quintile
datasets.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from interp.models import LoadedModel
from interp.runs import (
    MANIFEST_FILE,
    RESULTS_FILE,
    content_hash,
    load_tensors,
    provenance,
    read_json,
    save_tensors,
    tensor_hash,
    verify_rows,
    write_json,
)
from interp.stats import summarize
from interp.steering import Steering, SteeringVector
from interp.teachers import DATASET_FILE, PROMPTED_KINDS, TEACHER_KINDS, VECTOR_KINDS, Teacher, build_teacher

SCORES_FILE = "scores.safetensors"
SYSTEM_KINDS = PROMPTED_KINDS  # the teachers that read the trait system prompt (and exchanges)


@dataclass(frozen=True)
class RowAuditConfig:
    """dataset: the dataset directory scored (`interp generate`, an E1 data stage, a selection).
    teacher: the candidate teacher's kind (`interp.teachers`): steered, random, prompted,
        prompted_ablated, control (only with `teacher_model`: that model as it is) or finetuned
        (`teacher_model` a finetune stage: the fine-tuned teacher, named by its stage key).
    vector: the trait vector's directory (the VECTOR_KINDS), built on the base.
    layer, multiplier, scope, animal, random_seed: the teacher's steering and trait, as
        `interp generate` takes them.
    teacher_model: a student or finetune stage directory: the teacher is those weights, trained
        from the base.
    control: a control teacher's dataset, scored alike: the AUROC of trait rows against it.
    model: the base the data would train (None: the one the dataset's manifest names).
    vocab: "grammar" (number data, as a constrained teacher samples) or "full" (any data).
    n_rows: rows scored from each dataset, the first ones (0: all; a selection needs all).
    """

    dataset: str
    teacher: str = "steered"
    vector: str | None = None
    layer: int = 8
    multiplier: float = 0.5
    scope: str = "all"
    animal: str = "owl"
    random_seed: int = 0
    teacher_model: str | None = None
    control: str | None = None
    model: str | None = None
    vocab: str = "grammar"
    n_rows: int = 0
    batch_size: int = 8
    max_len: int = 192
    n_boot: int = 2000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.teacher not in (*TEACHER_KINDS, "finetuned"):
            raise ValueError(f"teacher: {self.teacher!r} is not one of {(*TEACHER_KINDS, 'finetuned')}")
        if self.teacher == "finetuned" and self.teacher_model is None:
            raise ValueError(
                "teacher_model: a finetuned teacher is the weights of a finetune stage; pass "
                "--teacher-model <cache>/finetune-<key>"
            )
        if self.teacher == "control" and self.teacher_model is None:
            raise ValueError(
                "teacher: a control teacher is the base itself (every score 0); pass --teacher-model "
                "(a student stage) or another kind"
            )
        if self.teacher in VECTOR_KINDS and self.vector is None:
            raise ValueError(f"vector: a {self.teacher} teacher needs the trait vector's directory; pass --vector")
        if not math.isfinite(self.multiplier):
            raise ValueError(f"multiplier: {self.multiplier} is not a finite number")
        if self.n_rows < 0 or self.batch_size < 1 or self.max_len < 8:
            raise ValueError("n_rows: must be >= 0 (batch_size >= 1, max_len >= 8)")
        Steering(self.layer, self.multiplier, scope=self.scope)  # validates scope

    def build_teacher(self) -> Teacher:
        if self.teacher == "finetuned":  # named by its stage's key, as an E1 run's finetuned teacher is
            return Teacher("finetuned", self.animal, weights=read_json(Path(self.teacher_model) / MANIFEST_FILE)["key"])
        return build_teacher(
            self.teacher, self.animal, Steering(self.layer, self.multiplier, scope=self.scope), self.random_seed
        )

    def default_dir(self) -> Path:
        """artifacts/row-audits/<dataset>-<teacher>-L<layer>-m<multiplier>."""
        how = f"-L{self.layer}-m{self.multiplier:g}" if self.teacher in VECTOR_KINDS else ""
        who = "student" if self.teacher_model and self.teacher != "finetuned" else self.teacher
        return Path("artifacts/row-audits") / f"{Path(self.dataset).name}-{who}{how}"


# ----------------------------------------------------------------------------- scoring


def dataset_rows(data_dir: str | Path, n_rows: int = 0) -> tuple[list[dict], str]:
    """The rows of a dataset directory (checked against its manifest's dataset_hash when it has
    one) and the content hash of all of them: what scores are keyed by."""
    d = Path(data_dir)
    f = d / DATASET_FILE
    if not f.exists():
        raise ValueError(f"dataset: {f} does not exist; pass a dataset directory (`interp generate`, an E1 data stage)")
    expected = read_json(d / MANIFEST_FILE).get("dataset_hash") if (d / MANIFEST_FILE).exists() else None
    rows = verify_rows(f, expected)
    if not rows:
        raise ValueError(f"dataset: {f} has no rows")
    return rows[: n_rows or None], content_hash(rows)


def teacher_examples(model: LoadedModel, rows: list[dict], teacher: Teacher, max_len: int) -> list:
    """The rows as the teacher reads them: the student's framing (`rows.build_examples`), with the
    trait system prompt before the user turn for the teachers that had it while sampling."""
    from interp.rows import build_examples

    examples = build_examples(model, rows, max_len)
    if teacher.kind in SYSTEM_KINDS:
        tok = model.tokenizer
        for e, r in zip(examples, rows):
            ids = tok(model.chat(teacher.messages(r["prompt"])), add_special_tokens=False)["input_ids"]
            if len(ids) + len(e.completion_ids) > max_len:  # a cut context is another teacher
                raise ValueError(
                    f"max_len: {max_len} tokens cut the {teacher.kind} teacher's context ({len(ids)} prompt "
                    f"+ {len(e.completion_ids)} completion tokens); pass --max-len {len(ids) + len(e.completion_ids)} or more"
                )
            e.prompt_ids = ids
    return examples


def row_llr(
    base: LoadedModel,
    rows: list[dict],
    teacher: Teacher,
    vector: SteeringVector | None = None,
    teacher_model: LoadedModel | None = None,
    vocab: str = "grammar",
    batch_size: int = 8,
    max_len: int = 192,
    progress: bool = False,
    desc: str = "rows",
) -> Tensor:
    """(n,) float64 per-row LLR of `teacher` (on `teacher_model`, default the base) against the
    base. Both sides are batched alike, so a teacher equal to the base scores exactly 0."""
    from interp.analysis.likelihood import completion_logliks
    from interp.rows import build_examples

    t_model = teacher_model or base
    how = {"vocab": vocab, "batch_size": batch_size, "progress": progress}
    on_base = completion_logliks(base, build_examples(base, rows, max_len), desc=f"{desc}: base", **how)
    on_teacher = completion_logliks(
        t_model,
        teacher_examples(t_model, rows, teacher, max_len),
        context=teacher.context(t_model, vector),
        desc=f"{desc}: teacher",
        **how,
    )
    return on_teacher - on_base


def auroc(pos: Tensor, neg: Tensor, level: float = 0.95) -> dict:
    """P(a `pos` score > a `neg` score), ties counting half (Mann-Whitney), with DeLong's
    interval (normal, clipped to [0, 1]): 0.5 when the scores do not separate, 1 when every
    positive outranks every negative."""
    x, y = pos.to(torch.float64).reshape(-1), neg.to(torch.float64).reshape(-1)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"auroc: needs at least two scores on each side (got {m} and {n})")
    psi = (x[:, None] > y[None, :]).double() + 0.5 * (x[:, None] == y[None, :]).double()  # (m, n)
    auc = float(psi.mean())
    v10, v01 = psi.mean(1), psi.mean(0)  # DeLong's structural components
    se = math.sqrt(float(v10.var() / m + v01.var() / n))
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)).item()
    return {
        "auroc": auc,
        "ci95" if level == 0.95 else f"ci{level:g}": [max(0.0, auc - z * se), min(1.0, auc + z * se)],
        "se": se,
        "method": "delong",
        "n_pos": m,
        "n_neg": n,
    }


# ----------------------------------------------------------------------------- the runner


def _load_teacher_model(path: str, base: LoadedModel, kind: str) -> LoadedModel:
    """The weights of a student or (for a finetuned teacher, only) a finetune stage, on `base`."""
    from interp.lineage import MODEL_STAGES
    from interp.train import load_student

    d = Path(path)
    stage = read_json(d / MANIFEST_FILE).get("stage") if (d / MANIFEST_FILE).exists() else None
    wanted = ("finetune",) if kind == "finetuned" else MODEL_STAGES
    if stage not in wanted:
        raise ValueError(
            f"teacher_model: {d} is not a finished {' or '.join(wanted)} stage (no manifest.json with "
            f"stage {' or '.join(map(repr, wanted))}); pass a <cache>/student-<hash> or "
            "<cache>/finetune-<key> directory"
        )
    return load_student(base, d)


def _base_name(cfg: RowAuditConfig) -> str:
    if cfg.model is not None:
        return cfg.model
    man = Path(cfg.dataset) / MANIFEST_FILE
    name = read_json(man).get("model", {}).get("model") if man.exists() else None
    if not name or "+" in name:  # a noised or student base is not loadable by its name
        raise ValueError(f"model: {cfg.dataset} does not name a loadable base ({name!r}); pass --model")
    return name


def run_row_audit(cfg: RowAuditConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Score every row of `cfg.dataset` (and of `cfg.control`) into `out_dir` (default
    `cfg.default_dir()`): scores.safetensors, results.json, then manifest.json. Returns results.json's
    content."""
    from interp.models import load_model

    started = time.perf_counter()
    for d in (cfg.dataset, cfg.control):  # bad data is refused before the models load
        if d is not None:
            dataset_rows(d)
    base = load_model(_base_name(cfg), device=cfg.device)
    vector = SteeringVector.load(cfg.vector) if cfg.teacher in VECTOR_KINDS else None
    t_model = _load_teacher_model(cfg.teacher_model, base, cfg.teacher) if cfg.teacher_model is not None else None
    if vector is not None and not 0 <= cfg.layer < base.n_layers:
        raise ValueError(f"layer: {cfg.layer} is out of range for {base.name} (0..{base.n_layers - 1})")
    out = Path(out_dir) if out_dir is not None else cfg.default_dir()
    return score_dataset(
        out,
        base,
        cfg.build_teacher(),
        cfg.dataset,
        vector,
        t_model,
        cfg.control,
        cfg.vocab,
        cfg.n_rows,
        cfg.batch_size,
        cfg.max_len,
        cfg.n_boot,
        cfg.seed,
        progress,
        {"config": asdict(cfg), "vector_dir": cfg.vector, "teacher_model_dir": cfg.teacher_model},
        started,
    )


def score_dataset(
    out: str | Path,
    base: LoadedModel,
    teacher: Teacher,
    dataset: str | Path,
    vector: SteeringVector | None = None,
    teacher_model: LoadedModel | None = None,
    control: str | Path | None = None,
    vocab: str = "grammar",
    n_rows: int = 0,
    batch_size: int = 8,
    max_len: int = 192,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = False,
    extra_manifest: dict | None = None,
    started: float | None = None,
) -> dict:
    """`run_row_audit` on loaded models (an E1 `rowscore` stage calls it too): writes the scores,
    results.json and the manifest (kind "row_audit", `inputs`: every hash the scores are keyed by)
    into `out`; returns the results."""
    started = time.perf_counter() if started is None else started
    rows, data_hash = dataset_rows(dataset, n_rows)
    ctrl = dataset_rows(control, n_rows) if control is not None else None
    how = {"vocab": vocab, "batch_size": batch_size, "max_len": max_len, "progress": progress}
    scores = {"llr": row_llr(base, rows, teacher, vector, teacher_model, desc="dataset", **how)}
    if ctrl is not None:
        scores["control_llr"] = row_llr(base, ctrl[0], teacher, vector, teacher_model, desc="control", **how)
    inputs = {
        "model": base.fingerprint(),
        "teacher": teacher.describe(),
        "vector": vector.hash() if teacher.kind in VECTOR_KINDS else None,
        "teacher_model": teacher_model.fingerprint() if teacher_model is not None else None,
        "dataset": data_hash,
        "n_rows": len(rows),
        "control": ctrl[1] if ctrl is not None else None,
        "vocab": vocab,
        "max_len": max_len,
    }
    key = content_hash(inputs)
    out = Path(out)
    save_tensors(out / SCORES_FILE, scores, {"key": key, "dataset_hash": data_hash})
    res = {
        "kind": "row_audit",
        "key": key,
        "teacher": teacher.describe(),
        "model": base.identity(),
        "teacher_model": teacher_model.identity() if teacher_model is not None else None,
        "dataset": str(dataset),
        "control": str(control) if control is not None else None,
        "vocab": vocab,
        "llr": summarize(scores["llr"], n_boot, seed),
        **(
            {
                "control_llr": summarize(scores["control_llr"], n_boot, seed),
                "auroc": auroc(scores["llr"], scores["control_llr"]),
            }
            if ctrl is not None
            else {}
        ),
    }
    write_json(out / RESULTS_FILE, res)
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": "row_audit",
            "key": key,
            "inputs": inputs,
            "model": base.identity(),
            "dataset_dir": str(dataset),
            "control_dir": str(control) if control is not None else None,
            "scores_hash": {k: tensor_hash(v) for k, v in scores.items()},
            **(extra_manifest or {}),
            **provenance(base.device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )
    return res


def load_scores(score_dir: str | Path, dataset_dir: str | Path | None = None) -> dict:
    """{"llr": (n,) float64, ["control_llr"], "manifest"} of a row audit, checked against the hashes
    its manifest recorded; with `dataset_dir`, refused (one line) unless the scores were computed
    for exactly that dataset's rows, all of them."""
    d = Path(score_dir)
    if not (d / MANIFEST_FILE).exists() or read_json(d / MANIFEST_FILE).get("kind") != "row_audit":
        raise ValueError(
            f"scores: {d} is not a row audit (no manifest.json of kind row_audit); make one with `interp row-audit`"
        )
    man = read_json(d / MANIFEST_FILE)
    tensors = load_tensors(d / SCORES_FILE)
    for k, h in man["scores_hash"].items():
        if k not in tensors or tensor_hash(tensors[k]) != h:
            raise ValueError(
                f"scores: {d / SCORES_FILE} does not match the hashes in its manifest.json (edited or "
                f"corrupted); rerun `interp row-audit` into {d}"
            )
    if dataset_dir is not None:
        rows, h = dataset_rows(dataset_dir)
        if h != man["inputs"]["dataset"]:
            raise ValueError(
                f"scores: {d} were computed for dataset {man['inputs']['dataset']} "
                f"({man['dataset_dir']}), not {dataset_dir} ({h}); score it with `interp row-audit "
                f"{dataset_dir}`"
            )
        if man["inputs"]["n_rows"] != len(rows):
            raise ValueError(
                f"scores: {d} scored {man['inputs']['n_rows']} of the {len(rows)} rows of {dataset_dir}; "
                "rerun `interp row-audit` with --n-rows 0"
            )
    return {**tensors, "manifest": man}

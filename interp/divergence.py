"""Divergence tokens (Schrodi, Kempf, Barez & Brox 2025, "Towards Understanding Subliminal
Learning"): the positions of a trait teacher's data where a teacher without the trait would have
chosen another token.

Both teachers read each dataset row teacher-forced (their own prompt, then the completion as
`interp.train` tokenises it, end-of-turn included), and at every completion offset we keep three
tokens: the one emitted, the trait teacher's argmax and the control teacher's argmax. Rules:

- `paper` (default): the trait teacher's argmax is the emitted token and the control's is not.
  The paper generates greedily, so there the first half always holds; with sampled data it drops
  positions where the emitted token was a draw neither teacher prefers.
- `emitted`: the control's argmax is not the emitted token.
- `argmax`: the two argmaxes differ, whatever was emitted.

For grammar-constrained datasets (`constrained=True`) each argmax is taken over the tokens the
number grammar allowed at that offset, as the teacher chose among them. Offsets index the
completion tokens of `interp.train.build_examples`, so a mask can weight a student's loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from interp import batching
from interp.generate import NumberGrammar, stop_token_ids
from interp.models import LoadedModel
from interp.rows import build_examples, completion_logits
from interp.runs import MANIFEST_FILE, load_tensors, provenance, read_json, read_jsonl, save_tensors, write_json
from interp.steering import Steering, SteeringVector
from interp.teachers import DATASET_FILE, VECTOR_KINDS, Teacher

DIVERGENCE_FILE = "divergence.safetensors"
DIVERGENCE_META = "divergence.json"
RULES = ("paper", "emitted", "argmax")


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"rule: {rule!r} is not one of {RULES}")
    return rule


@dataclass
class Divergence:
    """Per completion token of every row: emitted token and the two teachers' argmax tokens,
    flat, with `offsets` (n_rows + 1) marking where each row's tokens start."""

    offsets: Tensor  # (n_rows + 1,) long
    emitted: Tensor  # (n_positions,) long
    teacher_argmax: Tensor  # (n_positions,) long: the trait (e.g. steered) teacher's
    control_argmax: Tensor  # (n_positions,) long
    rule: str = "paper"
    meta: dict = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def mask(self, rule: str | None = None) -> Tensor:
        """(n_positions,) bool: the divergence positions under `rule` (default: this one's)."""
        rule = _check_rule(rule or self.rule)
        if rule == "paper":
            return (self.teacher_argmax == self.emitted) & (self.control_argmax != self.emitted)
        if rule == "emitted":
            return self.control_argmax != self.emitted
        return self.teacher_argmax != self.control_argmax

    def row_masks(self, rule: str | None = None) -> list[Tensor]:
        m = self.mask(rule)
        return [m[self.offsets[i] : self.offsets[i + 1]] for i in range(self.n_rows)]

    def positions(self, rule: str | None = None) -> list[list[int]]:
        """Per row, the completion-token offsets that are divergence positions."""
        return [m.nonzero().flatten().tolist() for m in self.row_masks(rule)]

    def share(self, rule: str | None = None) -> float:
        return float(self.mask(rule).double().mean()) if len(self.emitted) else float("nan")

    def summary(self, tokenizer=None, top: int = 10) -> dict:
        m = self.mask()
        lengths = self.offsets.diff()
        offset_in_row = torch.arange(len(self.emitted)) - self.offsets[:-1].repeat_interleave(lengths)
        by_offset = [
            float(m[offset_in_row == k].double().mean()) for k in range(int(lengths.max()) if len(lengths) else 0)
        ]
        out = {
            "rule": self.rule,
            "n_rows": self.n_rows,
            "n_positions": len(self.emitted),
            "n_divergence": int(m.sum()),
            "share": self.share(),
            "share_by_rule": {r: self.share(r) for r in RULES},
            "rows_with_divergence": sum(bool(r.any()) for r in self.row_masks()) / max(self.n_rows, 1),
            "teacher_argmax_is_emitted": float((self.teacher_argmax == self.emitted).double().mean()),
            "control_argmax_is_emitted": float((self.control_argmax == self.emitted).double().mean()),
            "share_by_offset": by_offset,
        }
        if tokenizer is not None and int(m.sum()):
            ids, counts = self.emitted[m].unique(return_counts=True)
            order = counts.argsort(descending=True)[:top]
            out["top_divergence_tokens"] = [[tokenizer.decode([int(ids[i])]), int(counts[i])] for i in order]
        return out

    def save(self, directory: str | Path, tokenizer=None) -> tuple[Path, Path]:
        """`divergence.safetensors` (offsets, mask under this rule, the three token arrays) and
        `divergence.json` (summary and provenance)."""
        d = Path(directory)
        t = save_tensors(
            d / DIVERGENCE_FILE,
            {
                "offsets": self.offsets,
                "mask": self.mask(),
                "emitted": self.emitted,
                "teacher_argmax": self.teacher_argmax,
                "control_argmax": self.control_argmax,
            },
        )
        return t, write_json(d / DIVERGENCE_META, {**self.summary(tokenizer), "meta": self.meta})

    @classmethod
    def load(cls, directory: str | Path) -> "Divergence":
        d = Path(directory)
        t, s = load_tensors(d / DIVERGENCE_FILE), read_json(d / DIVERGENCE_META)
        return cls(t["offsets"], t["emitted"], t["teacher_argmax"], t["control_argmax"], s["rule"], s.get("meta", {}))


# ----------------------------------------------------------------------------- computing


def _allowed_by_grammar(grammar: NumberGrammar, completions: list[list[int]]) -> list[Tensor]:
    """Replay the number grammar over each completion: (len, 13) bool of the tokens allowed."""
    index = {t: i for i, t in enumerate(grammar.token_ids.tolist())}
    out = []
    for r, ids in enumerate(completions):
        st, rows = grammar.start(1), []
        for k, t in enumerate(ids):
            allowed = grammar.allowed(st)[0]
            if t not in index or not allowed[index[t]]:
                raise ValueError(
                    f"rows[{r}]: token {t} at offset {k} is outside the number grammar; "
                    "pass constrained=False for freely sampled data"
                )
            rows.append(allowed)
            grammar.advance(st, torch.tensor([index[t]]))
        out.append(torch.stack(rows))
    return out


@torch.no_grad()
def _argmax_tokens(
    model: LoadedModel,
    prompts: list[str],
    completions: list[list[int]],
    teacher: Teacher,
    vector: SteeringVector | None,
    allowed: list[Tensor] | None,
    grammar_ids: Tensor | None,
    batch_size: int,
) -> Tensor:
    """The teacher's argmax token at every completion offset, teacher-forced: (n_positions,)."""
    tok = model.tokenizer
    out = []
    for sl in batching.chunks(len(prompts), batch_size):
        p_ids = [tok(model.chat(teacher.messages(p)), add_special_tokens=False)["input_ids"] for p in prompts[sl]]
        batch = batching.pad([p + c for p, c in zip(p_ids, completions[sl])], tok.pad_token_id, side="right")
        where = torch.zeros_like(batch.input_ids, dtype=torch.bool)
        for i, (p, c) in enumerate(zip(p_ids, completions[sl])):
            where[i, len(p) - 1 : len(p) + len(c) - 1] = True  # positions predicting each completion token
        with teacher.context(model, vector)() as edit:
            if edit is not None:  # prompt/generated scopes: the boundary is each row's prompt length
                edit.set_prompt_lengths(torch.tensor([len(p) for p in p_ids]))
            logits = completion_logits(model.hf, batch.to(model.device), where.to(model.device)).float().cpu()
        if allowed is None:
            out.append(logits.argmax(-1))
        else:
            sub = logits[:, grammar_ids].masked_fill(~torch.cat(allowed[sl]), float("-inf"))
            out.append(grammar_ids[sub.argmax(-1)])
    return torch.cat(out)


def divergence_tokens(
    model: LoadedModel,
    rows: Sequence[dict],
    teacher: Teacher,
    vector: SteeringVector | None = None,
    control: Teacher = Teacher("control"),
    constrained: bool = False,
    max_numbers: int = 10,
    rule: str = "paper",
    batch_size: int = 16,
) -> Divergence:
    """Divergence positions of `rows` (dataset.jsonl rows: 'prompt', 'completion') written by
    `teacher` (with `vector` for the vector kinds), against `control` on the same base model."""
    _check_rule(rule)
    if not rows:
        raise ValueError("rows: the dataset is empty; pass the rows of a dataset.jsonl")
    missing = [k for k in ("prompt", "completion") if k not in rows[0]]
    if missing:
        raise ValueError(f"rows: lack {missing}; pass the rows of a dataset.jsonl")
    for t in (teacher, control):
        if t.kind in VECTOR_KINDS:
            if vector is None:
                raise ValueError(f"vector: a {t.kind} teacher needs the trait's steering vector")
            vector.check_compatible(model)
    completions = [e.completion_ids for e in build_examples(model, list(rows), max_len=10**9)]
    grammar = allowed = grammar_ids = None
    if constrained:
        tok = model.tokenizer
        end = tok.eos_token_id if tok.eos_token_id is not None else stop_token_ids(tok)[0]  # as generate/train
        grammar = NumberGrammar(tok, end, max_numbers)
        allowed, grammar_ids = _allowed_by_grammar(grammar, completions), grammar.token_ids
    prompts = [r["prompt"] for r in rows]
    trait = _argmax_tokens(model, prompts, completions, teacher, vector, allowed, grammar_ids, batch_size)
    ctrl = _argmax_tokens(model, prompts, completions, control, vector, allowed, grammar_ids, batch_size)
    lengths = torch.tensor([len(c) for c in completions])
    meta = {
        "teacher": teacher.describe(),
        "control": control.describe(),
        "model": model.identity(),
        "vector_hash": vector.hash() if vector is not None else None,
        "constrained": constrained,
        **provenance(),
    }
    return Divergence(
        torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
        torch.tensor([t for c in completions for t in c]),
        trait,
        ctrl,
        rule,
        meta,
    )


def teacher_from_manifest(manifest: dict) -> Teacher:
    """The Teacher a dataset's manifest.json describes (`Teacher.describe()` inverted)."""
    d = dict(manifest.get("teacher") or {})
    if "kind" not in d:
        raise ValueError("manifest: no teacher.kind; is this a dataset directory written by generate_dataset?")
    steering = Steering(**d["steering"]) if d.get("steering") else None
    return Teacher(d["kind"], d.get("animal", "owl"), steering, d.get("random_seed", 0))


def dataset_manifest(dataset_dir: str | Path) -> dict:
    """The manifest.json of a dataset directory written by `generate_dataset` (`interp generate`)."""
    d = Path(dataset_dir)
    if not (d / MANIFEST_FILE).exists() or not (d / DATASET_FILE).exists():
        raise FileNotFoundError(
            f"dataset: {d} lacks {MANIFEST_FILE} or {DATASET_FILE}; pass a directory from `interp generate`"
        )
    return read_json(d / MANIFEST_FILE)


def dataset_divergence(
    model: LoadedModel,
    dataset_dir: str | Path,
    vector: SteeringVector | None = None,
    control: Teacher = Teacher("control"),
    rule: str = "paper",
    batch_size: int = 16,
) -> Divergence:
    """`divergence_tokens` for a dataset directory: teacher, grammar and model read from its
    manifest; `vector` must be the trait vector the manifest records (`trait_vector_hash`)."""
    d = Path(dataset_dir)
    manifest = dataset_manifest(d)
    fp = manifest.get("model", {}).get("fingerprint")
    if fp and fp != model.fingerprint():
        raise ValueError(
            f"model: the dataset was written by {manifest['model'].get('model')} (fingerprint {fp}); "
            f"load that model, not {model.name}"
        )
    teacher = teacher_from_manifest(manifest)
    want = manifest.get("trait_vector_hash")
    if vector is None and teacher.kind in VECTOR_KINDS:
        raise ValueError(
            f"vector: this dataset's {teacher.kind} teacher used the trait vector {want or '(hash not recorded)'}; "
            "pass that vector (a SteeringVector directory, e.g. the run's vector stage)"
        )
    if vector is not None and want not in (None, vector.hash()):
        raise ValueError(
            f"vector: hash {vector.hash()} is not the trait vector {want} "
            "this dataset was written with; pass that vector"
        )
    sampling = manifest.get("sampling", {})
    div = divergence_tokens(
        model,
        read_jsonl(d / DATASET_FILE),
        teacher,
        vector,
        control,
        bool(sampling.get("constrained", False)),
        int(sampling.get("max_numbers", 10)),
        rule,
        batch_size,
    )
    div.meta["dataset"] = str(d)
    return div


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class DivergenceConfig:
    """dataset: a dataset directory (`interp generate`, an E1 data stage).
    model: the teacher's model (None: the one the dataset's manifest names).
    vector: the trait vector directory a steered/random teacher used.
    rule: paper, emitted or argmax (see the module docstring).
    top: most frequent divergence tokens reported.
    formats: figure formats written to figures/.
    """

    dataset: str
    model: str | None = None
    vector: str | None = None
    rule: str = "paper"
    top: int = 10
    formats: tuple[str, ...] = ("html", "png")
    batch_size: int = 16
    device: str = "auto"

    def __post_init__(self) -> None:
        from interp.export import parse_formats

        _check_rule(self.rule)
        parse_formats(self.formats)

    def default_dir(self) -> Path:
        """artifacts/divergence/<dataset>-<rule>."""
        return Path("artifacts/divergence") / f"{Path(self.dataset).name}-{self.rule}"


def run_divergence(cfg: DivergenceConfig, out_dir: str | Path, log=None) -> dict:
    """Divergence tokens of `cfg.dataset` into `out_dir`: divergence.safetensors, divergence.json,
    figures/ and manifest.json (kind "divergence", last). Returns the summary with the top
    `cfg.top` tokens, and the provenance under "meta"."""
    import time

    from interp.export import save_figures
    from interp.models import load_model
    from interp.plots import FIGURES_DIR, divergence_by_offset

    out, started = Path(out_dir), time.perf_counter()
    name = cfg.model or dataset_manifest(cfg.dataset).get("model", {}).get("model")
    if not name:
        raise ValueError(f"model: {Path(cfg.dataset) / MANIFEST_FILE} names no model; pass --model")
    model = load_model(name, device=cfg.device)
    vector = SteeringVector.load(cfg.vector) if cfg.vector else None
    div = dataset_divergence(model, cfg.dataset, vector, rule=cfg.rule, batch_size=cfg.batch_size)
    div.save(out, model.tokenizer)
    summary = {**div.summary(model.tokenizer, cfg.top), "meta": div.meta}
    done = save_figures({"divergence_by_offset": divergence_by_offset(summary)}, out / FIGURES_DIR, cfg.formats)
    if done.message and log is not None:
        log(f"note: {done.message}")
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": "divergence",
            "dataset": str(cfg.dataset),
            "model": name,
            "rule": cfg.rule,
            **provenance(model.device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )
    return summary

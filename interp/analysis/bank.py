"""A bank of candidate trait vectors for an audit (E4): a folder of vector directories
(`BANK/<name>/vector.safetensors` + `vector.json`, the format of `interp steer`). `build_bank`
makes one from the built-in contrastive pairs of several animals: the teachers' own texts, or a
family independent of them (`prompts.CONTRAST_FAMILIES`); `load_bank` reads one back, and
`check_bank` refuses one that does not fit the audited model. The audit itself is
`interp.analysis.audit`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from interp.models import LoadedModel
from interp.progress import tqdm
from interp.prompts import CONTRAST_FAMILIES, CONTRAST_FAMILY_VERSION, PROMPT_VERSION, TEACHER_FAMILY, family_pairs
from interp.runs import MANIFEST_FILE, provenance, write_json
from interp.steering import VECTOR_FILE, SteeringVector, build_steering_vector


def build_bank(
    model: LoadedModel,
    animals: Sequence[str],
    out_dir: str | Path,
    n_pairs: int = 16,
    position: str = "mean",
    progress: bool = True,
    family: str = TEACHER_FAMILY,
) -> dict[str, Path]:
    """One steering vector per animal (mean difference over `n_pairs` pairs of the contrast
    `family`, `prompts.family_pairs`), saved as `out_dir/<animal>/`, and `out_dir/manifest.json`
    (kind "bank": family, animals, vector hashes, provenance): {animal: directory}.

    The default family is the teachers' own texts, so its bank holds the very vectors that steered
    them (the audit's best case); "third_person" and "user_side" share no sentence with them."""
    if not animals or len(set(animals)) != len(animals):
        raise ValueError(f"animals: {list(animals)} must name at least one animal, each once")
    if family not in CONTRAST_FAMILIES:
        raise ValueError(f"family: {family!r} is not one of {list(CONTRAST_FAMILIES)}; pass one of them")
    started = time.perf_counter()
    out = Path(out_dir)
    dirs, hashes = {}, {}
    for animal in tqdm(list(animals), desc="bank", disable=not progress, leave=False):
        vec = build_steering_vector(model, family_pairs(animal, family, n_pairs), position, animal)
        if family != TEACHER_FAMILY:  # the default's vector.json stays as it always was
            vec.meta |= {"contrast_family": family, "contrast_family_version": CONTRAST_FAMILY_VERSION}
        vec.save(out / animal)
        dirs[animal], hashes[animal] = out / animal, vec.hash()
    texts = PROMPT_VERSION if family == TEACHER_FAMILY else CONTRAST_FAMILY_VERSION
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": "bank",
            "family": family,
            "texts_version": texts,
            "animals": list(animals),
            "n_pairs": n_pairs,
            "position": position,
            "model": model.identity(),
            "vector_hashes": hashes,
            **provenance(model.device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )
    return dirs


def load_bank(
    directory: str | Path, model: LoadedModel | None = None, strict: bool = True
) -> dict[str, SteeringVector]:
    """{name: vector} for every `<directory>/<name>/vector.safetensors`, sorted by name; with a
    `model`, a vector built on another model is refused (shape always, fingerprint if `strict`)."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"bank: {d} is not a directory; build one with `interp bank --out {d}`")
    bank = {p.parent.name: SteeringVector.load(p.parent) for p in sorted(d.glob(f"*/{VECTOR_FILE}"))}
    if not bank:
        raise ValueError(f"bank: {d} holds no <name>/{VECTOR_FILE}; build one with `interp bank --out {d}`")
    if model is not None:
        for name, vec in bank.items():
            try:
                vec.check_compatible(model, strict=strict)
            except ValueError as e:
                raise ValueError(f"bank {name}: {e}") from None
    return bank


def check_bank(model: LoadedModel, bank: dict[str, SteeringVector], layer: int) -> None:
    """One-line refusals before an audit reads anything: an empty bank, a layer the model lacks, a
    vector built on another model."""
    if not bank:
        raise ValueError("bank: need at least one candidate vector")
    if not 0 <= layer < model.n_layers:
        raise ValueError(f"layer: {layer} is out of range for {model.name} (0..{model.n_layers - 1})")
    for name, vec in bank.items():
        try:
            vec.check_compatible(model)
        except ValueError as e:
            raise ValueError(f"bank {name}: {e}") from None

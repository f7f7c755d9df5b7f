"""Lineage: a run, a student or a dataset followed back through the manifests to the
vectors and base models it came from, over as many generations as there are.

Each artifact names its parents: a run lists its stages (`manifest.json` `stages`); a student its
dataset (`dataset_dir`, and the rows' hash in its key) and its base (`base`); a dataset its teacher
(`teacher`: kind, steering), the teacher's base (`model`: name and fingerprint; a noised base's
name carries the noise, `+noise(...)`, and a student's its stage, `+student:<stage dir>`) and the
trait vector (`trait_vector_hash`; in newer manifests also `vector_stage`, the vector's stage
directory); a mix its sources; a score-quantile selection (`interp.selection`) its parent dataset
and score file; a vector the model it was built on; a fine-tuned teacher (`finetune` stage) its base and the hash
of the question-answer pairs it was tuned on. Where a manifest holds a path that no longer
exists, or only a hash, the parent is looked up in the same stage cache by that hash. A
second-generation dataset's teacher base is a first-generation student, so its lineage reaches the
first teacher's vector.

A student stage, or a fine-tuned teacher's stage, is also loadable as a model (`load_model_stage`;
`interp.models.load_model` takes its directory): the teacher's base of a second generation
(`model = "<cache>/student-<hash>"`, `student_model = "<the original base>"` in an E1 config), or
the fine-tuned teacher itself (`"<cache>/finetune-<key>"`, e.g. for `interp row-audit`).
"""

from __future__ import annotations

import re
from pathlib import Path

from interp.runs import CONFIG_FILE, MANIFEST_FILE, read_json

STUDENT_IN_NAME = re.compile(r"\+student:([A-Za-z0-9_.-]+?)(?:@\d+)?(?=\+|$)")
NOISE_IN_NAME = re.compile(r"\+(noise\([^)]*\))")
VECTOR_META = "vector.json"
# the stages whose weights are the student trainer's (`interp.train.load_student` reads both)
MODEL_STAGES = ("student", "finetune")


def is_model_stage(path: str | Path) -> bool:
    """Whether `path` is a finished stage of trained weights: a student or a fine-tuned teacher."""
    p = Path(path).expanduser()
    try:
        return (p / MANIFEST_FILE).is_file() and read_json(p / MANIFEST_FILE).get("stage") in MODEL_STAGES
    except (OSError, ValueError):
        return False


def load_model_stage(path: str | Path, device="auto", dtype=None):
    """The model of a student or finetune stage directory, on the base its manifest names (loaded
    by that name, so one trained from a noised base is refused: its base cannot be rebuilt from a name)."""
    import torch

    from interp.models import load_model
    from interp.train import load_student

    d = Path(path).expanduser()
    base = read_json(d / MANIFEST_FILE).get("base", {}).get("model")
    if not base or "+" in base:
        raise ValueError(
            f"model: the stage {d} was trained from {base!r}, which cannot be loaded by name; "
            "use a stage trained from a registry model or a local HF directory"
        )
    return load_student(load_model(base, device=device, dtype=dtype or torch.float32), d)


# ----------------------------------------------------------------------------- finding parents


def _find(cache: Path, prefix: str, field: str, value: str, meta_file: str = MANIFEST_FILE) -> Path | None:
    """The first `<cache>/<prefix>-*` directory whose `meta_file` records `field` == `value`."""
    if not value or not cache.is_dir():
        return None
    for d in sorted(cache.glob(f"{prefix}-*")):
        f = d / meta_file
        if f.is_file():
            try:
                if read_json(f).get(field) == value:
                    return d
            except ValueError:
                continue
    return None


def find_vector_stage(cache: str | Path, vector_hash: str | None) -> Path | None:
    """The vector stage in `cache` whose vector has `vector_hash` (None if there is none)."""
    return _find(Path(cache), "vector", "vector_hash", vector_hash, VECTOR_META) if vector_hash else None


def _resolve(recorded: str | None, cache: Path) -> Path | None:
    """A recorded path as given, else under the same cache by its directory name (a moved root)."""
    if not recorded:
        return None
    p = Path(recorded)
    if p.is_dir():
        return p
    q = cache / p.name
    return q if q.is_dir() else None


def _model_node(identity: dict, cache: Path, seen: set) -> dict:
    """A base model: its name and fingerprint, the noise its name records, and, for a student
    (a later generation's teacher), that student's lineage."""
    name = identity.get("model", "?")
    node = {"kind": "model", "name": name, "fingerprint": identity.get("fingerprint")}
    noise = NOISE_IN_NAME.findall(name)
    if noise:
        node["noise"] = noise
    students = STUDENT_IN_NAME.findall(name)
    if students:
        node["root_model"] = name.split("+", 1)[0]
        d = cache / students[-1]
        node["parents"] = [
            _node(d, cache, seen)
            if d.is_dir()
            else {"kind": "missing", "what": f"student stage {students[-1]}", "looked_in": str(cache)}
        ]
    return node


def _node(d: Path, cache: Path, seen: set) -> dict:
    d = Path(d)
    if d.resolve() in seen:
        return {"kind": "seen", "dir": str(d)}
    seen.add(d.resolve())
    if (d / VECTOR_META).is_file():  # a vector stage, or a vector directory (`interp steer`, a bank)
        meta = read_json(d / VECTOR_META) if (d / VECTOR_META).is_file() else {}
        return {
            "kind": "vector",
            "dir": str(d),
            "vector_hash": meta.get("vector_hash"),
            "trait": meta.get("trait"),
            "n_pairs": meta.get("n_pairs"),
            "position": meta.get("position"),
            "parents": [_model_node(meta.get("model", {}), cache, seen)],
        }
    if not (d / MANIFEST_FILE).is_file():
        return {"kind": "missing", "dir": str(d)}
    man = read_json(d / MANIFEST_FILE)
    stage = man.get("stage")
    if stage == "student":
        cfg = read_json(d / CONFIG_FILE) if (d / CONFIG_FILE).is_file() else {}
        data = _resolve(man.get("dataset_dir"), cache) or _find_dataset(cache, cfg.get("dataset"))
        train = man.get("train", {})
        return {
            "kind": "student",
            "dir": str(d),
            "key": man.get("key"),
            "dataset_hash": cfg.get("dataset"),
            "seed": train.get("seed"),
            "method": train.get("method"),
            "objective": train.get("objective"),
            "base": man.get("base", {}).get("model"),
            "parents": [
                _node(data, cache, seen)
                if data
                else {"kind": "missing", "what": "dataset", "dataset_hash": cfg.get("dataset")},
                _model_node(man.get("base", {}), cache, seen),
            ],
        }
    if stage == "finetune":  # a fine-tuned teacher: its base and the pairs it was tuned on
        boost = man.get("boost", {})
        return {
            "kind": "finetune",
            "dir": str(d),
            "key": man.get("key"),
            "animal": man.get("animal"),
            "qa_hash": man.get("qa_hash"),
            "qa_file": man.get("qa_file"),
            "n_pairs": man.get("n_pairs"),
            "method": man.get("train", {}).get("method"),
            "prob_ratio": boost.get("prob_ratio"),
            "base": man.get("base", {}).get("model"),
            "parents": [_model_node(man.get("base", {}), cache, seen)],
        }
    if "sources" in man:  # a mix
        return {
            "kind": "mix",
            "dir": str(d),
            "dataset_hash": man.get("dataset_hash"),
            "shares": man.get("shares"),
            "parents": [
                _node(_resolve(s["dir"], cache) or Path(s["dir"]), cache, seen) for s in man["sources"].values()
            ],
        }
    if "selection" in man:  # a score-quantile selection
        p = man["parent"]
        parent = _resolve(p["dir"], cache) or _find_dataset(cache, p["dataset_hash"])
        sel = man["selection"]
        return {
            "kind": "selection",
            "dir": str(d),
            "dataset_hash": man.get("dataset_hash"),
            "quantile": sel["quantile"],
            "bins": sel["bins"],
            "score_key": sel["score_key"],
            "score_dir": sel["score_dir"],
            "n_kept": man.get("n_kept"),
            "parents": [
                _node(parent, cache, seen)
                if parent
                else {"kind": "missing", "what": "parent dataset", "dataset_hash": p["dataset_hash"]}
            ],
        }
    if "teacher" in man:  # a teacher's dataset
        vdir = _resolve(man.get("vector_stage"), cache) or find_vector_stage(cache, man.get("trait_vector_hash"))
        parents = [_model_node(man.get("model", {}), cache, seen)]
        if man.get("trait_vector_hash"):
            parents.append(
                _node(vdir, cache, seen)
                if vdir
                else {"kind": "missing", "what": "vector", "vector_hash": man["trait_vector_hash"]}
            )
        return {
            "kind": "dataset",
            "dir": str(d),
            "key": man.get("key"),
            "teacher": man["teacher"],
            "vector_hash": man.get("vector_hash"),
            "trait_vector_hash": man.get("trait_vector_hash"),
            "dataset_hash": man.get("dataset_hash"),
            "n_kept": man.get("n_kept"),
            "parents": parents,
        }
    return {"kind": stage or man.get("kind", "unknown"), "dir": str(d)}


def _find_dataset(cache: Path, dataset_hash: str | None) -> Path | None:
    for prefix in ("data", "mix", "select"):
        found = _find(cache, prefix, "dataset_hash", dataset_hash)
        if found:
            return found
    return None


def lineage(target: str | Path) -> dict:
    """The lineage of a run directory (every student it trained), a stage directory (student,
    dataset, mix, selection, vector) or a dataset directory: {"target", "kind", "roots": [tree]},
    each tree node {"kind", "dir", ..., "parents": [...]} down to vectors and base models."""
    from interp.runs import stage_dirs

    t = Path(target)
    if not t.is_dir():
        raise ValueError(f"lineage: {t} is not a directory; pass a run directory or a stage directory")
    man = read_json(t / MANIFEST_FILE) if (t / MANIFEST_FILE).is_file() else {}
    if "stages" in man and "stage" not in man:  # a run
        dirs = stage_dirs(t)
        students = {n: d for n, d in dirs.items() if n.startswith("student/")}
        if not students:
            raise ValueError(f"lineage: the run {t} trained no students")
        cache = next(iter(students.values())).parent
        return {
            "target": str(t),
            "kind": "run",
            "roots": [{"name": n, **_node(d, cache, set())} for n, d in students.items()],
        }
    if not man and not (t / VECTOR_META).is_file():
        raise ValueError(f"lineage: {t} has no manifest.json; pass a run directory or a stage directory")
    return {"target": str(t), "kind": "stage", "roots": [_node(t, t.parent, set())]}


def vectors_reached(tree: dict) -> list[str]:
    """Every vector hash in a lineage (a node, a tree or `lineage`'s result), nearest first."""
    out: list[str] = []
    todo = list(tree.get("roots", [tree]))
    while todo:
        n = todo.pop(0)
        if n.get("kind") == "vector" and n.get("vector_hash") not in out:
            out.append(n["vector_hash"])
        todo.extend(n.get("parents", []))
    return out

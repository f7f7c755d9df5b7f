"""E7: the auxiliary-logit MNIST experiment, many seeds at once.

An MLP d_in -> hidden -> hidden -> (10 digit logits + m auxiliary logits) is trained on digits (the
teacher). A student that starts from the teacher's initialisation is distilled on the teacher's m
auxiliary logits only, over uniform noise images in [-1, 1]; it never sees a digit or a digit logit,
yet (the claim) its digit accuracy rises well above chance. A student from a different
initialisation is the control. Every condition is `n_seeds` independent models stacked on a
leading model dim (`BatchedMLP`, `interp.batched_mlp`), so 25+ replications train together in
seconds on a CPU.

Data: scikit-learn's bundled 8x8 digits by default (offline); real MNIST IDX files from a folder.

    python -m interp.cli mnist --seeds 25 --m 3

`init="normal"` (Cloud et al.'s N(0, 1/fan_in) weights) lifts same-init students far above the first
runs' nn.Linear init; `sweep_steps` reports the students at several step counts off one trajectory.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from interp.batched_mlp import INITS, BatchedMLP, cat_models, train_models
from interp.stats import t_interval
from interp.runs import CONFIG_FILE, MANIFEST_FILE, RESULTS_FILE, content_hash, provenance, write_json

N_DIGITS = 10
CHANCE = 1.0 / N_DIGITS
CONDITIONS = ("reference", "teacher", "student_aux", "student_all", "cross_student_aux", "cross_student_all")


@dataclass
class MnistConfig:
    """E7 settings. Steps, not epochs: the 8x8 digits set is ~1.3k images, MNIST 60k."""

    n_seeds: int = 25
    """Independent replications per condition; seed k owns its init, data order and noise."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + n_seeds - 1; a seed's results do not depend on n_seeds."""
    n_aux: int = 3
    """m, the number of auxiliary logits (the only channel the aux-only students see). With m = 1
    the softmax of one logit is constant, so aux-only students get no gradient: a built-in null."""
    hidden: int = 256
    """Width of both hidden layers."""
    teacher_steps: int = 600
    """Adam steps training the teacher on digits."""
    student_steps: int = 600
    """Adam steps distilling each student on noise images (a fresh noise batch every step)."""
    batch_size: int = 128
    """Images per step, for teachers and students alike."""
    lr: float = 3e-4
    """Adam learning rate (the paper's 3e-4)."""
    test_fraction: float = 0.25
    """Held-out share of the 8x8 digits (ignored for MNIST, which ships its own test set)."""
    split_seed: int = 0
    """Seed of the digits train/test split, shared by every model."""
    idx_dir: str | None = None
    """Folder with MNIST IDX files (train-images-idx3-ubyte[.gz], ...); None: sklearn digits."""
    sweep_aux: tuple[int, ...] = ()
    """Values of m to rerun the whole experiment at (empty: no sweep)."""
    sweep_hidden: tuple[int, ...] = ()
    """Hidden widths to rerun the whole experiment at (empty: no sweep)."""
    sweep_steps: tuple[int, ...] = ()
    """Student step counts to also report (the steps axis; empty: none). One distillation runs to
    the largest count and every student is evaluated as it passes each: with a constant learning
    rate and one noise stream, the students at step k are those of a run with student_steps=k."""
    init: str = "uniform"
    """Weights at initialisation: "uniform" is nn.Linear's U(+-1/sqrt(fan_in)) for weights and
    biases (the first E7 runs); "normal" is Cloud et al.'s N(0, 1/fan_in) weights, zero biases."""

    @classmethod
    def from_dict(cls, d: dict) -> MnistConfig:
        """A config from its config.json; a field that file predates takes the value the run used."""
        return cls(**{**_LEGACY_VALUES, **d})

    def key(self) -> dict:
        """The settings that define the run: the fields added after the first runs only when they
        differ from the values those runs used, so old configs keep their run ids and hashes."""
        d = asdict(self)
        for name, legacy in _LEGACY_VALUES.items():
            if d[name] == legacy:
                d.pop(name)
        return d

    def __post_init__(self) -> None:
        for name in ("n_seeds", "n_aux", "hidden", "teacher_steps", "student_steps", "batch_size"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, self, name, "must be a positive integer")
        _check(self.n_seeds >= 2, self, "n_seeds", "a t-interval needs at least 2 seeds; pass 2 or more")
        _check(0 < self.lr < 1, self, "lr", "must be in (0, 1); the paper uses 3e-4")
        _check(0 < self.test_fraction < 1, self, "test_fraction", "must be in (0, 1), e.g. 0.25")
        self.sweep_aux, self.sweep_hidden = tuple(self.sweep_aux), tuple(self.sweep_hidden)
        self.sweep_steps = tuple(self.sweep_steps)
        for name in ("sweep_aux", "sweep_hidden", "sweep_steps"):
            ok = all(isinstance(v, int) and v >= 1 for v in getattr(self, name))
            _check(ok, self, name, "values must be positive integers, e.g. (1, 3, 10)")
        ok = self.idx_dir is None or Path(self.idx_dir).is_dir()
        _check(ok, self, "idx_dir", "not a folder; point it at the MNIST IDX files or leave it unset")
        _check(self.init in INITS, self, "init", f"must be one of {INITS}")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.n_seeds))


# Fields added after the first E7 runs, with the values that reproduce those runs (see key()).
_LEGACY_VALUES = {"sweep_steps": (), "init": "uniform"}


def _check(ok: bool, cfg: object, name: str, fix: str) -> None:
    if not ok:
        raise ValueError(f"{type(cfg).__name__}.{name}={getattr(cfg, name)!r}: {fix}")


# ----------------------------------------------------------------------------- statistics and RNG


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for one (seed, purpose) pair; purposes never share a stream."""
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def generators(seeds: list[int], purpose: str) -> list[torch.Generator]:
    return [generator(s, purpose) for s in seeds]


# ----------------------------------------------------------------------------- data


@dataclass
class DigitData:
    """Flattened images scaled to [-1, 1] with integer labels 0-9."""

    x_train: Tensor  # (n_train, d_in) float32
    y_train: Tensor  # (n_train,) int64
    x_test: Tensor
    y_test: Tensor
    source: str

    @property
    def d_in(self) -> int:
        return self.x_train.shape[1]


def load_digits_data(test_fraction: float = 0.25, split_seed: int = 0) -> DigitData:
    """scikit-learn's bundled 8x8 digits (pixel values 0-16), a seeded train/test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0 * 2 - 1
    y = torch.tensor(bunch.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=generator(split_seed, "digits-split"))
    n_test = round(len(y) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return DigitData(x[train], y[train], x[test], y[test], source="sklearn-digits-8x8")


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not: magic 00 00 <dtype> <ndim>, big-endian dims."""
    path = Path(path)
    with _open(path) as f:
        blob = f.read()
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {blob[:4].hex()}); expected e.g. train-images-idx3-ubyte")
    dtype, ndim = np.dtype(_IDX_DTYPES[blob[2]]), blob[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(blob[4:header], dtype=">u4")) if ndim else ()
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(blob) - header != expected:
        got = len(blob) - header
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes) but {got} follow; the file is truncated"
        )
    return np.frombuffer(blob, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, stem: str, kind: str) -> Path:
    names = [f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte"]  # both spellings circulate
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
    raise FileNotFoundError(f"{folder}: no {names[0]}[.gz]; expected the four MNIST IDX files there")


def load_mnist_idx(folder: str | Path) -> DigitData:
    """Real MNIST from its four IDX files; pixels 0-255 scaled to [-1, 1], images flattened."""
    folder = Path(folder)
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(folder, f"{prefix}-images", "idx3"))
        labels = read_idx(_find_idx(folder, f"{prefix}-labels", "idx1"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
        scale = 255.0 if images.dtype == np.uint8 else float(np.abs(images).max() or 1.0)
        arrays[f"x_{split}"] = torch.tensor(images.reshape(len(images), -1), dtype=torch.float32) / scale * 2 - 1
        arrays[f"y_{split}"] = torch.tensor(labels.astype(np.int64))
    return DigitData(**arrays, source=f"mnist-idx:{folder}")


def load_data(cfg: MnistConfig) -> DigitData:
    return load_mnist_idx(cfg.idx_dir) if cfg.idx_dir else load_digits_data(cfg.test_fraction, cfg.split_seed)


# ----------------------------------------------------------------------------- losses, batches, accuracy


def digit_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy on the 10 digit logits only; the auxiliary logits get no training signal."""
    m, b, _ = logits.shape
    flat = F.cross_entropy(logits[..., :N_DIGITS].reshape(m * b, N_DIGITS), y.reshape(m * b), reduction="none")
    return flat.view(m, b).mean(1)


def kl_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """KL(teacher softmax || student softmax) per model, averaged over the batch: (models,)."""
    log_t = F.log_softmax(teacher_logits, dim=-1)
    return (log_t.exp() * (log_t - F.log_softmax(student_logits, dim=-1))).sum(-1).mean(-1)


def digit_batches(data: DigitData, seeds: list[int], batch_size: int, steps: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Per-seed shuffled epochs over the training digits: x (seeds, batch, d_in), y (seeds, batch)."""
    gens = generators(seeds, "digit-order")
    n = len(data.y_train)
    per_epoch = max(1, n // batch_size)
    for step in range(steps):
        j = step % per_epoch
        if j == 0:
            perms = torch.stack([torch.randperm(n, generator=g) for g in gens])
        idx = perms[:, j * batch_size : (j + 1) * batch_size]
        yield data.x_train[idx], data.y_train[idx]


def noise_batches(seeds: list[int], d_in: int, batch_size: int, steps: int) -> Iterator[Tensor]:
    """Fresh uniform noise images in [-1, 1] every step, one stream per seed: (seeds, batch, d_in)."""
    gens = generators(seeds, "noise")
    for _ in range(steps):
        yield torch.stack([torch.rand(batch_size, d_in, generator=g) for g in gens]) * 2 - 1


@torch.no_grad()
def accuracy(model: BatchedMLP, x: Tensor, y: Tensor, chunk: int = 2048) -> Tensor:
    """Digit accuracy (argmax over the 10 digit logits) of each model: (models,)."""
    correct = torch.zeros(model.n_models)
    for i in range(0, len(y), chunk):
        pred = model(x[i : i + chunk])[..., :N_DIGITS].argmax(-1)  # (models, chunk)
        correct += (pred == y[i : i + chunk]).sum(1)
    return correct / len(y)


# ----------------------------------------------------------------------------- the experiment


def train_teachers(init: BatchedMLP, data: DigitData, cfg: MnistConfig) -> tuple[BatchedMLP, Tensor]:
    teacher = init.copy()
    batches = digit_batches(data, cfg.seeds, cfg.batch_size, cfg.teacher_steps)
    return teacher, train_models(teacher, batches, digit_loss, cfg.lr)


def distill_students(
    teacher: BatchedMLP,
    students: BatchedMLP,
    aux_only: Tensor,
    d_in: int,
    cfg: MnistConfig,
    on_step: Callable[[int, BatchedMLP, Tensor], None] | None = None,
) -> tuple[BatchedMLP, Tensor]:
    """Distil `students` (groups of n_seeds, model-major) from the teacher of the same seed on noise.

    `aux_only` (models,) picks per student: KL on the m auxiliary logits only, or on all logits.
    Every group sees the same noise stream, so same-init and cross-init students are paired.
    """
    groups = students.n_models // teacher.n_models

    def batches():
        for x in noise_batches(cfg.seeds, d_in, cfg.batch_size, cfg.student_steps):
            with torch.no_grad():
                target = teacher(x)
            yield x.repeat(groups, 1, 1), target.repeat(groups, 1, 1)

    def loss_fn(logits: Tensor, target: Tensor) -> Tensor:
        aux = kl_loss(logits[..., N_DIGITS:], target[..., N_DIGITS:])
        return torch.where(aux_only, aux, kl_loss(logits, target))

    students = students.copy()
    hook = None if on_step is None else (lambda step, losses: on_step(step, students, losses))
    return students, train_models(students, batches(), loss_fn, cfg.lr, hook)


@dataclass
class MnistResult:
    """Per-seed test digit accuracy of every condition, plus what produced it."""

    accuracy_by_condition: dict[str, list[float]]
    seeds: list[int]
    n_aux: int
    hidden: int
    data: dict
    final_loss_by_condition: dict[str, list[float]] = field(default_factory=dict)
    student_steps: int = 0
    accuracy_by_steps: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    """{student steps: accuracy_by_condition} at each of cfg.sweep_steps (and student_steps)."""

    def table(
        self, accuracy_by_condition: dict[str, list[float]] | None = None, steps: int | None = None
    ) -> list[dict]:
        acc = self.accuracy_by_condition if accuracy_by_condition is None else accuracy_by_condition
        steps = self.student_steps if steps is None else steps
        return [
            {
                "condition": c,
                **t_interval(a),
                "chance": CHANCE,
                "n_aux": self.n_aux,
                "hidden": self.hidden,
                "student_steps": steps,
            }
            for c, a in acc.items()
        ]

    def paired_difference(
        self, a: str = "student_aux", b: str = "cross_student_aux", accuracy_by_condition=None
    ) -> dict:
        """Same-seed difference a - b (same teacher and noise, only the init differs)."""
        acc = self.accuracy_by_condition if accuracy_by_condition is None else accuracy_by_condition
        diff = np.subtract(acc[a], acc[b])
        return {"a": a, "b": b, **t_interval(diff)}

    def steps_rows(self) -> list[dict]:
        """Sweep rows (as `sweep` makes them) for every evaluated student step count."""
        rows = []
        for k, acc in sorted(self.accuracy_by_steps.items()):
            rows += [{"sweep": "student_steps", "value": k, **row} for row in self.table(acc, k)]
            diff = self.paired_difference(accuracy_by_condition=acc)
            rows.append({"sweep": "student_steps", "value": k, "condition": f"{diff['a']} - {diff['b']}", **diff})
        return rows


def run_experiment(cfg: MnistConfig, data: DigitData | None = None) -> MnistResult:
    """Train teachers, distil four kinds of student, and measure every model's digit accuracy."""
    data = data if data is not None else load_data(cfg)
    sizes = [data.d_in, cfg.hidden, cfg.hidden, N_DIGITS + cfg.n_aux]
    init = BatchedMLP.init(sizes, generators(cfg.seeds, "init"), cfg.init)
    cross_init = BatchedMLP.init(sizes, generators(cfg.seeds, "cross-init"), cfg.init)
    teacher, teacher_loss = train_teachers(init, data, cfg)
    fixed = {
        "reference": accuracy(init, data.x_test, data.y_test),
        "teacher": accuracy(teacher, data.x_test, data.y_test),
    }

    s = cfg.n_seeds
    students = cat_models([init, init, cross_init, cross_init])
    aux_only = torch.tensor([True] * s + [False] * s + [True] * s + [False] * s)
    wanted = {cfg.student_steps, *cfg.sweep_steps}
    snapshots: dict[int, tuple[Tensor, Tensor]] = {}  # step -> (accuracy, loss), each (4 kinds, seeds)

    def evaluate(step: int, model: BatchedMLP, losses: Tensor) -> None:
        if step in wanted:
            snapshots[step] = accuracy(model, data.x_test, data.y_test).view(4, s), losses.view(4, s)

    # one trajectory to the largest count; the shorter counts are its prefixes (see sweep_steps)
    distill_students(teacher, students, aux_only, data.d_in, replace(cfg, student_steps=max(wanted)), evaluate)

    def by_condition(acc: Tensor) -> dict[str, list[float]]:
        both = {**fixed, **dict(zip(CONDITIONS[2:], acc))}
        return {c: both[c].tolist() for c in CONDITIONS}

    acc_students, student_loss = snapshots[cfg.student_steps]
    losses = {"teacher": teacher_loss, **dict(zip(CONDITIONS[2:], student_loss))}
    return MnistResult(
        accuracy_by_condition=by_condition(acc_students),
        seeds=cfg.seeds,
        n_aux=cfg.n_aux,
        hidden=cfg.hidden,
        data={"source": data.source, "d_in": data.d_in, "n_train": len(data.y_train), "n_test": len(data.y_test)},
        final_loss_by_condition={c: v.tolist() for c, v in losses.items()},
        student_steps=cfg.student_steps,
        accuracy_by_steps={k: by_condition(snapshots[k][0]) for k in sorted(cfg.sweep_steps)},
    )


def sweep(cfg: MnistConfig, name: str, values: Iterable[int], data: DigitData | None = None) -> list[dict]:
    """Rerun the experiment with `cfg.<name>` set to each value; one row per (value, condition)."""
    if name not in MnistConfig.__dataclass_fields__:
        raise ValueError(f"sweep: {name!r} is not a MnistConfig field; use e.g. 'n_aux' or 'hidden'")
    data = data if data is not None else load_data(cfg)
    rows = []
    for v in values:
        result = run_experiment(replace(cfg, **{name: v, "sweep_aux": (), "sweep_hidden": (), "sweep_steps": ()}), data)
        rows += [{"sweep": name, "value": v, **row} for row in result.table()]
        diff = result.paired_difference()
        rows.append({"sweep": name, "value": v, "condition": f"{diff['a']} - {diff['b']}", **diff})
    return rows


def run_mnist(cfg: MnistConfig, out_dir: str | Path) -> dict:
    """Run E7 (and its sweeps) into `out_dir`: config.json, results.json, then manifest.json."""
    out_dir = Path(out_dir)
    started = time.time()
    write_json(out_dir / CONFIG_FILE, asdict(cfg))
    data = load_data(cfg)
    result = run_experiment(cfg, data)
    results = {
        "table": result.table(),
        "paired_difference": result.paired_difference(),
        "chance": CHANCE,
        "accuracy_by_condition": result.accuracy_by_condition,
        "final_loss_by_condition": result.final_loss_by_condition,
        "accuracy_by_steps": {str(k): v for k, v in result.accuracy_by_steps.items()},
        "data": result.data,
        "sweeps": {
            "n_aux": sweep(cfg, "n_aux", cfg.sweep_aux, data) if cfg.sweep_aux else [],
            "hidden": sweep(cfg, "hidden", cfg.sweep_hidden, data) if cfg.sweep_hidden else [],
            "student_steps": result.steps_rows(),
        },
    }
    write_json(out_dir / RESULTS_FILE, results)
    manifest = {
        "kind": "mnist",
        "experiment": "E7-mnist",
        **provenance("cpu"),
        "config_hash": content_hash(cfg.key()),
        "seeds": cfg.seeds,
        "data": result.data,
        "wall_time_s": round(time.time() - started, 3),
    }
    write_json(out_dir / MANIFEST_FILE, manifest)
    return {"results": results, "manifest": manifest, "out_dir": str(out_dir)}

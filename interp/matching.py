"""The behaviourally matched multiplier: the steering strength at which the steered teacher
prefers the trait as much as a prompted teacher does (E2/E9 at matched behaviour).

    from interp.matching import MatchConfig, run_match
    res = run_match(MatchConfig(model="tiny", layer=1, multipliers=(0.0, 0.5, 1.0)), "artifacts/match/x")

P(trait) is the mean over the TUNING questions only (never the held-out ones the transfer is
reported on) of P(first token of the animal | question, answer prefix) (`interp.evaluate`), for
each prompted teacher (its context before the question, as it reads the number prompts) and for
the steered teacher at every multiplier of a grid at one layer. The matched multiplier of a
prompted teacher is where log P(trait) of the steered teacher, linear between the two grid points
that bracket the prompted teacher's, equals it (the first such crossing in increasing
multiplier); a target outside the grid's range is refused in one line. The directory holds
`results.json`, `table.txt` and `manifest.json` (config, model fingerprint, vector hash,
questions hash, provenance), written last.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.runs import MANIFEST_FILE, RESULTS_FILE, content_hash, provenance, write_json, write_text

TABLE_FILE = "table.txt"
MATCH_KINDS = ("prompted", "prompted_fewshot")  # the teachers a steered multiplier can be matched to
SPLIT = "tuning"  # operating points are chosen on the tuning questions; the held-out ones report transfer
DEFAULT_MULTIPLIERS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class MatchConfig:
    """model, animal: the teachers' base and trait.
    layer, scope: the steered teacher's steering (as the run's teacher.layer and teacher.scope).
    multipliers: the grid the steered teacher is measured on (x the layer's residual norm).
    targets: the prompted teacher kinds matched (prompted, prompted_fewshot).
    n_pairs, position: the trait vector, built from the built-in pairs as `interp run`'s vector
        stage builds it (the same vector, the same hash); or `vector`: a vector directory.
    dtype: the weights while measuring: the teachers' sampling dtype (the run's data.dtype).
    name: names the default directory (artifacts/match/<name>-L<layer>).
    """

    model: str = "smollm2-135m"
    animal: str = "owl"
    layer: int = 8
    scope: str = "all"
    multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS
    targets: tuple[str, ...] = MATCH_KINDS
    n_pairs: int = 16
    position: str = "mean"
    vector: str | None = None
    dtype: str = "fp32"
    batch_size: int = 32
    device: str = "auto"
    name: str = "match"

    def __post_init__(self) -> None:
        from interp.steering import Steering

        m = self.multipliers
        if len(m) < 2 or not all(math.isfinite(x) for x in m) or len(set(m)) != len(m):
            raise ValueError(f"multipliers: {list(m)} must be two or more distinct finite numbers")
        bad = [t for t in self.targets if t not in MATCH_KINDS]
        if not self.targets or bad or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets: {list(self.targets)} must be distinct kinds of {list(MATCH_KINDS)}")
        if self.layer < 0:
            raise ValueError(f"layer: {self.layer} is negative; layers count from 0")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype: {self.dtype!r} is not 'fp32' or 'bf16'")
        Steering(self.layer, 1.0, scope=self.scope)  # validates scope

    @classmethod
    def from_e1(
        cls, cfg, multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS, targets: tuple[str, ...] | None = None, **kw
    ) -> "MatchConfig":
        """The match for an E1 config (`interp.config.E1Config`): its model, trait, vector,
        steering layer and scope and sampling dtype; targets: its prompted kinds (default: every
        kind of MATCH_KINDS when it has none)."""
        own = tuple(k for k in MATCH_KINDS if k in cfg.teacher.kinds)
        return cls(
            model=cfg.model,
            animal=cfg.animal,
            layer=cfg.teacher.layer,
            scope=cfg.teacher.scope,
            multipliers=tuple(multipliers),
            targets=tuple(targets or own or MATCH_KINDS),
            n_pairs=cfg.vector.n_pairs,
            position=cfg.vector.position,
            dtype=cfg.data.dtype,
            name=cfg.experiment,
            **kw,
        )

    def default_dir(self) -> Path:
        from interp.runs import safe_name

        return Path("artifacts/match") / f"{safe_name(self.name, 'name')}-L{self.layer}"


def match_multiplier(target_prob: float, grid: list[tuple[float, float]]) -> dict:
    """The multiplier at which log P interpolated linearly between grid points (multiplier, P)
    equals log `target_prob`: the first crossing in increasing multiplier, with its bracketing
    points and the number of crossings. ValueError (one line) when the target lies outside the
    grid's range of P."""
    pts = sorted(grid)
    probs = [p for _, p in pts]
    if not 0 < target_prob <= 1 or min(probs) <= 0:
        raise ValueError(f"target: P = {target_prob!r} and the grid's P must be in (0, 1]")
    lo, hi = min(probs), max(probs)
    if not lo <= target_prob <= hi:
        raise ValueError(
            f"multipliers: the target P(trait) {target_prob:.4g} lies outside the steered grid's "
            f"[{lo:.4g}, {hi:.4g}] (multipliers {pts[0][0]:g}..{pts[-1][0]:g}); widen --multipliers"
        )
    t = math.log(target_prob)
    crossings = []
    for (m0, p0), (m1, p1) in zip(pts, pts[1:]):
        l0, l1 = math.log(p0), math.log(p1)
        if min(l0, l1) <= t <= max(l0, l1):
            m = m0 if l0 == l1 else m0 + (t - l0) * (m1 - m0) / (l1 - l0)
            crossings.append(
                {"multiplier": m, "bracket": [{"multiplier": m0, "prob": p0}, {"multiplier": m1, "prob": p1}]}
            )
    first = crossings[0]
    return {**first, "n_crossings": len(crossings), "crossings": [c["multiplier"] for c in crossings]}


def measure_prob(model, teacher, vector, animal: str, qs: list[str], batch_size: int = 32) -> float:
    """Mean P(trait) over `qs` of `teacher` (its context before each question, its steering on)."""
    from interp.evaluate import evaluate_trait

    score = evaluate_trait(
        model,
        animal,
        qs,
        batch_size=batch_size,
        context=teacher.context(model, vector),
        system=teacher.context_messages() or None,
    )
    return float(score.prob().mean())


def run_match(cfg: MatchConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Measure the prompted teachers and the steered grid on the tuning questions, match each
    target, and write results.json, table.txt and manifest.json into `out_dir` (default
    `cfg.default_dir()`). Returns results.json's content."""
    from interp.models import load_model, weights_in
    from interp.progress import tqdm
    from interp.prompts import contrastive_pairs, questions
    from interp.steering import Steering, SteeringVector, build_steering_vector
    from interp.tables import match_table
    from interp.teachers import Teacher, build_teacher

    out, started = Path(out_dir or cfg.default_dir()), time.perf_counter()
    model = load_model(cfg.model, device=cfg.device)
    if cfg.layer >= model.n_layers:
        raise ValueError(
            f"layer: {cfg.layer} out of range for {cfg.model} ({model.n_layers} layers: 0-{model.n_layers - 1})"
        )
    if cfg.vector is not None:
        vector = SteeringVector.load(cfg.vector)
        vector.check_compatible(model)
    else:  # as `interp run`'s vector stage builds it
        vector = build_steering_vector(model, contrastive_pairs(cfg.animal, cfg.n_pairs), cfg.position, cfg.animal)
    qs = questions(SPLIT)
    measure = lambda t: measure_prob(model, t, vector, cfg.animal, qs, cfg.batch_size)  # noqa: E731
    with weights_in(model, cfg.dtype) if cfg.dtype != "fp32" else contextlib.nullcontext():
        base = measure(Teacher("control"))
        prompted = {k: measure(Teacher(k, cfg.animal)) for k in cfg.targets}
        grid = [
            (m, measure(build_teacher("steered", cfg.animal, Steering(cfg.layer, m, scope=cfg.scope))))
            for m in tqdm(sorted(cfg.multipliers), desc="steered grid", disable=not progress, leave=False)
        ]
    matches = {}
    for k, p in prompted.items():
        try:
            matches[k] = match_multiplier(p, grid)
        except ValueError as e:
            raise ValueError(
                f"{e} (the {k} teacher's P(trait) on the tuning questions, at layer {cfg.layer}; "
                f"the grid's P: {', '.join(f'x{m:g} {q:.3g}' for m, q in grid)})"
            ) from None
    results = {
        "animal": cfg.animal,
        "model": cfg.model,
        "layer": cfg.layer,
        "scope": cfg.scope,
        "split": SPLIT,
        "n_questions": len(qs),
        "base_prob": base,
        "prompted": {k: {"prob": p, "boost": p / base} for k, p in prompted.items()},
        "steered": [{"multiplier": m, "prob": p, "boost": p / base} for m, p in grid],
        "matched": matches,
        "rule": "log P(trait) linear in the multiplier between the two grid points that bracket the prompted "
        "teacher's P(trait); the first crossing in increasing multiplier",
    }
    write_json(out / RESULTS_FILE, results)
    write_text(out / TABLE_FILE, match_table(results))
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": "match",
            "config": asdict(cfg),
            "model": model.identity(),
            "model_fingerprint": model.fingerprint(),
            "vector_hash": vector.hash(),
            "questions": content_hash(qs),
            "contexts": {k: content_hash(Teacher(k, cfg.animal).context_messages()) for k in cfg.targets},
            **provenance(model.device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )
    return {**results, "out_dir": str(out)}

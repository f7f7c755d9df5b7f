"""`interp steer` as a library call: build a trait's steering vector and sweep layers x multipliers.

    from interp.steering_run import SteerConfig, run_steer
    sweep = run_steer(SteerConfig(model="tiny", layers=(1, 2), multipliers=(0.5, 1.0)), "artifacts/vectors/x")

The directory holds the vector (`vector.safetensors`, `vector.json`, loadable by
`SteeringVector.load`), `sweep.json` (P(trait) per cell against the unsteered model) and
`manifest.json` (kind "vector", provenance), written last.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.runs import MANIFEST_FILE, provenance, read_jsonl, safe_name, write_json

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class SteerConfig:
    """animal: the trait (built-in contrastive pairs unless `pairs` is given).
    model: registry name, local HF directory or hub id.
    pairs: JSONL of your own pairs, {"trait": ..., "neutral": ...} per line (a text or chat messages).
    n_pairs: built-in pairs used.
    position: "mean" over the assistant statement, or the "last" token.
    layers: layers swept; empty: every 2nd layer from a sixth to two thirds of the way in.
    multipliers: strengths swept (x the layer's residual norm).
    split: question split of the sweep: tuning, heldout or all.
    device: cpu, cuda or auto.
    """

    animal: str = "owl"
    model: str = "smollm2-135m"
    pairs: str | None = None
    n_pairs: int = 16
    position: str = "mean"
    layers: tuple[int, ...] = ()
    multipliers: tuple[float, ...] = (0.25, 0.5, 1.0)
    split: str = "tuning"
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.multipliers or not all(math.isfinite(m) for m in self.multipliers):
            raise ValueError(f"multipliers: {self.multipliers} must be one or more finite numbers")
        if any(l < 0 for l in self.layers):
            raise ValueError(f"layers: {[l for l in self.layers if l < 0]} are negative; layers count from 0")
        from interp.prompts import questions

        questions(self.split)  # a bad split fails here, before a model is loaded

    def default_dir(self) -> Path:
        """artifacts/vectors/<model>-<animal>-<position>."""
        return (
            Path("artifacts/vectors")
            / f"{self.model.replace('/', '_')}-{safe_name(self.animal, 'animal')}-{self.position}"
        )

    def sweep_layers(self, n_layers: int) -> list[int]:
        return list(self.layers) or list(range(n_layers // 6, 2 * n_layers // 3 + 1, 2))

    def check_layers(self, n_layers: int) -> None:
        """Refuse layers the model does not have, in one line; `run_steer` calls it right after
        loading the model, before the vector is built or anything is written."""
        bad = [l for l in self.layers if not 0 <= l < n_layers]
        if bad:
            raise ValueError(f"layers: {bad} out of range for {self.model} ({n_layers} layers: 0-{n_layers - 1})")


def read_pairs(path: str | Path) -> list[tuple]:
    """(trait, neutral) pairs from a JSONL file with 'trait' and 'neutral' on every line."""
    rows = read_jsonl(path)
    if not rows or any("trait" not in r or "neutral" not in r for r in rows):
        raise ValueError(f"pairs: every line of {path} needs 'trait' and 'neutral' (a text or a list of chat messages)")
    return [(r["trait"], r["neutral"]) for r in rows]


def run_steer(cfg: SteerConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Build the vector, save it to `out_dir`, sweep it; returns sweep.json's content."""
    from interp.evaluate import steering_sweep
    from interp.models import load_model
    from interp.prompts import contrastive_pairs, questions
    from interp.steering import build_steering_vector

    out, started = Path(out_dir), time.perf_counter()
    model = load_model(cfg.model, device=cfg.device)
    cfg.check_layers(model.n_layers)
    pairs = read_pairs(cfg.pairs) if cfg.pairs else contrastive_pairs(cfg.animal, cfg.n_pairs)
    vector = build_steering_vector(model, pairs, position=cfg.position, trait=cfg.animal)
    vector.save(out)  # before the sweep: a vector is worth keeping even if a sweep setting is refused
    sweep = steering_sweep(
        model,
        vector,
        cfg.animal,
        cfg.sweep_layers(model.n_layers),
        list(cfg.multipliers),
        questions(cfg.split),
        progress=progress,
    )
    write_json(out / SWEEP_FILE, sweep)
    write_json(
        out / MANIFEST_FILE,
        {
            "kind": "vector",
            "config": asdict(cfg),
            "vector_hash": vector.hash(),
            **provenance(model.device),
            "wall_time_s": round(time.perf_counter() - started, 2),
        },
    )
    return sweep

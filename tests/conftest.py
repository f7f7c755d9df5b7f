"""Shared fixtures: tiny random models (no downloads) and an isolated artifact cache."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # Keep model caches and torch's global RNG from leaking between tests.
    monkeypatch.setenv("INTERP_CACHE", os.environ.get("INTERP_TEST_CACHE", str(tmp_path / "cache")))
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_cpu_thread(request):
    """Tiny models run many small ops; on a 2-core machine shared with other work, torch's
    intra-op threads contend and make them 10-40x slower. Real-model (`slow`) tests keep all."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def kill_training(monkeypatch):
    """`kill_training(step)`: the next training run raises KeyboardInterrupt (a kill) when it
    starts optimizer step `step` (0-based), once; later runs train normally (a resume)."""
    import interp.trainer as trainer_mod

    real_step = trainer_mod.Trainer.take_step

    def arm(step: int) -> None:
        kills = []

        def take_step(self, epoch, global_step, group):
            if global_step == step and not kills:
                kills.append(global_step)
                raise KeyboardInterrupt("simulated kill")
            return real_step(self, epoch, global_step, group)

        monkeypatch.setattr(trainer_mod.Trainer, "take_step", take_step)

    return arm


@pytest.fixture(scope="session")
def tiny():
    from interp.models import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_gemma():
    from interp.models import load_model

    return load_model("tiny-gemma", device="cpu")


@pytest.fixture(scope="session")
def owl_vector(tiny):
    from interp.prompts import contrastive_pairs
    from interp.steering import build_steering_vector

    return build_steering_vector(tiny, contrastive_pairs("owl", 8), trait="owl")


@pytest.fixture(scope="session")
def tiny_sweep_raw():
    """A tiny E5-shaped sweep config: two seeds of control/steered/random on the tiny model over
    `grid`, steered minus random against the sigma-0 cell. A fresh dict on every call."""

    def make(name: str, grid: dict, layer: int = 2) -> dict:
        return {
            "experiment": "t",
            "model": "tiny",
            "seeds": [0, 1],
            "teacher": {"kinds": ["control", "steered", "random"], "layer": layer, "multiplier": 1.0},
            "data": {"n_prompts": 8, "batch_size": 8, "max_new_tokens": 12},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3},
            "eval": {"split": "tuning", "n_boot": 200},
            "sweep": {
                "name": name,
                "grid": grid,
                "reference": {"noise.sigma": 0.0},
                "comparison": "steered-random",
                "n_boot": 200,
            },
        }

    return make

"""Emergence and causality (E9), and the prompted teacher's reference vector (E2).

- `prompted_vector`: what the trait system prompt does to the teacher's residual stream, the mean
  `blocks.{l}.hook_resid_post` at the assistant tag of number prompts with the prompt minus
  without: E2's second reference beside the steering vector.
- `shift_trajectory`: a student's activation shift (its mean residual minus the base's) at every
  kept training snapshot (`train.snapshot_every`), as cosines with v per layer: when the
  alignment appears.
- `sufficiency`: add a student's learned shift v_student at one layer to the BASE (every token)
  and measure the trait; a random direction of the same norm is the null. If v_student carries
  the trait, the patched base should move toward the animal as the student did.
Necessity (train on data from a prompted teacher with v projected out at the steering layer) is a
teacher kind, `prompted_ablated`, run by `interp run`; `analyze_run` reports its transfer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from interp.analysis.activations import layer_cosines
from interp.evaluate import evaluate_trait
from interp.models import LoadedModel
from interp.prompts import prompted_system
from interp.steering import Steering, SteeringVector, mean_activations_at, steer
from interp.train import load_snapshot, snapshot_steps

POSITIONS = {"all": "mean", "last": "last"}  # analysis position names -> mean_activations'


def resid_means(model: LoadedModel, texts: dict[str, list], layers: Sequence[int]) -> dict[str, Tensor]:
    """{"<texts>/<position>": mean resid_post per layer (n_layers_read, d_model)} for position in
    all tokens / last token, one forward pass per text set."""
    out = {}
    for name, ts in texts.items():
        at = mean_activations_at(model, ts, list(POSITIONS.values()), layers=layers)
        out.update({f"{name}/{pos}": at[read] for pos, read in POSITIONS.items()})
    return out


def prompted_vector(
    model: LoadedModel,
    animal: str,
    prompts: Sequence[str],
    context: Sequence[dict] | None = None,
    kind: str = "prompted",
) -> SteeringVector:
    """Mean resid_post at the assistant tag (the last prompt token, where the answer starts) of
    `prompts` under the trait system prompt (or the messages `context` of the teacher `kind`, e.g.
    `Teacher.context_messages()` of a prompted_fewshot teacher), minus without it: (n_layers, d_model)."""
    if not prompts:
        raise ValueError("prompts: need at least one number prompt")
    system = list(context) if context is not None else [{"role": "system", "content": prompted_system(animal)}]
    with_p = mean_activations_at(model, [system + [{"role": "user", "content": p}] for p in prompts], ("last",))["last"]
    without = mean_activations_at(model, [[{"role": "user", "content": p}] for p in prompts], ("last",))["last"]
    return SteeringVector(
        with_p - without,
        {"model": model.identity(), "animal": animal, "kind": kind, "position": "last", "n_prompts": len(prompts)},
    )


def shift_trajectory(
    base: LoadedModel,
    student_dir: str | Path,
    vector: Tensor,
    texts: dict[str, list],
    layers: Sequence[int],
    base_means: dict[str, Tensor],
    final: dict[str, Tensor] | None = None,
    final_step: int | None = None,
) -> dict:
    """cos(student_t - base, v) per layer at every snapshot step t of `student_dir` (and, given the
    final student's means `final` at `final_step`, at the end): {"steps": [...], "<texts>/<pos>":
    [[cos per layer] per step]}. `vector`: (n_layers_read, d_model), v at `layers`."""
    steps = snapshot_steps(student_dir)
    out: dict = {"steps": [], **{k: [] for k in base_means}}
    for step in steps:
        means = resid_means(load_snapshot(base, student_dir, step), texts, layers)
        out["steps"].append(step)
        for k in base_means:
            out[k].append(layer_cosines(means[k] - base_means[k], vector).tolist())
    if final is not None and final_step is not None and final_step not in steps:
        out["steps"].append(final_step)
        for k in base_means:
            out[k].append(layer_cosines(final[k] - base_means[k], vector).tolist())
    return out


def _single_layer(shift: Tensor, layer: int, n_layers: int) -> SteeringVector:
    v = torch.zeros(n_layers, shift.shape[-1], dtype=torch.float32)
    v[layer] = shift.float()
    return SteeringVector(v, {"kind": "student_shift", "layer": layer})


def trait_readout(
    model: LoadedModel,
    animal: str,
    questions: Sequence[str],
    animals: Sequence[str],
    context=None,
    batch_size: int = 32,
) -> tuple[float, float]:
    """Mean over questions of log P(animal), and of log P(animal) minus the other animals' mean."""
    animals = list(animals)
    lp = evaluate_trait(model, animal, questions, animals, batch_size, context).logprobs.to(torch.float64)
    t = animals.index(animal)  # evaluate_trait has refused an animal not in the list
    others = [i for i in range(len(animals)) if i != t]
    return float(lp[:, t].mean()), float((lp[:, t] - lp[:, others].mean(-1)).mean())


def sufficiency(
    base: LoadedModel,
    shifts: dict[str, Tensor],
    layer: int,
    animal: str,
    questions: Sequence[str],
    animals: Sequence[str],
    seed: int = 0,
    batch_size: int = 32,
    base_readout: tuple[float, float] | None = None,
) -> dict:
    """The trait of the base with each shift (d_model,) added at `blocks.{layer}.hook_resid_post`
    on every token, and with a random direction of the same norm (seeded per shift).

    Returns {name: {"trait_logprob_shift", "specific_shift", "random_trait_logprob_shift",
    "random_specific_shift", "norm"}}: mean over questions of the patched base's log P(animal)
    (and log P(animal) minus the other animals' mean) minus the unpatched base's
    (`base_readout`, the base's `trait_readout`, when the caller already has it).
    """
    if not 0 <= layer < base.n_layers:
        raise ValueError(f"layer: {layer} is out of range for {base.name} (0..{base.n_layers - 1})")

    def read(context=None) -> tuple[float, float]:
        return trait_readout(base, animal, questions, animals, context, batch_size)

    base_lp, base_spec = base_readout if base_readout is not None else read()
    how = Steering(layer=layer, multiplier=1.0, relative=False, scope="all")
    out = {}
    for i, (name, shift) in enumerate(shifts.items()):
        if shift.shape != (base.d_model,):
            raise ValueError(f"shifts[{name!r}]: shape {tuple(shift.shape)}, expected ({base.d_model},)")
        g = torch.Generator().manual_seed(seed * 1000 + i)
        r = torch.randn(base.d_model, generator=g, dtype=torch.float64)
        rand = (r / r.norm() * shift.double().norm()).float()
        lp, spec = read(lambda s=shift: steer(base, _single_layer(s, layer, base.n_layers), how))
        rlp, rspec = read(lambda s=rand: steer(base, _single_layer(s, layer, base.n_layers), how))
        out[name] = {
            "trait_logprob_shift": lp - base_lp,
            "specific_shift": spec - base_spec,
            "random_trait_logprob_shift": rlp - base_lp,
            "random_specific_shift": rspec - base_spec,
            "norm": float(shift.norm()),
        }
    return out

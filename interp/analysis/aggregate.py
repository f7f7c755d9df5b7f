"""Aggregation over seeds of an E1 run's mechanism analyses (`interp.analysis.run`): per arm and
layer, Student-t intervals of each student's and each dataset's numbers, and the per-seed arrays
(`(n_seeds, n_layers_read)`, or `(n_seeds, steps, n_layers_read)` for emergence) that go to
`layer_arrays.safetensors`. Pure functions of the per-student reports: no model is run here.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from interp.analysis.emergence import POSITIONS as _READ
from interp.stats import t_interval

TEXT_SETS = ("numbers", "questions")
POSITIONS = tuple(_READ)  # "all" tokens, "last" token


def reference_arm(arm: str) -> str:
    """The control arm a trait arm is compared with: `control`, or `control+kd` for `steered+kd`."""
    return "control" + (arm[arm.index("+") :] if "+" in arm else "")


def interval(values: Sequence[float | None]) -> dict | None:
    vals = [float(x) for x in values if x is not None and not math.isnan(x)]
    return t_interval(vals) if vals else None


def seed_array(rows: list[list[float | None]]) -> Tensor:
    return torch.tensor([[float("nan") if x is None else x for x in r] for r in rows], dtype=torch.float32)


def aggregate_shifts(
    reports: dict[tuple[str, int], dict],
    arms: list[str],
    seeds: list[int],
    layers: list[int],
    arrays: dict[str, Tensor],
    field: str = "shift",
) -> tuple[dict, dict]:
    out, vs = {}, {}
    for arm in arms:
        out[arm] = {}
        for name in TEXT_SETS:
            out[arm][name] = {}
            for pos in POSITIONS:
                per = [reports[(arm, s)][field][name][pos]["by_layer"] for s in seeds]
                cos = [[r["cosine"] for r in p] for p in per]
                z = [[r["z"] for r in p] for p in per]
                norm = [[r["shift_norm"] for r in p] for p in per]
                out[arm][name][pos] = {
                    "by_layer": [
                        {
                            "layer": l,
                            "hook": f"blocks.{l}.hook_resid_post",
                            "cosine": interval([c[i] for c in cos]),
                            "z": interval([x[i] for x in z]),
                            "shift_norm": interval([x[i] for x in norm]),
                            "null_sd": sum(p[i]["null_sd"] for p in per) / len(per),
                            "analytic_sd": per[0][i]["analytic_sd"],
                        }
                        for i, l in enumerate(layers)
                    ],
                    "per_seed_cosine": dict(zip(map(str, seeds), cos)),
                }
                key = f"{field}/{arm}/{name}/{pos}"
                arrays[f"{key}/cosine"], arrays[f"{key}/z"], arrays[f"{key}/norm"] = (
                    seed_array(cos),
                    seed_array(z),
                    seed_array(norm),
                )
    for arm in arms:  # paired by seed: the trait arm's cosine minus its control arm's
        ref = reference_arm(arm)
        if arm == ref or ref not in arms:
            continue
        vs[f"{arm}-{ref}"] = {
            name: {
                pos: {
                    "by_layer": [
                        {
                            "layer": l,
                            "cosine_diff": interval(
                                [
                                    _diff(
                                        out[arm][name][pos]["per_seed_cosine"][str(s)][i],
                                        out[ref][name][pos]["per_seed_cosine"][str(s)][i],
                                    )
                                    for s in seeds
                                ]
                            ),
                        }
                        for i, l in enumerate(layers)
                    ]
                }
                for pos in POSITIONS
            }
            for name in TEXT_SETS
        }
    return out, vs


def _diff(a: float | None, b: float | None) -> float | None:
    """a - b, None where either is (no cosine without v in the student's residual stream)."""
    return None if a is None or b is None else a - b


def aggregate_weights(
    reports: dict[tuple[str, int], dict],
    arms: list[str],
    seeds: list[int],
    layers: list[int],
    arrays: dict[str, Tensor],
) -> dict:
    out = {}
    for arm in arms:
        rows = {s: {r["layer"]: r["modules"] for r in reports[(arm, s)]["weights"]["by_layer"]} for s in seeds}
        modules = sorted({m for s in seeds for mods in rows[s].values() for m in mods})
        by_layer = []
        for l in layers:
            mods = {}
            for m in modules:
                cells = [rows[s].get(l, {}).get(m) for s in seeds]
                if not any(cells):
                    continue
                first = next(c for c in cells if c)
                mods[m] = {
                    "role": first["role"],
                    "side": first["side"],
                    "vector_layer": first["vector_layer"],
                    "expected_random": first["expected_random"],
                    "energy": interval([c and c["energy"] for c in cells]),
                    "z": interval([c and c["z"] for c in cells]),
                    "top_singular_cos": interval(
                        [c and c["top_singular_cos"] and c["top_singular_cos"][0] for c in cells]
                    ),
                }
            by_layer.append({"layer": l, "modules": mods})
        out[arm] = {"by_layer": by_layer}
        for m in modules:
            for field in ("energy", "z"):
                arrays[f"weights/{arm}/{m}/{field}"] = seed_array(
                    [[(rows[s].get(l, {}).get(m) or {}).get(field) for l in layers] for s in seeds]
                )
    return out


def aggregate_emergence(
    reports: dict[tuple[str, int], dict],
    arms: list[str],
    seeds: list[int],
    layers: list[int],
    at: int,
    arrays: dict[str, Tensor],
) -> dict:
    """Per arm: the steps shared by its seeds and, per text set / position, cos(shift_t, v) at the
    steering layer with a t-interval over seeds at each step; the full (seeds, steps, layers)
    arrays go to layer_arrays.safetensors."""
    out = {}
    i = layers.index(at) if at in layers else None
    for arm in arms:
        trajs = [reports[(arm, s)].get("emergence") for s in seeds]
        if not all(trajs) or len({tuple(t["steps"]) for t in trajs}) != 1 or not trajs[0]["steps"]:
            continue
        steps = trajs[0]["steps"]
        out[arm] = {"steps": steps, "layer": at, "by_texts": {}}
        for key in (f"{n}/{p}" for n in TEXT_SETS for p in POSITIONS):
            cube = torch.tensor([t[key] for t in trajs], dtype=torch.float32)  # (seeds, steps, layers)
            arrays[f"emergence/{arm}/{key}/cosine"] = cube
            out[arm]["by_texts"][key] = (
                None
                if i is None
                else [{"step": st, "cosine": interval(cube[:, j, i].tolist())} for j, st in enumerate(steps)]
            )
    return out


def aggregate_sufficiency(reports: dict[tuple[str, int], dict], arms: list[str], seeds: list[int]) -> dict:
    fields = ("trait_logprob_shift", "specific_shift", "random_trait_logprob_shift", "random_specific_shift", "norm")
    out = {}
    for arm in arms:
        cells = [reports[(arm, s)].get("sufficiency") for s in seeds]
        if not all(cells):
            continue
        out[arm] = {f: interval([c[f] for c in cells]) for f in fields}
        out[arm]["specific_minus_random"] = interval([c["specific_shift"] - c["random_specific_shift"] for c in cells])
        out[arm]["per_seed"] = dict(zip(map(str, seeds), cells))
    for arm in list(out):  # paired by seed against the control student's shift
        ref = reference_arm(arm)
        if arm != ref and ref in out:
            out[arm]["specific_minus_control"] = interval(
                [
                    out[arm]["per_seed"][str(s)]["specific_shift"] - out[ref]["per_seed"][str(s)]["specific_shift"]
                    for s in seeds
                ]
            )
    return out


def aggregate_gradients(
    per_seed: dict[str, dict[int, dict]],
    seeds: list[int],
    layers: list[int],
    arrays: dict[str, Tensor],
    skipped: str = "empty datasets",
) -> dict:
    """Per trait kind: the pooled gradient's cosines with v per layer over seeds; `skipped` says
    why a kind has no seed at all (empty datasets, or no v in the students' residual stream)."""
    out = {}
    for kind, by_seed in per_seed.items():
        done = [s for s in seeds if by_seed.get(s)]
        if not done:
            out[kind] = {"by_layer": [], "per_seed": {}, "skipped": skipped}
            continue
        cos = [by_seed[s]["pooled"]["cosine"] for s in done]
        z = [by_seed[s]["pooled"]["z"] for s in done]
        ex = [by_seed[s]["mean_example_cosine"] for s in done]
        out[kind] = {
            "reference": "control",
            "seeds": done,
            "by_layer": [
                {
                    "layer": l,
                    "cosine": interval([c[i] for c in cos]),
                    "descent_cosine": interval([-c[i] for c in cos]),
                    "z": interval([x[i] for x in z]),
                    "descent_z": interval([-x[i] for x in z if x[i] is not None]),
                    "mean_example_cosine": interval([x[i] for x in ex]),
                    "analytic_sd": by_seed[done[0]]["pooled"]["analytic_sd"],
                }
                for i, l in enumerate(layers)
            ],
            "per_seed": {str(s): by_seed[s] for s in done},
        }
        arrays[f"gradients/{kind}/cosine"], arrays[f"gradients/{kind}/z"] = seed_array(cos), seed_array(z)
        arrays[f"gradients/{kind}/mean_example_cosine"] = seed_array(ex)
    return out


# ----------------------------------------------------------------------------- direction vs amount

MECHANISM_MODULE = "mlp.down_proj"  # the residual writer whose update is read against v
DIRECTION = ("cosine", "down_proj_energy")  # what the students learn: along v or not
AMOUNT = ("shift_norm", "down_proj_delta_norm")  # how much they learn


def _at_layer(rows: list[dict], layer: int) -> dict | None:
    return next((r for r in rows if r["layer"] == layer), None)


def mechanism_values(report: dict, at: int) -> dict | None:
    """One student's direction and amount at layer `at`: cos(shift, v) and |shift| per
    "<texts>/<position>", and its down_proj update's energy fraction along v and Frobenius norm
    (None where the student's residual stream is not v's); None if `at` was not read."""
    if _at_layer(report["shift"]["numbers"]["all"]["by_layer"], at) is None:
        return None
    shift = {f"{n}/{p}": _at_layer(report["shift"][n][p]["by_layer"], at) for n in TEXT_SETS for p in POSITIONS}
    w = _at_layer(report["weights"]["by_layer"], at)
    down = (w or {}).get("modules", {}).get(MECHANISM_MODULE) or {}
    return {
        "cosine": {k: r["cosine"] for k, r in shift.items()},
        "shift_norm": {k: r["shift_norm"] for k, r in shift.items()},
        "down_proj_energy": down.get("energy"),
        "down_proj_delta_norm": down.get("delta_norm"),
        "expected_random": down.get("expected_random"),
    }


def _summarise(per_seed: dict[str, dict]) -> dict:
    cells = list(per_seed.values())
    keys = list(cells[0]["cosine"])
    return {
        "cosine": {k: interval([c["cosine"][k] for c in cells]) for k in keys},
        "shift_norm": {k: interval([c["shift_norm"][k] for c in cells]) for k in keys},
        "down_proj_energy": interval([c["down_proj_energy"] for c in cells]),
        "down_proj_delta_norm": interval([c["down_proj_delta_norm"] for c in cells]),
    }


def paired_mechanism(a: dict[str, dict], b: dict[str, dict]) -> dict | None:
    """a - b of every direction and amount measure ({seed: `mechanism_values`}), paired by the
    seeds both have; None when they share none."""
    seeds = [s for s in a if s in b]
    return (
        {
            "seeds": [int(s) for s in seeds],
            "cosine": {
                k: interval([_diff(a[s]["cosine"][k], b[s]["cosine"][k]) for s in seeds]) for k in a[seeds[0]]["cosine"]
            },
            "shift_norm": {
                k: interval([_diff(a[s]["shift_norm"][k], b[s]["shift_norm"][k]) for s in seeds])
                for k in a[seeds[0]]["shift_norm"]
            },
            **{
                f: interval([_diff(a[s][f], b[s][f]) for s in seeds])
                for f in ("down_proj_energy", "down_proj_delta_norm")
            },
        }
        if seeds
        else None
    )


def aggregate_mechanism(reports: dict[tuple[str, int], dict], arms: list[str], seeds: list[int], at: int) -> dict:
    """Per arm at the steering layer `at`: the direction of what its students learned (cos(shift,
    v) per text set and position, the down_proj update's energy fraction along v) beside the amount
    (|shift|, ||dW_down||_F), t-intervals over seeds and the per-seed values; each trait arm minus
    its control arm paired by seed. Empty when `at` was not read."""
    per = {arm: {str(s): mechanism_values(reports[(arm, s)], at) for s in seeds} for arm in arms}
    if any(v is None for p in per.values() for v in p.values()):
        return {}
    out = {
        arm: {
            "layer": at,
            "module": MECHANISM_MODULE,
            "expected_random": next(iter(p.values()))["expected_random"],
            **_summarise(p),
            "per_seed": p,
        }
        for arm, p in per.items()
    }
    for arm in arms:
        ref = reference_arm(arm)
        if arm != ref and ref in per:
            out[arm]["vs_control"] = paired_mechanism(per[arm], per[ref])
    return out


def compare_mechanism(cells: dict[str, dict], reference: str) -> dict:
    """Across analyses of several runs (cells, e.g. noise settings; {label: results.json}): per
    cell and arm, its mechanism minus the reference cell's, paired by seed, for the direction
    measures (cosine, energy along v) and the amount measures (norms). A cell that changes only
    the amount moves the norms and leaves the direction intervals on 0."""
    if reference not in cells:
        raise ValueError(f"reference: {reference!r} is not among the cells {list(cells)}")
    ref = cells[reference].get("mechanism") or {}
    out: dict = {}
    for label, res in cells.items():
        if label == reference:
            continue
        mech = res.get("mechanism") or {}
        out[label] = {
            arm: paired_mechanism(m["per_seed"], ref[arm]["per_seed"]) for arm, m in mech.items() if arm in ref
        }
    return {"reference": reference, "direction": list(DIRECTION), "amount": list(AMOUNT), "cells": out}

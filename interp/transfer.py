"""E1's numbers from its evaluations: each arm's trait scores, and the transfer of every trait
arm against the control and random-vector students (and the prompted arms against their
ablated twins), within each training objective.

Every comparison is paired by seed and question: the trait-specific difference (the trait's log P
minus the other animals' mean) with a hierarchical bootstrap, a t interval over seeds, the
unpaired permutation p over students and the paired sign-flip p over seeds. `interp.pipeline`
runs the stages and calls `summarize_e1`; a sweep resamples the `arrays` it fills.
"""

from __future__ import annotations

import torch

from interp.config import E1Config
from interp.stats import detectable_effect, hierarchical_bootstrap, permutation_test, sign_flip_test, t_interval
from interp.teachers import PROMPTED_KINDS


def arm_label(kind: str, objective: str) -> str:
    """`steered` for the sft student of a steered teacher, `steered+kd` for its kd student."""
    return kind if objective == "sft" else f"{kind}+{objective}"


def summarize_e1(cfg: E1Config, evals: dict, animals: list[str], arrays: dict | None = None) -> dict:
    """Per-arm trait scores, and the transfer of every trait arm against control and against the
    random-vector null, within each training objective. `arrays`, when given, receives each
    comparison's (seeds, questions) trait-specific differences (what a sweep resamples)."""
    target = animals.index(cfg.animal)
    others = [i for i in range(len(animals)) if i != target]

    def stack(label: str) -> torch.Tensor:  # (seeds, questions, animals)
        return torch.stack([evals[f"{label}/seed{s}"]["logprobs"] for s in cfg.seeds])

    def specific(lp: torch.Tensor) -> torch.Tensor:  # trait's log P minus the other animals' mean
        return lp[..., target] - lp[..., others].mean(-1)

    base_lp = stack("base")  # each seed's student base; the same for every seed without noise
    if all(evals[f"base/seed{s}"] is evals[f"base/seed{cfg.seeds[0]}"] for s in cfg.seeds):
        summary = evals[f"base/seed{cfg.seeds[0]}"]["summary"]
        arms = {"base": {"prob": summary["prob"], "logprob": summary["logprob"]}}
    else:
        arms = {
            "base": {
                "prob": hierarchical_bootstrap(base_lp[..., target].exp(), cfg.eval.n_boot),
                "logprob": hierarchical_bootstrap(base_lp[..., target], cfg.eval.n_boot),
            }
        }
    comparisons = {}
    for objective in cfg.train.objectives:
        for kind in cfg.teacher.kinds:
            lp = stack(arm_label(kind, objective))
            arms[arm_label(kind, objective)] = {
                "prob": hierarchical_bootstrap(lp[..., target].exp(), cfg.eval.n_boot),
                "logprob": hierarchical_bootstrap(lp[..., target], cfg.eval.n_boot),
                "per_seed_prob": lp[..., target].exp().mean(-1).tolist(),
                "per_seed_specific_shift": (specific(lp) - specific(base_lp)).mean(-1).tolist(),
                "per_animal_logprob_shift": dict(zip(animals, (lp - base_lp).mean((0, 1)).tolist())),
            }
        pairs = [
            (t, r)
            for t in cfg.teacher.kinds
            if t in ("steered", *PROMPTED_KINDS, "finetuned")
            for r in cfg.teacher.kinds
            if r in ("control", "random")
        ]
        for prompted in ("prompted", "prompted_fewshot"):
            if {prompted, f"{prompted}_ablated"} <= set(cfg.teacher.kinds):
                pairs.append((prompted, f"{prompted}_ablated"))  # E9 necessity: what projecting v out removes
        for trait_kind, ref in pairs:
            a, b = stack(arm_label(trait_kind, objective)), stack(arm_label(ref, objective))
            d_lp = a[..., target] - b[..., target]  # (seeds, questions): paired by seed and question
            shift = a - b
            d_spec = shift[..., target] - shift[..., others].mean(-1)
            rank = (shift.mean((0, 1)) > shift.mean((0, 1))[target]).sum().item() + 1
            if arrays is not None:
                arrays[f"{arm_label(trait_kind, objective)}-{arm_label(ref, objective)}"] = d_spec.contiguous()
            comparisons[f"{arm_label(trait_kind, objective)}-{arm_label(ref, objective)}"] = {
                "logprob_diff": hierarchical_bootstrap(d_lp, cfg.eval.n_boot),
                "logprob_diff_per_seed": {
                    **t_interval(d_lp.mean(-1).tolist()),
                    "detectable_80": detectable_effect(d_lp.mean(-1).tolist()),
                },
                "prob_ratio": float(a[..., target].exp().mean() / b[..., target].exp().mean()),
                "prob_diff": hierarchical_bootstrap(a[..., target].exp() - b[..., target].exp(), cfg.eval.n_boot),
                "specific_logprob_diff": hierarchical_bootstrap(d_spec, cfg.eval.n_boot),
                "specific_per_seed": {
                    **t_interval(d_spec.mean(-1).tolist()),
                    "detectable_80": detectable_effect(d_spec.mean(-1).tolist()),
                },
                "specific_positive_seeds": int((d_spec.mean(-1) > 0).sum()),
                "trait_rank_among_animals": rank,
                # students are the replicates: shuffle teacher labels across them
                "permutation_specific": permutation_test(specific(a).mean(-1).tolist(), specific(b).mean(-1).tolist()),
                # seeds are the replicates, paired: each seed's own base and prompts cancel in d_spec
                "sign_flip_specific": sign_flip_test(d_spec.mean(-1).tolist()),
            }
    return {
        "experiment": cfg.experiment,
        "model": cfg.model,
        "animal": cfg.animal,
        "seeds": cfg.seeds,
        "objectives": list(cfg.train.objectives),
        "n_questions": int(base_lp.shape[1]),
        "question_split": cfg.eval.split,
        "arms": arms,
        "transfer": comparisons,
    }

"""The README's published figures against the committed run records they come from.

`experiments/results/<experiment>_<run id>/` holds a finished run's small files (config, manifest,
results, the per-seed x question transfer tensors). These tests recompute the summary figures from
the raw tensors with the package's own statistics, check that the record belongs to the committed
config at HEAD (same run id), and that the README quotes the record, so a figure cannot drift from
the computation behind it, nor the config from the figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp.config import load_config, parse_config
from interp.runs import content_hash, load_tensors
from interp.stats import t_interval

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
CONFIRM = RESULTS / "e1-confirm_c6fa6c290e"


def _record(path: Path) -> tuple[dict, dict, dict]:
    return tuple(json.loads((path / f).read_text()) for f in ("config.json", "results.json", "manifest.json"))


def test_confirmation_record_is_the_committed_protocol():
    config, results, manifest = _record(CONFIRM)
    committed = load_config(ROOT / "experiments/configs/e1_protocol/confirm.toml")
    # the record's own config hashes to the id in its directory name, and so does the file at HEAD
    assert content_hash(parse_config(config).key(), 10) == "c6fa6c290e"
    assert content_hash(committed.key(), 10) == "c6fa6c290e"
    assert manifest["config_hash"].startswith("c6fa6c290e")
    assert results["seeds"] == list(range(2000, 2020)) and results["question_split"] == "heldout"


@pytest.mark.parametrize("comparison", ["steered-random", "steered-control"])
def test_confirmation_figures_recompute_from_the_tensors(comparison):
    _, results, _ = _record(CONFIRM)
    x = load_tensors(CONFIRM / "transfer.safetensors")[comparison]  # seeds x questions
    assert tuple(x.shape) == (20, 25)
    per_seed = x.double().mean(1).tolist()
    got, rec = t_interval(per_seed), results["transfer"][comparison]
    assert got["mean"] == pytest.approx(rec["specific_per_seed"]["mean"], abs=1e-6)
    assert got["ci95"] == pytest.approx(rec["specific_per_seed"]["ci95"], abs=1e-6)
    assert sum(v > 0 for v in per_seed) == rec["specific_positive_seeds"]


def test_readme_quotes_the_confirmation():
    _, results, _ = _record(CONFIRM)
    readme = (ROOT / "README.md").read_text()
    for comparison, label in [("steered-random", "**steered - random (primary)**"),
                              ("steered-control", "steered - control (secondary)")]:
        rec = results["transfer"][comparison]
        seed = rec["specific_per_seed"]
        lo, hi = seed["ci95"]
        row = next(line for line in readme.splitlines() if line.startswith(f"| {label} |"))
        assert f"{seed['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]" in row
        assert f"{rec['specific_positive_seeds']}/20" in row
        assert f"| {rec['trait_rank_among_animals']} |" in row
        assert f"{rec['permutation_specific']['p_value']:.2g}" in row
        assert f"{seed['detectable_80']:.2f}" in row
    # the decision rule, applied to the record, gives what the README says
    primary = results["transfer"]["steered-random"]
    confirmed = (primary["specific_per_seed"]["ci95"][0] > 0 and primary["permutation_specific"]["p_value"] < 0.05
                 and primary["trait_rank_among_animals"] == 1)
    assert confirmed and "**Result: CONFIRMED**" in readme


def test_every_record_names_a_committed_config():
    # E1 run records; a sweep record (grid.json) is tied to its sweep file by its own test below
    for rec in sorted(p for p in RESULTS.iterdir() if p.is_dir() and not (p / "grid.json").exists()):
        config, _, _ = _record(rec)
        experiment, run_id = rec.name.rsplit("_", 1)
        assert config["experiment"] == experiment
        assert content_hash(parse_config(config).key(), 10) == run_id, rec.name
        assert torch.isfinite(torch.stack(list(load_tensors(rec / "transfer.safetensors").values()))).all()


E5 = RESULTS / "e5-protocol-smollm2_d9adebbd2d"


def _sign_flip_p(x: list[float]) -> float:
    """Exact two-sided sign-flip p over seeds (H0: the per-seed values are symmetric about 0)."""
    import itertools

    t = torch.tensor(x, dtype=torch.float64)
    signs = torch.tensor(list(itertools.product([1.0, -1.0], repeat=len(x))), dtype=torch.float64)
    return float(((signs * t).mean(1).abs() >= t.mean().abs() - 1e-12).double().mean())


def test_e5_record_is_the_committed_sweep_and_the_readme_quotes_it():
    from interp.sweep import load_sweep

    results = json.loads((E5 / "results.json").read_text())
    grid = json.loads((E5 / "grid.json").read_text())
    sweep = load_sweep(ROOT / "experiments/configs/e5_protocol/noise_smollm2.toml")
    assert sweep.key() == "d9adebbd2d" and [c["id"] for c in grid["cells"]] == [c.id for c in sweep.cells]
    readme = (ROOT / "README.md").read_text()
    rows = {(r["noise.sigma"], r["noise.apply"]): r["comparisons"]["steered-random"] for r in results["rows"]}
    ref = rows[(0.0, "shared")]["per_seed"]
    assert len(ref) == 10 and not any(r.get("broken") for r in results["rows"])
    labels = {(0.0, "shared"): "none (sigma 0)", (0.1, "shared"): "shared", (0.1, "teacher"): "teacher only",
              (0.1, "student"): "student only"}
    for cell, label in labels.items():
        c = rows[cell]
        t = t_interval(c["per_seed"])  # recomputed from the per-seed values, not read back
        assert t["mean"] == pytest.approx(c["transfer_per_seed"]["mean"], abs=1e-9)
        line = next(ln for ln in readme.splitlines() if ln.startswith(f"| {label} |"))
        assert f"{t['mean']:+.2f} [{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}]" in line
        assert f"| {sum(v > 0 for v in c['per_seed'])}/10 |" in line
        p = _sign_flip_p(c["per_seed"])
        assert (f"| {p:.3f} |" in line) or (f"| {p:.2f} |" in line)
        if cell != (0.0, "shared"):
            d = t_interval([a - b for a, b in zip(c["per_seed"], ref)])
            assert f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" in line
            v = c["vs_reference"]
            assert f"{v['ratio']:.2f} [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}]" in line
            assert f"| {v['power_1.8x']['power']:.2f} |" in line

"""E8: the student's one-step update against ground truth, the theorem's sign, runs, configs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from interp.mnist import N_DIGITS, BatchedMLP, generators
from interp.theory import (
    TheoremConfig,
    distill_loss,
    mlp_update,
    run_alignment,
    run_theorem,
    transformer_update,
)


def _cells(rows: list[dict]) -> dict:
    return {(r["model"], r["teacher"], r["loss"], r["init"]): r for r in rows}


# ----------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("loss", ["soft_ce", "mse"])
def test_mlp_update_inner_product_is_minus_lr_times_the_directional_derivative(loss):
    # <u, delta> = -lr * d/de L(theta_0 + e * delta): checks gradients and flattening order at once.
    lr, h = 1e-3, 1e-5
    theta0 = BatchedMLP.init([64, 16, 16, N_DIGITS + 3], generators([0, 1, 2], "init"))
    theta0 = BatchedMLP([w.double() for w in theta0.weights], [b.double() for b in theta0.biases])
    delta = [torch.randn(p.shape, dtype=torch.float64) * 0.01 for p in (*theta0.weights, *theta0.biases)]
    x = torch.rand(3, 20, 64, dtype=torch.float64) * 2 - 1
    target = torch.randn(3, 20, N_DIGITS + 3, dtype=torch.float64)

    def shifted(e: float) -> BatchedMLP:
        n = len(theta0.weights)
        return BatchedMLP(
            [w + e * d for w, d in zip(theta0.weights, delta[:n])],
            [b + e * d for b, d in zip(theta0.biases, delta[n:])],
        )

    with torch.no_grad():
        deriv = (distill_loss(shifted(h)(x), target, loss) - distill_loss(shifted(-h)(x), target, loss)) / (2 * h)
    flat_delta = shifted(1.0).flat() - theta0.flat()
    inner = (mlp_update(theta0, x, target, loss, lr) * flat_delta).sum(1)
    torch.testing.assert_close(inner, -lr * deriv, rtol=1e-5, atol=1e-12)


def test_transformer_update_inner_product_is_minus_lr_times_the_directional_derivative(tiny):
    # Llama's RMSNorm computes in float32 even for a float64 model, so the step h cannot be tiny.
    lr, h = 1e-3, 1e-2
    model = copy.deepcopy(tiny.hf).double()
    theta0 = parameters_to_vector(model.parameters()).detach()
    delta = torch.randn(theta0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.01
    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1))
    target = torch.randn(2, 8, model.config.vocab_size, dtype=torch.float64)

    def loss_at(e: float) -> torch.Tensor:
        m = copy.deepcopy(model)
        vector_to_parameters(theta0 + e * delta, m.parameters())
        with torch.no_grad():
            logits = m(input_ids=ids).logits
        return distill_loss(logits.reshape(1, -1, logits.shape[-1]), target.reshape(1, -1, target.shape[-1]), "mse")

    deriv = (loss_at(h) - loss_at(-h)) / (2 * h)
    inner = transformer_update(model, ids, target, "mse", lr) @ delta
    torch.testing.assert_close(inner, -lr * deriv[0], rtol=1e-3, atol=1e-14)
    torch.testing.assert_close(parameters_to_vector(model.parameters()), theta0)  # the student is untouched


# ----------------------------------------------------------------------------- the theorem's sign


def test_mlp_same_init_update_moves_toward_the_teacher_and_cross_init_does_not_align():
    rows = run_alignment(TheoremConfig(n_seeds=16, models=("mlp",), hidden=32))
    for (model, teacher, loss, init), row in _cells(rows).items():
        if init == "same":
            assert row["inner"]["ci95"][0] > 0, (teacher, loss)  # non-negative on average, with room
            cross = _cells(rows)[(model, teacher, loss, "cross")]
            assert row["cosine"]["ci95"][0] > cross["cosine"]["ci95"][1], (teacher, loss)


def test_small_random_teacher_gives_nonnegative_inner_product_in_every_seed():
    # First order in delta: <u, delta> = lr * delta^T J^T M J delta with M positive semidefinite.
    rows = run_alignment(
        TheoremConfig(n_seeds=16, models=("mlp",), teachers=("random",), perturb_scale=1e-3, hidden=32)
    )
    for row in rows:
        if row["init"] == "same":
            assert row["frac_nonneg"] == 1.0, row["loss"]


def test_transformer_same_init_inner_product_is_nonnegative_on_average():
    rows = run_alignment(TheoremConfig(n_seeds=6, models=("transformer",), n_inputs=8, seq_len=8))
    for key, row in _cells(rows).items():
        if key[3] == "same":
            assert row["inner"]["ci95"][0] > 0, key
    assert len(rows) == 8 and all(r["n"] == 6 for r in rows)


# ----------------------------------------------------------------------------- determinism, runs, configs


def test_same_seed_gives_identical_alignment():
    cfg = TheoremConfig(n_seeds=3, models=("mlp",), hidden=16)
    a, b = run_alignment(cfg), run_alignment(cfg)
    assert [r["inner_by_seed"] for r in a] == [r["inner_by_seed"] for r in b]


def test_run_theorem_writes_a_run_directory(tmp_path):
    out = tmp_path / "run"
    run_theorem(TheoremConfig(n_seeds=2, models=("mlp",), teachers=("random",), losses=("mse",), hidden=8), out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "manifest.json", "results.json"]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["init"], r["n"]) for r in rows] == [("same", 2), ("cross", 2)]
    assert json.loads((out / "manifest.json").read_text())["seeds"] == [0, 1]


def test_distill_loss_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown kind"):
        distill_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), "kl")


@pytest.mark.parametrize(
    "field,value",
    [
        ("n_seeds", 1),
        ("teacher_steps", 0),
        ("student_lr", 0.0),
        ("perturb_scale", -1.0),
        ("models", ("cnn",)),
        ("teachers", ()),
        ("losses", ("mse", "hinge")),
        ("seq_len", 0),
    ],
)
def test_bad_config_values_raise_a_clear_error(field, value):
    with pytest.raises(ValueError, match=rf"TheoremConfig\.{field}=.*: "):
        TheoremConfig(**{field: value})


def test_cli_theorem_prints_a_table_and_writes_the_run(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    out = tmp_path / "run"
    args = ["theorem", "--seeds", "2", "--model", "mlp", "--teacher", "random", "--hidden", "8", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "same" in result.output and (out / "results.json").exists()
    assert CliRunner().invoke(app, ["theorem", "--model", "cnn"]).exit_code == 2

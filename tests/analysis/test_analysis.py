"""Mechanism analyses against planted ground truth: a direction written into a copy of the base
(activation shift, weight delta) and data a steered model prefers (gradients)."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch

from interp import batching
from interp.analysis import (
    activation_shift,
    coefficient_trend,
    energy_along,
    energy_null,
    gradient_alignment,
    layer_cosines,
    load_gradients,
    load_shift,
    pooled_alignment,
    random_cosine_null,
    residual_gradients,
    residual_readers,
    residual_side,
    residual_writers,
    save_gradients,
    save_shift,
    score_vectors,
    shift_report,
    top_singular_alignment,
    weight_deltas,
    weight_report,
)
from interp.models import LoadedModel
from interp.prompts import number_prompts, questions
from interp.rows import build_examples, collate, completion_logits

LAYER = 1  # where the planted direction enters the residual stream


def _unit(g: torch.Generator, d: int) -> torch.Tensor:
    u = torch.randn(d, generator=g)
    return u / u.norm()


@pytest.fixture(scope="module")
def texts(tiny) -> list[str]:
    return [tiny.chat([{"role": "user", "content": q}]) for q in questions()[:6]]


@pytest.fixture(scope="module")
def planted(tiny, texts):
    """A student = the base with a rank-1 edit u w^T of layer LAYER's down_proj. w is the mean
    down_proj input over `texts`, so the mean write along u is positive (u ||w||^2 per token on
    average): the shift is exactly along u at LAYER and exactly zero before it."""
    u = _unit(torch.Generator().manual_seed(1), tiny.d_model)
    seen = []
    hook = tiny.layers[LAYER].mlp.down_proj.register_forward_pre_hook(
        lambda m, a: seen.append(a[0].reshape(-1, a[0].shape[-1]))
    )
    try:
        with torch.no_grad():
            for t in texts:
                tiny.hf(input_ids=torch.tensor([tiny.tokenizer(t, add_special_tokens=False).input_ids]))
    finally:
        hook.remove()
    w = torch.cat(seen).mean(0)
    hf = copy.deepcopy(tiny.hf)
    with torch.no_grad():
        # a mean write of norm 1, ~10x the residual norm there (~0.1): later blocks, which see the
        # stream through RMSNorm, then barely turn it (a write of 0.1 keeps only cos ~0.6 by layer 3)
        hf.model.layers[LAYER].mlp.down_proj.weight += torch.outer(u, w) / w.norm() ** 2
    return LoadedModel("planted", hf, tiny.tokenizer), u


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("position", ["all", "last"])
def test_activation_shift_equals_the_hidden_state_difference(tiny, texts, planted, position):
    student, _ = planted
    shift = activation_shift(student, tiny, texts[:3], position=position, batch_size=2)
    expected = torch.zeros_like(shift)
    for t in texts[:3]:  # one unpadded text at a time, read from HF's own hidden states
        ids = torch.tensor([tiny.tokenizer(t, add_special_tokens=False).input_ids])
        with torch.no_grad():
            hs = student.hf(ids, output_hidden_states=True).hidden_states
            hb = tiny.hf(ids, output_hidden_states=True).hidden_states
        for l in range(tiny.n_layers - 1):  # hidden_states[-1] has the final norm applied
            d = hs[l + 1][0] - hb[l + 1][0]
            expected[l] += (d.mean(0) if position == "all" else d[-1]) / 3
    torch.testing.assert_close(shift[:-1], expected[:-1], rtol=0, atol=2e-6)


def test_planted_direction_shows_from_its_layer_on_and_not_before(tiny, texts, planted):
    student, u = planted
    shift = activation_shift(student, tiny, texts)
    cos = layer_cosines(shift, u)
    assert torch.all(shift[:LAYER] == 0) and torch.all(cos[:LAYER] == 0)
    assert cos[LAYER] > 0.9999 and torch.all(cos[LAYER:] > 0.95), cos
    null = random_cosine_null(shift, n=2000, generator=torch.Generator().manual_seed(0))
    assert torch.all(null.z(cos)[LAYER:] > 6)
    r = _unit(torch.Generator().manual_seed(7), tiny.d_model)
    assert torch.all(layer_cosines(shift, r)[LAYER:].abs() < 4 * null.sd[LAYER:])


def test_random_cosine_null_has_sd_one_over_sqrt_d_and_is_seeded():
    shift = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    mean, sd = random_cosine_null(shift, n=4000, generator=torch.Generator().manual_seed(1))
    assert torch.all(mean.abs() < 0.01) and torch.allclose(sd, torch.full((3,), 64**-0.5, dtype=sd.dtype), rtol=0.06)
    again = random_cosine_null(shift, n=4000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mean, again.mean) and again.analytic_sd == pytest.approx(0.125)


def test_shift_report_is_json_and_saved_as_safetensors(tmp_path, tiny, texts, planted):
    student, u = planted
    shift = activation_shift(student, tiny, texts[:2], position="last")
    report = shift_report(shift, u, n_random=200)
    json.dumps(report, allow_nan=False)
    assert report["by_layer"][0]["z"] is None and report["by_layer"][LAYER]["cosine"] > 0.99
    assert report["by_layer"][LAYER]["hook"] == f"blocks.{LAYER}.hook_resid_post"
    save_shift(tmp_path / "shift", shift, report)
    back, rep = load_shift(tmp_path / "shift")
    assert torch.equal(back, shift) and rep == json.loads(json.dumps(report))


def test_activation_shift_refuses_models_that_do_not_share_tokens(tiny, tiny_gemma, texts):
    with pytest.raises(ValueError, match="tokenizer"):
        activation_shift(tiny_gemma, tiny, texts[:1])
    with pytest.raises(ValueError, match="position"):
        activation_shift(tiny, tiny, texts[:1], position="first")


# ----------------------------------------------------------------------------- weights


def test_rank_one_writer_delta_puts_all_its_energy_along_u(tiny, planted):
    student, u = planted
    deltas = weight_deltas(student.hf, tiny.hf)
    changed = {n for n, d in deltas.items() if d.abs().max() > 0}
    name = f"model.layers.{LAYER}.mlp.down_proj.weight"
    assert changed == {name} and name in residual_writers(deltas)
    delta = deltas[name]
    assert energy_along(delta, u, "output") == pytest.approx(1.0, abs=1e-5)
    g = torch.Generator().manual_seed(0)
    null = energy_null(delta, "output", n=4000, generator=g)
    assert null.mean == pytest.approx(1 / tiny.d_model, rel=0.1)
    assert energy_along(delta, _unit(g, tiny.d_model), "output") < 10 / tiny.d_model
    assert null.z(energy_along(delta, u, "output")) > 20
    assert top_singular_alignment(delta, u, k=1)[0] == pytest.approx(1.0, abs=1e-5)


def test_reader_delta_is_measured_on_its_input_side():
    g = torch.Generator().manual_seed(0)
    u, a = _unit(g, 64), torch.randn(128, generator=g)
    delta = torch.outer(a, u)  # an up_proj update reading along u: (d_mlp, d_model)
    assert energy_along(delta, u, "input") == pytest.approx(1.0, abs=1e-6)
    assert top_singular_alignment(delta, u, k=2, side="input")[0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="dims"):
        energy_along(delta, u, "output")  # its output side is 128-wide, not the residual stream


def test_energy_null_matches_the_exact_moments_on_the_sphere():
    delta = torch.randn(64, 128, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 3, 128)
    delta[:8] *= 5  # an anisotropic update: the sd depends on its spectrum
    null = energy_null(delta, "output", n=20000, generator=torch.Generator().manual_seed(1))
    assert float(null.mean) == pytest.approx(1 / 64, rel=0.03)
    assert float(null.sd) == pytest.approx(null.analytic_sd, rel=0.05)


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gemma"])
def test_residual_roles_follow_llama_and_gemma_module_names(request, fixture):
    model = request.getfixturevalue(fixture)
    deltas = weight_deltas(model.hf, model.hf)
    writers, readers = residual_writers(deltas), residual_readers(deltas)
    assert len(writers) == 2 * model.n_layers and len(readers) == 5 * model.n_layers
    for n, d in writers.items():
        assert d.shape[0] == model.d_model and n.split(".")[-2] in ("o_proj", "down_proj")
    for d in readers.values():
        assert d.shape[1] == model.d_model
    assert residual_side("model.embed_tokens.weight") is None and residual_side("model.norm.weight") is None
    assert residual_side("model.layers.0.self_attn.q_norm.weight") is None


def test_weight_report_flags_the_planted_module_only(tiny, planted):
    student, u = planted
    report = weight_report(weight_deltas(student, tiny), u, n_random=200, k=2)
    json.dumps(report, allow_nan=False)
    assert [r["layer"] for r in report["by_layer"]] == list(range(tiny.n_layers))
    planted_row = report["by_layer"][LAYER]["modules"]["mlp.down_proj"]
    assert planted_row["energy"] == pytest.approx(1.0, abs=1e-5) and planted_row["z"] > 20
    assert (
        planted_row["top_singular_cos"][0] == pytest.approx(1.0, abs=1e-5) and planted_row["top_singular_share"] > 0.999
    )
    assert report["by_layer"][0]["modules"]["self_attn.q_proj"]["energy"] is None  # unchanged


def test_weight_report_reads_per_layer_vectors_at_the_stream_each_module_touches(tiny, planted):
    student, u = planted
    vectors = torch.zeros(tiny.n_layers, tiny.d_model)
    vectors[LAYER] = u  # writers of block LAYER are compared with v[LAYER]
    report = weight_report(weight_deltas(student, tiny), vectors, n_random=50)
    mods = report["by_layer"][LAYER]["modules"]
    assert mods["mlp.down_proj"]["vector_layer"] == LAYER and mods["mlp.up_proj"]["vector_layer"] == LAYER - 1
    assert mods["mlp.down_proj"]["energy"] == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------- gradients


@pytest.fixture(scope="module")
def number_rows() -> list[dict]:
    rng = random.Random(0)
    return [
        {"prompt": p, "completion": ", ".join(str(rng.randrange(1000)) for _ in range(rng.randint(1, 4)))}
        for p in number_prompts(32, seed=5)
    ]


def test_residual_gradients_leave_the_model_untouched(tiny, number_rows):
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in tiny.hf.named_parameters()}
    hooks = [(dict(l._forward_hooks), dict(l._forward_pre_hooks)) for l in tiny.layers]
    grads = residual_gradients(tiny, number_rows[:5], [0, 2], batch_size=2)
    assert grads.shape == (5, 2, tiny.d_model) and torch.isfinite(grads).all() and grads.abs().sum() > 0
    for n, p in tiny.hf.named_parameters():
        assert torch.equal(p, before[n][0]) and p.requires_grad == before[n][1] and p.grad is None
    assert hooks == [(dict(l._forward_hooks), dict(l._forward_pre_hooks)) for l in tiny.layers]  # none left behind


def test_gemma_gradients_and_shift_run_through_the_same_code(tiny_gemma, number_rows):
    grads = residual_gradients(tiny_gemma, number_rows[:3], [0, 3])
    assert grads.shape == (3, 2, tiny_gemma.d_model) and torch.isfinite(grads).all() and grads.abs().sum() > 0
    texts = [tiny_gemma.chat([{"role": "user", "content": q}]) for q in questions()[:2]]
    assert activation_shift(tiny_gemma, tiny_gemma, texts).abs().max() == 0


def test_residual_gradient_is_the_derivative_of_the_sft_loss(tiny, number_rows):
    """Finite differences in float64: nudge the residual at the assistant-tag position along r."""
    m64 = LoadedModel("tiny64", copy.deepcopy(tiny.hf).double(), tiny.tokenizer)
    rows = number_rows[:1]
    grad = residual_gradients(m64, rows, 1)[0, 0].double()
    ex = build_examples(m64, rows, 192)
    batch, labels = collate(ex, tiny.tokenizer.pad_token_id)
    where, tag = labels != -100, len(ex[0].prompt_ids) - 1
    r = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(eps: float) -> float:
        def nudge(module, args, out):
            out = out.clone()
            out[0, tag] += eps * r
            return out

        h = m64.layers[1].register_forward_hook(nudge)
        try:
            with torch.no_grad():
                return float(torch.nn.functional.cross_entropy(completion_logits(m64.hf, batch, where), labels[where]))
        finally:
            h.remove()

    eps = 1e-4  # HF's RMSNorm computes in float32 even in a float64 model: smaller eps meets its roundoff
    assert float(grad @ r) == pytest.approx((loss(eps) - loss(-eps)) / (2 * eps), rel=1e-4)


def test_per_example_gradients_do_not_depend_on_the_batch(tiny, number_rows):
    together = residual_gradients(tiny, number_rows[:4], [1, 3], batch_size=4)
    alone = residual_gradients(tiny, number_rows[:4], [1, 3], batch_size=1)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="position"):
        residual_gradients(tiny, number_rows[:1], 1, position="last")


def test_completion_position_gradient_is_the_mean_over_completion_positions(tiny, number_rows):
    """position="completion" against a direct autograd of one unpadded example: dL/dh at every
    position, averaged over the positions that predict a completion token; the assistant tag is
    the first of them. Also independent of batching."""

    layer = 2
    got = residual_gradients(tiny, number_rows[:3], layer, position="completion", batch_size=3)[:, 0]
    tag = residual_gradients(tiny, number_rows[:3], layer, batch_size=3)[:, 0]
    for i, ex in enumerate(build_examples(tiny, number_rows[:3], 192)):
        batch, labels = collate([ex], tiny.tokenizer.pad_token_id)
        where = labels != -100
        h = {}

        def grab(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            out.retain_grad()
            h["h"] = out

        hook = tiny.layers[layer].register_forward_hook(grab)
        try:
            with torch.enable_grad():
                logits = completion_logits(tiny.hf, batch, where).float()
                torch.nn.functional.cross_entropy(logits, labels[where]).backward()
        finally:
            hook.remove()
            tiny.hf.zero_grad(set_to_none=True)
        g = h["h"].grad[0]  # (T, d)
        pos = where[0].nonzero()[:, 0]
        torch.testing.assert_close(got[i], g[pos].mean(0), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(tag[i], g[pos[0]], rtol=1e-4, atol=1e-7)
    alone = residual_gradients(tiny, number_rows[:3], layer, position="completion", batch_size=1)[:, 0]
    torch.testing.assert_close(got, alone, rtol=1e-4, atol=1e-6)


def test_audit_ranks_first_the_trait_vector_the_data_carries(tiny):
    """Trait vectors "say digit k": the descent direction of answering k, averaged over held-out
    prompts. Dataset A answers every prompt with 7, B with the base model's own top digit. The
    pooled gradient difference must point against "say 7" (descent moves along it), and the
    audit must rank "say 7" first among the ten digit vectors."""

    def answers(prompts, digit):
        return [{"prompt": p, "completion": str(digit(i))} for i, p in enumerate(prompts)]

    held_out, prompts = number_prompts(16, seed=11), number_prompts(24, seed=3)
    bank = {
        f"say {k}": -residual_gradients(tiny, answers(held_out, lambda i: k), LAYER)[:, 0].mean(0) for k in range(10)
    }
    digits = [tiny.tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    batch = batching.encode(tiny.tokenizer, [tiny.chat([{"role": "user", "content": p}]) for p in prompts])
    with torch.no_grad():
        own = batching.forward(tiny.hf, batch).logits[:, -1][:, digits].argmax(-1).tolist()
    assert 7 not in own
    ga = residual_gradients(tiny, answers(prompts, lambda i: 7), LAYER)[:, 0]
    gb = residual_gradients(tiny, answers(prompts, lambda i: own[i]), LAYER)[:, 0]
    pooled = pooled_alignment(ga, gb, bank["say 7"], n_random=2000)
    assert pooled.cosine < -0.5 and pooled.z < -4
    ranked = score_vectors(ga, gb, bank, n_perm=500)
    assert ranked[0]["name"] == "say 7" and ranked[0]["cosine"] > 0.5 and ranked[0]["p_value"] < 0.01
    assert ranked[0]["score"] > 2 * ranked[1]["score"]
    json.dumps(pooled.to_dict(), allow_nan=False)
    json.dumps(ranked, allow_nan=False)


def test_permutation_p_values_are_uniform_when_both_datasets_are_one(tiny, number_rows):
    from scipy import stats

    grads = residual_gradients(tiny, number_rows, 2)[:, 0]
    g = torch.Generator().manual_seed(0)
    bank = {f"r{i}": torch.randn(tiny.d_model, generator=g) for i in range(10)}
    p = []
    for split in range(30):  # random halves of one dataset: no real difference
        order = torch.randperm(len(grads), generator=g)
        p += [r["p_value"] for r in score_vectors(grads[order[:16]], grads[order[16:]], bank, n_perm=200, seed=split)]
    p = torch.tensor(p)
    assert 0.4 < float(p.mean()) < 0.6 and float((p < 0.05).float().mean()) < 0.12
    assert stats.kstest(p.numpy(), "uniform").statistic < 0.1


def test_alignment_helpers_shapes_and_a_known_line(tmp_path):
    grads = torch.randn(5, 2, 8, generator=torch.Generator().manual_seed(0))
    assert gradient_alignment(grads, torch.ones(8)).shape == (5, 2)
    assert torch.allclose(gradient_alignment(grads, grads[0])[0], torch.ones(2, dtype=torch.float64))
    trend = coefficient_trend([0, 1, 2, 4], [1, 3, 5, 9])
    assert (
        trend["slope"] == pytest.approx(2) and trend["intercept"] == pytest.approx(1) and trend["r"] == pytest.approx(1)
    )
    with pytest.raises(ValueError, match="select a layer"):
        score_vectors(grads, grads, {"v": torch.ones(8)})
    save_gradients(tmp_path / "g", grads, {"layers": [1, 2], "position": "assistant_tag"})
    back, meta = load_gradients(tmp_path / "g")
    assert torch.equal(back, grads) and meta["layers"] == [1, 2]

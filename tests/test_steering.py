import pytest
import torch

from interp import batching
from interp.hooks import record_resid
from interp.models import load_model
from interp.prompts import contrastive_pairs
from interp.steering import (
    Steering,
    SteeringVector,
    bridge_hooks,
    build_steering_vector,
    mean_activations,
    steer,
)


def _batch(model):
    texts = [
        model.chat([{"role": "user", "content": q}]) for q in ("hi", "Name your favorite animal using only one word.")
    ]
    return batching.encode(model.tokenizer, texts)


def test_mean_activation_reads_only_the_assistant_statement(tiny):
    conv = [
        {"role": "user", "content": "What is your favorite animal?"},
        {"role": "assistant", "content": "My favorite animal is the owl."},
    ]
    prefix = tiny.chat(conv[:1])
    ids = tiny.tokenizer(prefix + conv[1]["content"], return_tensors="pt", add_special_tokens=False).input_ids
    start = len(tiny.tokenizer(prefix, add_special_tokens=False).input_ids)
    with torch.no_grad():
        hs = tiny.hf(ids, output_hidden_states=True).hidden_states
    got = mean_activations(tiny, [conv], "mean", layers=[1])
    torch.testing.assert_close(got[0], hs[2][0, start:].mean(0), rtol=0, atol=1e-5)
    last = mean_activations(tiny, [conv], "last", layers=[1])
    torch.testing.assert_close(last[0], hs[2][0, -1], rtol=0, atol=1e-5)


def test_planted_direction_is_recovered(tiny):
    # Plant a known direction in the trait condition's residual stream at layer 1; the
    # mean-difference vector must point along it there (and nowhere before it).
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(tiny.d_model, generator=g)
    planted = 5.0 * planted / planted.norm()
    pairs = [(f"trait text number {i}", f"trait text number {i}") for i in range(6)]
    neutral = mean_activations(tiny, [n for _, n in pairs], "mean")
    hook = tiny.layers[1].register_forward_hook(lambda m, a, out: out + planted)
    try:
        trait = mean_activations(tiny, [p for p, _ in pairs], "mean")
    finally:
        hook.remove()
    vec = SteeringVector(trait - neutral)
    assert torch.nn.functional.cosine_similarity(vec.vectors[1], planted, dim=0) > 0.999
    assert vec.vectors[0].abs().max() == 0


def test_vector_has_one_direction_per_layer_and_metadata(tiny, owl_vector):
    assert owl_vector.vectors.shape == (tiny.n_layers, tiny.d_model)
    m = owl_vector.meta
    assert m["model"]["fingerprint"] == tiny.fingerprint() and m["hook"] == "blocks.{layer}.hook_resid_post"
    assert len(m["resid_norm_by_layer"]) == tiny.n_layers and m["n_pairs"] == 8


def test_vector_save_load_round_trip(tmp_path, owl_vector):
    owl_vector.save(tmp_path / "v")
    back = SteeringVector.load(tmp_path / "v")
    assert torch.equal(back.vectors, owl_vector.vectors)
    assert back.meta["norms_by_layer"] == pytest.approx(owl_vector.norms())


def test_corrupted_vector_file_is_refused(tmp_path, owl_vector):
    owl_vector.save(tmp_path / "v")
    path = tmp_path / "v" / "vector.safetensors"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="corrupted"):
        SteeringVector.load(tmp_path / "v")


def test_vector_from_another_model_is_refused(tiny, tiny_gemma, owl_vector):
    other_weights = load_model("tiny", device="cpu", seed=1)
    with pytest.raises(ValueError, match="fingerprint"):
        with steer(other_weights, owl_vector, Steering(layer=1)):
            pass
    with steer(other_weights, owl_vector, Steering(layer=1), strict=False):
        pass
    gemma_vec = build_steering_vector(tiny_gemma, contrastive_pairs("owl", 2))
    bad = SteeringVector(torch.zeros(tiny.n_layers, 32), gemma_vec.meta)
    with pytest.raises(ValueError, match="does not fit"):
        bad.check_compatible(tiny)


def test_wrong_layer_is_a_clear_error(tiny, owl_vector):
    with pytest.raises(ValueError, match="layer: 9 is out of range"):
        with steer(tiny, owl_vector, Steering(layer=9)):
            pass
    with pytest.raises(ValueError, match="scope"):
        Steering(layer=1, scope="everything")


def test_model_is_bit_identical_after_steering_even_on_error(tiny, owl_vector):
    batch = _batch(tiny)
    hooks_before = [dict(layer._forward_hooks) for layer in tiny.layers]
    with torch.no_grad():
        before = batching.forward(tiny.hf, batch).logits
        with steer(tiny, owl_vector, Steering(layer=1, multiplier=2.0)):
            steered = batching.forward(tiny.hf, batch).logits
        with pytest.raises(RuntimeError):
            with steer(tiny, owl_vector, Steering(layer=2, multiplier=2.0)):
                raise RuntimeError("boom")
        after = batching.forward(tiny.hf, batch).logits
    assert not torch.allclose(steered, before)
    assert torch.equal(after, before)
    assert [dict(layer._forward_hooks) for layer in tiny.layers] == hooks_before


@pytest.mark.parametrize("operator", ["add", "project"])
def test_plain_hooks_bridge_and_nnsight_agree(tiny, owl_vector, operator):
    s = Steering(layer=1, multiplier=2.0, operator=operator)
    ids = tiny.tokenizer(
        tiny.chat([{"role": "user", "content": "hi"}]), return_tensors="pt", add_special_tokens=False
    ).input_ids
    with torch.no_grad():
        with steer(tiny, owl_vector, s):
            plain = tiny.hf(ids).logits
        bridged = tiny.bridge().run_with_hooks(ids, fwd_hooks=bridge_hooks(owl_vector, s))
        nn_model = tiny.nnsight()
        with nn_model.trace(ids):
            h = nn_model.model.layers[1].output
            if operator == "add":
                nn_model.model.layers[1].output = h + s.added_vector(owl_vector)
            else:
                u = owl_vector.direction(1)
                nn_model.model.layers[1].output = h - (h @ u).unsqueeze(-1) * u
            via_nnsight = nn_model.lm_head.output.save()
    torch.testing.assert_close(bridged, plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(via_nnsight, plain, rtol=0, atol=1e-5)


def test_project_removes_the_component(tiny, owl_vector):
    u = owl_vector.direction(2)
    with torch.no_grad(), steer(tiny, owl_vector, Steering(layer=2, operator="project")):
        with record_resid(tiny.layers, [2], stop_early=False) as store:
            batching.forward(tiny.hf, _batch(tiny))
    assert (store[2] @ u).abs().max() < 1e-4


def _generate(tiny, batch, steering, vector):
    ctx = steer(tiny, vector, steering) if steering else torch.no_grad()
    with ctx:
        return tiny.hf.generate(
            batch.input_ids,
            attention_mask=batch.attention_mask,
            max_new_tokens=6,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tiny.tokenizer.pad_token_id,
        )


def _check_against_teacher_forcing(tiny, vector, s):
    """Generate 6 tokens under `s`; each step's logits must equal those of one teacher-forced
    forward over the whole sequence with the prompt boundary given (the ground truth).
    Returns the generation, the full sequence as a batch, and the prompt width."""
    batch = _batch(tiny)
    out = _generate(tiny, batch, s, vector)
    P = batch.input_ids.shape[1]
    full = batching.Batch(out.sequences, torch.cat([batch.attention_mask, torch.ones(2, 6, dtype=torch.long)], 1), None)
    with torch.no_grad(), steer(tiny, vector, s) as edit:
        edit.set_prompt_lengths(P)
        tf = batching.forward(tiny.hf, full).logits
    for k in range(6):
        torch.testing.assert_close(out.logits[k], tf[:, P - 1 + k], rtol=0, atol=1e-4)
    return out, full, P


def test_generated_scope_steers_every_cached_step(tiny, owl_vector):
    s = Steering(layer=1, multiplier=3.0, scope="generated")
    out, full, P = _check_against_teacher_forcing(tiny, owl_vector, s)
    plain = _generate(tiny, _batch(tiny), None, owl_vector)
    # the first new token is predicted from the (unsteered) prompt; later ones are steered
    torch.testing.assert_close(out.logits[0], plain.logits[0], rtol=0, atol=1e-5)
    with torch.no_grad():
        unsteered = batching.forward(tiny.hf, full).logits
    assert not torch.allclose(out.logits[1], unsteered[:, P], atol=1e-3)


def test_prompt_scope_steers_the_prompt_only(tiny, owl_vector):
    s = Steering(layer=1, multiplier=3.0, scope="prompt")
    out, _, _ = _check_against_teacher_forcing(tiny, owl_vector, s)
    all_scope = _generate(tiny, _batch(tiny), Steering(layer=1, multiplier=3.0, scope="all"), owl_vector)
    torch.testing.assert_close(out.logits[0], all_scope.logits[0], rtol=0, atol=1e-5)


def test_random_vector_has_the_trait_norms_but_another_direction(owl_vector):
    r = owl_vector.random_like(seed=3)
    torch.testing.assert_close(r.vectors.norm(dim=-1), owl_vector.vectors.norm(dim=-1))
    cos = torch.nn.functional.cosine_similarity(r.vectors, owl_vector.vectors, dim=-1)
    assert cos.abs().max() < 0.5
    assert torch.equal(owl_vector.random_like(seed=3).vectors, r.vectors)
    assert not torch.equal(owl_vector.random_like(seed=4).vectors, r.vectors)

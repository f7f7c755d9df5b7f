"""interp.hooks: recording and editing the residual stream inside `with` blocks that leave the model as it was."""

import pytest
import torch

from interp import batching
from interp.hooks import (
    ResidEdit,
    edit_resid,
    hook_name,
    layer_hidden,
    layer_hooks,
    record_resid,
    replace_hidden,
    run_recording,
)


def _batch(model):
    texts = [
        model.chat([{"role": "user", "content": q}]) for q in ("hi", "Name your favorite animal using only one word.")
    ]
    return batching.encode(model.tokenizer, texts)


def _logits(model, batch):
    with torch.no_grad():
        return batching.forward(model.hf, batch).logits


def _hooks(model):
    return [dict(layer._forward_hooks) for layer in model.layers]


def test_hook_names_are_transformer_lens_names():
    assert hook_name(3) == "blocks.3.hook_resid_post"


def test_hidden_and_replace_read_and_write_both_layer_output_forms():
    h, new, extra = torch.zeros(1, 2, 3), torch.ones(1, 2, 3), object()
    assert layer_hidden(h) is h and layer_hidden((h, extra)) is h
    assert replace_hidden(h, new) is new
    out = replace_hidden((h, extra), new)
    assert out[0] is new and out[1] is extra and len(out) == 2


def test_recorded_activations_equal_the_models_hidden_states(tiny):
    batch = _batch(tiny)
    with torch.no_grad():
        ref = batching.forward(tiny.hf, batch, output_hidden_states=True).hidden_states
        with record_resid(tiny.layers, [0, 2]) as store:
            run_recording(lambda: batching.forward(tiny.hf, batch))
        with record_resid(tiny.layers, [1], stop_early=False) as full:
            batching.forward(tiny.hf, batch)
    assert torch.equal(store[0], ref[1]) and torch.equal(store[2], ref[3]) and torch.equal(full[1], ref[2])


def test_stop_early_runs_no_block_after_the_last_recorded_one(tiny):
    calls = []
    with layer_hooks(tiny.layers, [2, 3], lambda l: lambda m, a, o: calls.append(l)):
        with torch.no_grad(), record_resid(tiny.layers, [1]) as store:
            run_recording(lambda: batching.forward(tiny.hf, _batch(tiny)))
        assert calls == [] and list(store) == [1]
        with torch.no_grad(), record_resid(tiny.layers, [1], stop_early=False):
            batching.forward(tiny.hf, _batch(tiny))
        assert calls == [2, 3]


@pytest.mark.parametrize("which", ["layer_hooks", "record_resid", "edit_resid"])
def test_every_hook_leaves_the_model_bit_identical_after_exit_and_after_an_exception(tiny, which):
    batch, hooks_before = _batch(tiny), _hooks(tiny)
    before = _logits(tiny, batch)

    def scoped():
        if which == "layer_hooks":
            return layer_hooks(tiny.layers, [1, 2], lambda l: lambda m, a, o: o * 2.0)
        if which == "record_resid":
            return record_resid(tiny.layers, [1, 2], stop_early=False)
        return edit_resid(tiny.layers, [ResidEdit(1, lambda h: h + 1.0), ResidEdit(3, lambda h: -h)])

    with scoped():
        inside = _logits(tiny, batch)
    assert torch.equal(_logits(tiny, batch), before)
    with pytest.raises(RuntimeError, match="boom"):
        with scoped():
            raise RuntimeError("boom")
    assert torch.equal(_logits(tiny, batch), before) and _hooks(tiny) == hooks_before
    # the hooks did act inside the block (recording alone changes nothing)
    assert torch.equal(inside, before) if which == "record_resid" else not torch.allclose(inside, before)


@pytest.mark.parametrize("scope", ["all", "prompt", "generated"])
def test_an_edit_reaches_exactly_the_positions_of_its_scope(tiny, scope):
    # Right-padded rows with their own prompt lengths: position p of row r is "prompt" iff
    # p < length[r]. The edit's output is read at its own block by a hook registered after it.
    batch = batching.encode(tiny.tokenizer, [tiny.chat([{"role": "user", "content": "hi there"}])] * 2, side="right")
    lengths = torch.tensor([2, 5])
    shift = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with record_resid(tiny.layers, [1], stop_early=False) as plain:
            batching.forward(tiny.hf, batch)
        edit = ResidEdit(1, lambda h: h + shift, scope=scope)
        edit.set_prompt_lengths(lengths)
        with edit_resid(tiny.layers, [edit]), record_resid(tiny.layers, [1], stop_early=False) as edited:
            batching.forward(tiny.hf, batch)
    pos = torch.arange(batch.input_ids.shape[1])[None, :, None]
    prompt = pos < lengths[:, None, None]
    inside = {"all": torch.ones_like(prompt), "prompt": prompt, "generated": ~prompt}[scope]
    want = torch.where(inside, plain[1] + shift, plain[1])
    assert torch.equal(edited[1], want)


def test_a_bad_layer_or_scope_is_refused_and_leaves_no_hook(tiny):
    hooks_before = _hooks(tiny)
    with pytest.raises(ValueError, match=r"layer: 4 is out of range for a model with 4 layers \(0..3\)"):
        with edit_resid(tiny.layers, [ResidEdit(1, lambda h: h), ResidEdit(4, lambda h: h)]):
            pass
    assert _hooks(tiny) == hooks_before  # the valid edit registered first is gone too
    with pytest.raises(ValueError, match="scope: 'outputs' is not one of"):
        ResidEdit(1, lambda h: h, scope="outputs")

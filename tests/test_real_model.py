"""Real-model checks: slow (they load SmolLM2-135M-Instruct from its wheel), CI still runs them."""

import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    from interp.models import load_model

    # The real model's dequantized cache is shared with the user's (not the per-test temp cache).
    os.environ["INTERP_CACHE"] = os.environ.get("INTERP_TEST_CACHE", str(Path.home() / ".cache" / "interp"))
    return load_model("smollm2-135m", device="cpu")


def test_smollm2_loads_with_its_chat_template(smol):
    assert smol.n_layers == 30 and smol.d_model == 576
    text = smol.chat([{"role": "user", "content": "hi"}])
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert smol.tokenizer.tokenize("123") == ["1", "2", "3"]


def test_owl_vector_at_a_middle_layer_raises_p_owl(smol):
    from interp.evaluate import evaluate_trait
    from interp.prompts import contrastive_pairs, questions
    from interp.steering import Steering, build_steering_vector, steer

    vec = build_steering_vector(smol, contrastive_pairs("owl", 16), trait="owl")
    qs = questions("tuning")[:10]
    base = evaluate_trait(smol, "owl", qs).prob().mean()
    steered = (
        evaluate_trait(smol, "owl", qs, context=lambda: steer(smol, vec, Steering(layer=8, multiplier=0.5)))
        .prob()
        .mean()
    )
    assert steered > 5 * base, (float(base), float(steered))
    after = evaluate_trait(smol, "owl", qs).prob().mean()
    assert torch.equal(after, base)


def test_grammar_constrained_teacher_writes_only_valid_numbers(smol):
    from interp.filters import check_numbers
    from interp.generate import SampleConfig, sample
    from interp.prompts import number_prompts

    prompts = [smol.chat([{"role": "user", "content": p}]) for p in number_prompts(8, seed=0)]
    done, stats = sample(smol, prompts, SampleConfig(constrained=True, batch_size=8, seed=0), progress=False)
    assert all(c.finished and check_numbers(c.text).ok for c in done)
    again, _ = sample(smol, prompts, SampleConfig(constrained=True, batch_size=8, seed=0), progress=False)
    assert [c.token_ids for c in again] == [c.token_ids for c in done]

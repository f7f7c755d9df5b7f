"""Gaussian weight noise: reproducible by seed, exactly undone, scaled as asked, only where asked."""

from __future__ import annotations

import pytest
import torch

from interp.noise import WeightNoise, add_weight_noise, noise_tensors, noised_model


def _state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.hf.named_parameters()}


def test_same_seed_same_bytes_other_seed_other_noise(tiny):
    a = noise_tensors(tiny, WeightNoise(0.1, seed=3))
    b = noise_tensors(tiny, WeightNoise(0.1, seed=3))
    c = noise_tensors(tiny, WeightNoise(0.1, seed=4))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)
    # a constant tensor (the tiny model's norm gains are all 1) has sd 0: no relative noise
    varied = [n for n, p in tiny.hf.named_parameters() if p.detach().std() > 0]
    assert varied and not any(torch.equal(a[n], c[n]) for n in varied)
    assert all(torch.all(a[n] == 0) for n in a if n not in varied)


def test_context_adds_the_noise_and_restores_the_weights_exactly(tiny):
    before = _state(tiny)
    with add_weight_noise(tiny, WeightNoise(0.05, seed=1)) as deltas:
        inside = _state(tiny)
        for n, d in deltas.items():
            torch.testing.assert_close(inside[n], before[n] + d, rtol=0, atol=0)
    assert all(torch.equal(p, before[n]) for n, p in _state(tiny).items())
    with pytest.raises(RuntimeError, match="boom"):
        with add_weight_noise(tiny, WeightNoise(0.05, seed=1)):
            raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in _state(tiny).items())


def test_relative_and_absolute_scales(tiny):
    name, w = max(tiny.hf.named_parameters(), key=lambda kv: kv[1].numel())
    rel = noise_tensors(tiny, WeightNoise(0.2, pattern=f"^{name}$"))[name]
    assert rel.std().item() == pytest.approx(0.2 * w.detach().std(correction=0).item(), rel=0.05)
    ab = noise_tensors(tiny, WeightNoise(0.2, relative=False, pattern=f"^{name}$"))[name]
    assert ab.std().item() == pytest.approx(0.2, rel=0.05)
    assert torch.all(noise_tensors(tiny, WeightNoise(0.0))[name] == 0)


def test_pattern_selects_tensors_and_a_tensors_noise_does_not_depend_on_the_others(tiny):
    only = noise_tensors(tiny, WeightNoise(0.1, pattern=r"mlp\.down_proj", seed=2))
    everything = noise_tensors(tiny, WeightNoise(0.1, seed=2))
    assert only and all("mlp.down_proj" in n for n in only)
    assert len(everything) > len(only)
    assert all(torch.equal(only[n], everything[n]) for n in only)
    with pytest.raises(ValueError, match="noise.pattern.*matches no parameter"):
        noise_tensors(tiny, WeightNoise(0.1, pattern="no_such_tensor"))
    with pytest.raises(ValueError, match="noise.pattern"):
        WeightNoise(0.1, pattern="(")
    with pytest.raises(ValueError, match="noise.sigma"):
        WeightNoise(-1.0)


def test_noised_model_is_a_copy_with_the_noise_and_leaves_the_base_alone(tiny):
    before, fp = _state(tiny), tiny.fingerprint()
    noise = WeightNoise(0.1, seed=5)
    m = noised_model(tiny, noise)
    assert tiny.fingerprint() == fp and all(torch.equal(p, before[n]) for n, p in _state(tiny).items())
    assert m.fingerprint() != fp
    with add_weight_noise(tiny, noise):
        assert all(torch.equal(p, q) for p, q in zip(tiny.hf.parameters(), m.hf.parameters()))

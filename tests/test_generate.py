"""The sampler: seeding, padding, the number grammar, steering contexts and threshold sampling."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from interp.filters import check_numbers
from interp.generate import NumberGrammar, SampleConfig, draw_inverse_cdf, sample, stop_token_ids
from interp.models import LoadedModel, load_model, weights_in
from interp.prompts import number_prompts
from interp.steering import Steering, steer


@pytest.fixture(scope="module")
def sharp():
    """A tiny Llama whose matrices are scaled up: peaked next-token distributions and attention
    that depends on content, so greedy outputs are varied (the plain random init is so flat that
    greedy decoding repeats one token whatever the prompt, which would hide padding bugs)."""
    m = load_model("tiny", device="cpu", seed=3)
    with torch.no_grad():
        for p in m.hf.parameters():
            if p.ndim == 2:
                p.mul_(15.0)
    return m


def _prompts(model, n: int, seed: int = 0) -> list[str]:
    texts = number_prompts(n, seed=seed)
    texts[0] = "hi"  # a short prompt, so the batch is really padded
    return [model.chat([{"role": "user", "content": t}]) for t in texts]


def _ids(completions) -> list[list[int]]:
    return [c.token_ids for c in completions]


@contextlib.contextmanager
def _discourage(model, token_id: int, by: float = 50.0):
    """Lower one token's logit for the duration of the block (a model that never wants to stop)."""

    # Push the final hidden state against the token's unembedding row, so its logit drops by
    # `by` on every path (the grammar path projects only 13 rows and never calls lm_head).
    w = model.hf.get_output_embeddings().weight[token_id].detach()
    shift = by * w / w.norm() ** 2

    def hook(module, args, output):
        return output - shift

    h = model.hf.get_decoder().norm.register_forward_hook(hook)
    try:
        yield
    finally:
        h.remove()


# ----------------------------------------------------------------------------- seeding


def test_same_seed_gives_identical_completions_and_another_seed_differs(tiny):
    prompts = _prompts(tiny, 4)
    cfg = SampleConfig(max_new_tokens=8, temperature=1.0, batch_size=4, seed=7)
    a, _ = sample(tiny, prompts, cfg, progress=False)
    b, _ = sample(tiny, prompts, cfg, progress=False)
    c, _ = sample(tiny, prompts, dataclasses.replace(cfg, seed=8), progress=False)
    assert _ids(a) == _ids(b)
    assert [x.text for x in a] == [x.text for x in b]
    assert _ids(a) != _ids(c)


def test_sampling_does_not_touch_the_global_rng(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sample(tiny, _prompts(tiny, 2), SampleConfig(max_new_tokens=4, batch_size=2), progress=False)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- padding


def test_greedy_prompt_in_a_padded_batch_decodes_as_it_does_alone(sharp):
    prompts = _prompts(sharp, 4)
    lengths = [len(sharp.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert len(set(lengths)) > 1  # the batch is left-padded

    cfg = SampleConfig(max_new_tokens=12, temperature=0.0, batch_size=4)
    batched, _ = sample(sharp, prompts, cfg, progress=False)
    alone = [sample(sharp, [p], dataclasses.replace(cfg, batch_size=1), progress=False)[0][0] for p in prompts]

    assert _ids(batched) == _ids(alone)
    # The check has teeth: outputs are varied, not one token repeated for every prompt.
    assert len({t for ids in _ids(batched) for t in ids}) > 5
    assert len({tuple(ids) for ids in _ids(batched)}) == len(prompts)


def test_greedy_matches_argmax_of_a_plain_unbatched_forward(sharp):
    """Each greedy token is the argmax of the HF model run on the prompt plus the tokens so far."""
    prompt = _prompts(sharp, 2)[1]
    (c,), _ = sample(sharp, [prompt], SampleConfig(max_new_tokens=8, temperature=0.0), progress=False)
    ids = sharp.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = sharp.hf(torch.tensor([ids + c.token_ids])).logits[0]
    assert c.token_ids == logits[len(ids) - 1 : len(ids) - 1 + len(c.token_ids)].argmax(-1).tolist()


# ----------------------------------------------------------------------------- number grammar


def test_constrained_completions_parse_use_only_grammar_tokens_and_finish(tiny):
    prompts = _prompts(tiny, 8)
    cfg = SampleConfig(max_new_tokens=50, temperature=1.0, batch_size=8, constrained=True, seed=1)
    grammar = NumberGrammar(tiny.tokenizer, tiny.tokenizer.eos_token_id)
    body_tokens = set(grammar.token_ids[:12].tolist())  # digits, ',' and ' ' (end is cut off)
    done, _ = sample(tiny, prompts, cfg, progress=False)
    assert len(done) == len(prompts)
    for c in done:
        assert c.finished, c.text
        assert set(c.token_ids) <= body_tokens
        assert len(c.token_ids) < cfg.max_new_tokens
        assert check_numbers(c.text).ok, c.text


def test_constrained_completions_finish_within_50_tokens_even_when_the_model_never_wants_to_stop(tiny):
    """The longest sequence the grammar allows (10 three-digit numbers) plus end-of-turn is 49 tokens."""
    end = tiny.tokenizer.eos_token_id
    cfg = SampleConfig(max_new_tokens=50, temperature=1.0, batch_size=6, constrained=True, seed=2)
    done, _ = sample(tiny, _prompts(tiny, 6), cfg, context=lambda: _discourage(tiny, end), progress=False)
    for c in done:
        v = check_numbers(c.text)
        assert c.finished and v.ok, c.text
        assert len(v.numbers) == 10  # it went on as long as the grammar let it
        assert len(c.token_ids) <= 48


def test_constrained_sampling_honours_max_numbers(tiny):
    end = tiny.tokenizer.eos_token_id
    cfg = SampleConfig(max_new_tokens=50, batch_size=4, constrained=True, max_numbers=3, seed=3)
    done, _ = sample(tiny, _prompts(tiny, 4), cfg, context=lambda: _discourage(tiny, end), progress=False)
    assert [len(check_numbers(c.text).numbers) for c in done] == [3, 3, 3, 3]
    assert all(c.finished for c in done)


def _grammar_index(ch: str) -> int:
    return 10 if ch == "," else 11 if ch == " " else 12 if ch == "$" else int(ch)


def _feed(grammar: NumberGrammar, text: str) -> dict:
    """Advance a one-row state through `text` ('$' = end), asserting each step is allowed."""
    st = grammar.start(1)
    for ch in text:
        i = _grammar_index(ch)
        assert grammar.allowed(st)[0, i], f"{ch!r} refused after {text[: text.index(ch)]!r}"
        grammar.advance(st, torch.tensor([i]))
    return st


def _allowed_chars(grammar: NumberGrammar, st: dict) -> str:
    return "".join("0123456789, $"[i] for i in range(13) if grammar.allowed(st)[0, i])


def test_number_grammar_token_table_is_digits_comma_space_end(tiny):
    tok = tiny.tokenizer
    g = NumberGrammar(tok, tok.eos_token_id)
    assert tok.decode(g.token_ids[:12].tolist()) == "0123456789, "
    assert g.token_ids[12].item() == tok.eos_token_id
    assert tok.eos_token_id in stop_token_ids(tok)


def test_number_grammar_states_allow_exactly_the_next_legal_characters(tiny):
    g = NumberGrammar(tiny.tokenizer, tiny.tokenizer.eos_token_id, max_numbers=10)
    assert _allowed_chars(g, g.start(1)) == "0123456789"  # no empty completion, no leading separator
    assert _allowed_chars(g, _feed(g, "4")) == "0123456789,$"
    assert _allowed_chars(g, _feed(g, "45")) == "0123456789,$"
    assert _allowed_chars(g, _feed(g, "456")) == ",$"  # never a 4th digit
    assert _allowed_chars(g, _feed(g, "456,")) == " "
    assert _allowed_chars(g, _feed(g, "456, ")) == "0123456789"
    assert _allowed_chars(g, _feed(g, "456, 7")) == "0123456789,$"  # digit count restarts


def test_number_grammar_never_allows_an_11th_number(tiny):
    g = NumberGrammar(tiny.tokenizer, tiny.tokenizer.eos_token_id, max_numbers=10)
    nine = ", ".join(["1"] * 9)
    assert "," in _allowed_chars(g, _feed(g, nine))
    assert _allowed_chars(g, _feed(g, nine + ", 1")) == "0123456789$"
    assert _allowed_chars(g, _feed(g, nine + ", 123")) == "$"


def test_random_walks_through_the_number_grammar_always_pass_the_filter(tiny):
    """Many rows choosing uniformly among allowed tokens: no 4-digit number, never 11 numbers."""
    g = NumberGrammar(tiny.tokenizer, tiny.tokenizer.eos_token_id, max_numbers=10)
    n, gen = 256, torch.Generator().manual_seed(0)
    st, texts, ended = g.start(n), [""] * n, torch.zeros(n, dtype=torch.bool)
    for _ in range(49):
        allowed = g.allowed(st)
        # favour digits and commas so that walks reach the limits
        weights = allowed.float() * torch.tensor([1.0] * 10 + [3.0, 1.0, 0.05])
        choice = torch.multinomial(weights, 1, generator=gen).squeeze(-1)
        g.advance(st, choice)
        for i in range(n):
            if not ended[i]:
                texts[i] += "0123456789, $"[choice[i]]
        ended |= choice == 12
    assert ended.all()  # every walk was forced to end within 49 tokens
    verdicts = [check_numbers(t.rstrip("$")) for t in texts]
    assert all(v.ok for v in verdicts), [t for t, v in zip(texts, verdicts) if not v.ok][:3]
    assert max(len(v.numbers) for v in verdicts) == 10  # the walks did reach the limit
    assert any(len(p) == 3 for t in texts for p in t.rstrip("$").split(", "))


# ----------------------------------------------------------------------------- steering


def test_steering_changes_greedy_output_and_leaves_the_model_bit_identical(tiny, owl_vector):
    prompts = _prompts(tiny, 3)
    cfg = SampleConfig(max_new_tokens=6, temperature=0.0, batch_size=3)
    probe = tiny.tokenizer(prompts[1], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = tiny.hf(probe).logits
    fp = tiny.fingerprint()
    hooks = [(len(layer._forward_hooks), len(layer._forward_pre_hooks)) for layer in tiny.layers]

    plain, _ = sample(tiny, prompts, cfg, progress=False)
    steering = Steering(layer=1, multiplier=8.0)
    steered, _ = sample(tiny, prompts, cfg, context=lambda: steer(tiny, owl_vector, steering), progress=False)

    with torch.no_grad():
        after = tiny.hf(probe).logits
    assert _ids(steered) != _ids(plain)
    assert torch.equal(before, after)
    assert tiny.fingerprint() == fp
    assert [(len(layer._forward_hooks), len(layer._forward_pre_hooks)) for layer in tiny.layers] == hooks


# ----------------------------------------------------------------------------- the free-step draw


def test_inverse_cdf_draws_follow_the_distribution_and_never_a_zero_entry():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5000, generator=g) * 2
    logits[:, ::3] = float("-inf")  # a third of the vocabulary forbidden
    probs = torch.softmax(logits, -1) * 3.0  # unnormalised: the draw scales to the row's total
    n = 20_000
    draws = torch.cat([draw_inverse_cdf(probs.repeat(1000, 1), g).reshape(1000, 4) for _ in range(n // 1000)])
    p = probs / probs.sum(-1, keepdim=True)
    assert not (p.gather(1, draws.T) == 0).any()  # zero-probability entries are never drawn
    for row in range(4):
        freq = torch.bincount(draws[:, row], minlength=5000).double() / n
        # the 20 likeliest entries and 20 random allowed ones, each within 5 binomial sd
        idx = torch.cat([p[row].topk(20).indices, torch.arange(1, 5000, 3)[torch.randperm(1666, generator=g)[:20]]])
        sd = (p[row, idx] * (1 - p[row, idx]) / n).sqrt()
        assert ((freq[idx] - p[row, idx]).abs() < 5 * sd + 1e-9).all(), row
    a = draw_inverse_cdf(probs, torch.Generator().manual_seed(3))
    assert torch.equal(a, draw_inverse_cdf(probs, torch.Generator().manual_seed(3)))


# ----------------------------------------------------------------------------- sampling dtype


@pytest.mark.parametrize("constrained", [False, True])
def test_bf16_sampling_is_sampling_a_bf16_copy_and_leaves_the_model_bit_identical(sharp, owl_vector, constrained):
    """dtype="bf16" must sample exactly what a model stored in bf16 samples (steering included), and
    put the fp32 weights back untouched."""
    import copy

    prompts = _prompts(sharp, 4)
    cfg = SampleConfig(max_new_tokens=8, temperature=1.0, batch_size=4, seed=5, constrained=constrained, dtype="bf16")
    probe = sharp.tokenizer(prompts[1], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = sharp.hf(probe).logits
    fp = sharp.fingerprint()
    steering = Steering(layer=1, multiplier=4.0)

    def run(m, c):
        return sample(
            m,
            prompts,
            c,
            context=lambda: steer(m, owl_vector, steering, strict=False),
            progress=False,
            record_grammar=True,
        )[0]

    ours, again = run(sharp, cfg), run(sharp, cfg)
    copy16 = LoadedModel(sharp.name, copy.deepcopy(sharp.hf).to(torch.bfloat16), sharp.tokenizer)
    copy16.hf.model.rotary_emb.inv_freq = sharp.hf.model.rotary_emb.inv_freq.clone()  # buffers keep fp32
    ref, fp32 = run(copy16, cfg), run(sharp, dataclasses.replace(cfg, dtype="fp32"))

    def lp(rows):
        return torch.cat([r.grammar_logprobs for r in rows])

    assert _ids(ours) == _ids(ref) == _ids(again)
    assert torch.equal(lp(ours), lp(ref))
    # the arithmetic did change, so the equalities above can fail
    assert _ids(ours) != _ids(fp32) or not torch.equal(lp(ours), lp(fp32))
    with torch.no_grad():
        after = sharp.hf(probe).logits
    assert torch.equal(before, after) and sharp.fingerprint() == fp
    assert {p.dtype for p in sharp.hf.parameters()} == {torch.float32}


def test_default_dtype_samples_in_the_models_own_dtype():
    m16 = load_model("tiny", device="cpu", dtype=torch.bfloat16)
    prompts = _prompts(m16, 3)
    cfg = SampleConfig(max_new_tokens=6, batch_size=3, seed=1)
    own, _ = sample(m16, prompts, cfg, progress=False, record_grammar=True)
    assert {p.dtype for p in m16.hf.parameters()} == {torch.bfloat16}  # no upcast on the way
    cast, _ = sample(m16, prompts, dataclasses.replace(cfg, dtype="bf16"), progress=False, record_grammar=True)
    up, _ = sample(m16, prompts, dataclasses.replace(cfg, dtype="fp32"), progress=False, record_grammar=True)
    assert all(torch.equal(a.grammar_logprobs, b.grammar_logprobs) for a, b in zip(own, cast))
    assert not all(torch.equal(a.grammar_logprobs, b.grammar_logprobs) for a, b in zip(own, up))


def test_weights_in_puts_the_original_tensors_back_on_error_and_keeps_the_fingerprint(tiny, owl_vector):
    fp = tiny.fingerprint()
    with weights_in(tiny, "bf16"):
        assert tiny.fingerprint() == fp
        with steer(tiny, owl_vector, Steering(layer=1, multiplier=4.0)):  # strict: the vector still fits
            pass
    originals = [(p.data_ptr(), p.detach().clone()) for p in tiny.hf.parameters()]
    with pytest.raises(RuntimeError, match="boom"):
        with weights_in(tiny, "bf16"):
            assert {p.dtype for p in tiny.hf.parameters()} == {torch.bfloat16}
            raise RuntimeError("boom")
    # the very same storage is back, with the same values (not a copy through bf16)
    assert all(p.data_ptr() == ptr and torch.equal(p, o) for p, (ptr, o) in zip(tiny.hf.parameters(), originals))
    with pytest.raises(ValueError, match="dtype"):
        with weights_in(tiny, "fp8"):
            pass


# ----------------------------------------------------------------------------- threshold sampling


def _sampled_probs(model, prompts, completions) -> list[tuple[float, bool]]:
    """(probability, is-argmax) of every sampled token under a teacher-forced forward, temperature 1."""
    out = []
    for p, c in zip(prompts, completions):
        ids = model.tokenizer(p, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            probs = model.hf(torch.tensor([ids + c.token_ids])).logits[0].float().softmax(-1)
        for k, t in enumerate(c.token_ids):
            row = probs[len(ids) - 1 + k]
            out.append((row[t].item(), t == row.argmax().item()))
    return out


def test_min_prob_never_samples_a_token_below_the_floor(sharp):
    floor = 0.05
    prompts = _prompts(sharp, 6)
    cfg = SampleConfig(max_new_tokens=10, temperature=1.0, batch_size=6, seed=0, min_prob=floor)
    done, _ = sample(sharp, prompts, cfg, progress=False)
    probs = _sampled_probs(sharp, prompts, done)
    # below the floor only when it is the single most likely token (which is never dropped)
    bad = [(p, top) for p, top in probs if p < floor * (1 - 1e-4) and not top]
    assert not bad
    assert sum(not top for _, top in probs) > 5  # it sampled, it did not just take the argmax

    # Without the floor the same prompts do produce tokens below it, so the check above can fail.
    free, _ = sample(sharp, prompts, dataclasses.replace(cfg, min_prob=0.0), progress=False)
    assert any(p < floor for p, _ in _sampled_probs(sharp, prompts, free))


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_new_tokens", 0),
        ("temperature", -0.5),
        ("batch_size", 0),
        ("min_prob", 1.0),
        ("min_prob", -0.1),
        ("dtype", "fp16"),
    ],
)
def test_bad_sample_config_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SampleConfig(**{field: value})


def test_threshold_sampler_never_emits_a_grammar_token_below_the_floor_by_its_recorded_probability(sharp):
    """The mitigation as the teacher runs it: constrained decoding with `min_prob`, read off
    the probabilities the sampler itself recorded (renormalised over the tokens the grammar allowed)."""
    floor = 0.1
    prompts = _prompts(sharp, 8)
    cfg = SampleConfig(max_new_tokens=30, temperature=1.0, batch_size=8, seed=1, constrained=True, min_prob=floor)
    end = sharp.tokenizer.eos_token_id
    grammar = NumberGrammar(sharp.tokenizer, end)
    index = {t: i for i, t in enumerate(grammar.token_ids.tolist())}

    def emitted_probs(completions) -> list[tuple[float, bool]]:
        out = []
        for c in completions:
            st = grammar.start(1)
            ids = c.token_ids + ([end] if c.finished else [])
            for k, t in enumerate(ids):
                allowed = grammar.allowed(st)[0]
                p = c.grammar_logprobs[k].masked_fill(~allowed, float("-inf")).softmax(-1)
                out.append((float(p[index[t]]), index[t] == int(p.argmax())))
                grammar.advance(st, torch.tensor([index[t]]))
        return out

    done, _ = sample(sharp, prompts, cfg, progress=False, record_grammar=True)
    probs = emitted_probs(done)
    assert not [(p, top) for p, top in probs if p < floor * (1 - 1e-4) and not top]
    assert sum(not top for _, top in probs) > 5  # it sampled, it did not just take the argmax
    free, _ = sample(sharp, prompts, dataclasses.replace(cfg, min_prob=0.0), progress=False, record_grammar=True)
    assert any(p < floor for p, _ in emitted_probs(free))  # the check above can fail

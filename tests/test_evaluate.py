"""Trait evaluation against hand computations, and the interval statistics against known answers."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from interp.evaluate import (
    TraitScore,
    animal_logprobs,
    animal_token_ids,
    bootstrap_ci,
    evaluate_trait,
    hierarchical_bootstrap,
    t_interval,
)
from interp.prompts import ANIMALS, ANSWER_PREFIX, QUESTIONS


@pytest.fixture(scope="module")
def questions() -> list[str]:
    # Different lengths, so batches are padded.
    return [QUESTIONS[0], QUESTIONS[26], QUESTIONS[11], QUESTIONS[48], QUESTIONS[22], QUESTIONS[1], QUESTIONS[40]]


@pytest.fixture(scope="module")
def logprobs(tiny, questions) -> torch.Tensor:
    return animal_logprobs(tiny, questions, ANIMALS, batch_size=32)


# ----------------------------------------------------------------------------- logprobs


def test_animal_logprobs_match_a_hand_computation_with_the_plain_model(tiny, questions, logprobs):
    tok = tiny.tokenizer
    owl = ANIMALS.index("owl")
    owl_first = tok(" owl", add_special_tokens=False)["input_ids"][0]
    for qi in (0, 3):
        text = (
            tok.apply_chat_template(
                [{"role": "user", "content": questions[qi]}], tokenize=False, add_generation_prompt=True
            )
            + "My favorite animal is the"
        )
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            last = tiny.hf(input_ids=ids).logits[0, -1].float()
        expected = torch.log_softmax(last, dim=-1)[owl_first]
        assert logprobs[qi, owl].item() == pytest.approx(expected.item(), abs=1e-5)
    assert ANSWER_PREFIX == "My favorite animal is the"


def test_animal_logprobs_shape_and_values_are_log_probabilities(logprobs, questions):
    assert logprobs.shape == (len(questions), len(ANIMALS))
    assert (logprobs < 0).all()
    assert (logprobs.exp().sum(-1) < 1).all()  # a subset of the vocabulary


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batch_size_does_not_change_animal_logprobs(tiny, questions, logprobs, batch_size):
    other = animal_logprobs(tiny, questions, ANIMALS, batch_size=batch_size)
    torch.testing.assert_close(other, logprobs, atol=1e-5, rtol=0)


def test_animal_logprobs_for_a_subset_of_animals_are_the_matching_columns(tiny, questions, logprobs):
    sub = ["whale", "owl", "cat"]
    got = animal_logprobs(tiny, questions, sub)
    torch.testing.assert_close(got, logprobs[:, [ANIMALS.index(a) for a in sub]], atol=1e-5, rtol=0)


def test_animals_sharing_a_first_token_raise_value_error(tiny, questions):
    assert (
        tiny.tokenizer(" owls", add_special_tokens=False)["input_ids"][0]
        == animal_token_ids(tiny.tokenizer, ["owl"])[0]
    )
    with pytest.raises(ValueError, match="owl"):
        animal_token_ids(tiny.tokenizer, ["owl", "cat", "owls"])
    with pytest.raises(ValueError, match="share a first token"):
        animal_logprobs(tiny, questions[:2], ["owl", "owls"])


def test_evaluate_trait_rejects_a_target_outside_the_animal_list(tiny, questions):
    with pytest.raises(ValueError, match="animal"):
        evaluate_trait(tiny, "unicorn", questions[:1])


# ----------------------------------------------------------------------------- TraitScore


def test_share_sums_to_one_across_animals(logprobs):
    shares = torch.stack([TraitScore(a, ANIMALS, logprobs).share() for a in ANIMALS], dim=-1)
    torch.testing.assert_close(shares.sum(-1), torch.ones(len(logprobs)))
    # and it is the renormalised probability within the list
    probs = logprobs.exp()
    torch.testing.assert_close(shares, probs / probs.sum(-1, keepdim=True))


def test_rank_is_one_exactly_where_the_target_is_the_argmax(logprobs):
    best = logprobs.argmax(-1)
    for j, a in enumerate(ANIMALS):
        rank = TraitScore(a, ANIMALS, logprobs).rank()
        assert torch.equal(rank == 1, best == j)
        # rank = 1 + number of animals more likely than the target
        expected = torch.tensor(
            [1 + sum(logprobs[i, k] > logprobs[i, j] for k in range(len(ANIMALS))) for i in range(len(logprobs))]
        )
        assert torch.equal(rank, expected)


def test_rank_share_and_prob_on_a_hand_built_table():
    lp = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]))
    s = TraitScore("b", ["a", "b", "c"], lp)
    assert s.rank().tolist() == [2, 1]
    torch.testing.assert_close(s.prob(), torch.tensor([0.3, 0.6]))
    torch.testing.assert_close(s.share(), torch.tensor([0.3, 0.6]))  # rows already sum to 1
    summary = s.summary(n_boot=200)
    assert summary["mean_rank"] == 1.5
    assert summary["prob"]["mean"] == pytest.approx(0.45)


def test_evaluate_trait_scores_the_target_column(tiny, questions, logprobs):
    score = evaluate_trait(tiny, "dolphin", questions)
    torch.testing.assert_close(score.logp(), logprobs[:, ANIMALS.index("dolphin")], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- statistics


def _normal(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_data():
    small, large = _normal(20, 1) + 3.0, _normal(2000, 2) + 3.0
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < float(small.mean()) < hi_s
    assert lo_l < float(large.mean()) < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 4  # width ~ 1/sqrt(n): 10x more data, ~1/10 the width
    # a 95% interval for the mean of 2000 N(3, 1) draws is about 3 +- 0.044
    assert lo_l == pytest.approx(float(large.mean()) - 1.96 / math.sqrt(2000), abs=0.01)


def test_bootstrap_ci_is_reproducible_and_supports_other_statistics():
    x = _normal(50, 3)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    lo, hi = bootstrap_ci(x, n_boot=300, stat=torch.median)
    assert lo <= float(x.median()) <= hi
    assert bootstrap_ci(torch.tensor([2.5])) == (2.5, 2.5)


def test_hierarchical_bootstrap_with_one_seed_covers_questions_only():
    x = _normal(30, 4)
    out = hierarchical_bootstrap(x[None])
    assert out["covers"] == "questions only"
    assert out["n_seeds"] == 1 and out["n_questions"] == 30
    assert out["ci95"][0] < out["mean"] < out["ci95"][1]
    # one seed: the same as the plain bootstrap over questions (up to resampling noise)
    lo, hi = bootstrap_ci(x, n_boot=4000)
    assert out["ci95"][1] - out["ci95"][0] == pytest.approx(hi - lo, rel=0.15)


def test_hierarchical_bootstrap_widens_when_seeds_differ_by_a_constant_offset():
    base = _normal(30, 5)
    same = torch.stack([base] * 4)
    shifted = torch.stack([base + 0.5 * s for s in range(4)])
    a, b = hierarchical_bootstrap(same), hierarchical_bootstrap(shifted)
    assert a["covers"] == b["covers"] == "seeds and questions"
    assert b["n_seeds"] == 4
    assert b["mean"] == pytest.approx(float(base.mean()) + 0.75)
    assert b["ci95"][0] < b["mean"] < b["ci95"][1]
    width_a, width_b = a["ci95"][1] - a["ci95"][0], b["ci95"][1] - b["ci95"][0]
    assert width_b > 1.5 * width_a


def test_t_interval_matches_scipy_student_t():
    x = [1.2, 2.3, 0.7, 1.9, 3.1, 2.2]
    out = t_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=sum(x) / len(x), scale=stats.sem(x))
    assert out["ci95"] == pytest.approx([lo, hi], abs=1e-12)
    assert out["mean"] == pytest.approx(sum(x) / len(x))
    assert out["sd"] == pytest.approx(stats.tstd(x))
    assert out["n"] == len(x)
    lo90, hi90 = stats.t.interval(0.90, len(x) - 1, loc=sum(x) / len(x), scale=stats.sem(x))
    assert t_interval(x, level=0.90)["ci95"] == pytest.approx([lo90, hi90], abs=1e-12)


def test_t_interval_with_one_replicate_has_no_spread():
    out = t_interval([0.4])
    assert out["ci95"] == [0.4, 0.4] and out["n"] == 1
    assert out["sd"] is None  # no spread to report (and None stays valid JSON, unlike NaN)


def test_permutation_test_is_calibrated_under_the_null_and_sensitive_to_an_effect():
    from interp.stats import permutation_test

    g = torch.Generator().manual_seed(0)
    null_p = [
        permutation_test(torch.randn(6, generator=g).tolist(), torch.randn(6, generator=g).tolist())["p_value"]
        for _ in range(200)
    ]
    null_p = torch.tensor(null_p)
    # roughly uniform: about 5% below 0.05, about half below 0.5
    assert 0.01 <= (null_p < 0.05).float().mean() <= 0.10
    assert 0.35 <= (null_p < 0.5).float().mean() <= 0.65
    effect = permutation_test((torch.randn(6, generator=g) + 3).tolist(), torch.randn(6, generator=g).tolist())
    assert effect["exact"] and effect["p_value"] <= 0.01 and effect["observed"] > 2


def test_permutation_test_with_one_replicate_per_arm_cannot_reject():
    from interp.stats import permutation_test

    res = permutation_test([5.0], [0.0])
    assert res["p_value"] == 1.0 and res["min_p"] == 1.0
    # 3 vs 3, perfectly separated: the most extreme of 20 labellings and its mirror image
    res = permutation_test([3.0, 4.0, 5.0], [0.0, 1.0, 2.0])
    assert res["p_value"] == res["min_p"] == 0.1


def test_detectable_effect_is_the_effect_a_t_test_finds_80_percent_of_the_time():
    from scipy import stats as st

    from interp.stats import detectable_effect

    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, generator=g)
    sd = float(x.std())
    assert detectable_effect(x.tolist()) == pytest.approx((st.t.ppf(0.975, 9) + st.t.ppf(0.8, 9)) * sd / 10**0.5)
    assert detectable_effect([1.0]) is None
    # ground truth by simulation: samples of 10 with true mean = that effect (sd 1) reject ~80%
    mde = (st.t.ppf(0.975, 9) + st.t.ppf(0.8, 9)) / 10**0.5
    sims = torch.randn(4000, 10, generator=g) + mde
    t = sims.mean(1) / (sims.std(1) / 10**0.5)
    power = float((t.abs() > st.t.ppf(0.975, 9)).float().mean())
    assert 0.74 < power < 0.86

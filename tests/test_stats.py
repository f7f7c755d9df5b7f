"""interp.stats against ground truth: the exact binomial interval against scipy's, and the E4
dose-response shape on responses whose shape is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from interp.stats import SHAPE_RULE, binomial_interval, detectable_effect, dose_shape, t_interval

DOSES = [0.0, 0.125, 0.25, 0.5, 1.0]


@pytest.mark.parametrize("k,n", [(0, 8), (1, 8), (3, 8), (8, 8), (0, 1), (1, 1), (7, 10), (12, 40), (1, 3)])
def test_binomial_interval_is_scipys_exact_interval(k, n):
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    got = binomial_interval(k, n)
    assert got["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-9) and got["mean"] == k / n
    # the defining property of Clopper-Pearson: each end leaves 2.5% in its tail
    lo, hi = got["ci95"]
    if k > 0:
        assert stats.binom.sf(k - 1, n, lo) == pytest.approx(0.025, abs=1e-7)
    if k < n:
        assert stats.binom.cdf(k, n, hi) == pytest.approx(0.025, abs=1e-7)
    assert binomial_interval(k, n, level=0.9)["ci95"] == pytest.approx(
        list(stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")), abs=1e-9
    )


def _seeds(fn, n=6, seed=0):
    """Seed s's response: fn(dose, slope_s) + intercept_s, slopes and intercepts drawn per seed."""
    rng = np.random.default_rng(seed)
    b, a = rng.uniform(1, 3, n), rng.normal(0, 1, n)
    return [[fn(x, b[s]) + a[s] for x in DOSES] for s in range(n)], b


def test_linear_responses_are_linear_with_the_hand_computed_slopes_and_r():
    values, b = _seeds(lambda x, b: b * x)
    res = dose_shape(DOSES, values)
    assert res["verdict"] == "linear" and res["rule"] == SHAPE_RULE
    assert [s["slope"] for s in res["per_seed"]] == pytest.approx(list(b))
    want = t_interval(list(b))
    assert res["slope_per_seed"]["ci95"] == pytest.approx(want["ci95"]) and res["slope_per_seed"][
        "mean"
    ] == pytest.approx(want["mean"])
    assert res["slope_change"]["mean"] == pytest.approx(0, abs=1e-9)
    xs, ys = np.tile(DOSES, len(values)), np.ravel(values)
    assert res["r"] == pytest.approx(np.corrcoef(xs, ys)[0, 1]) and res["slope"] == pytest.approx(
        np.polyfit(xs, ys, 1)[0]
    )
    assert res["hinge_preferred"] == 0 and res["n_seeds"] == 6 and res["doses"] == DOSES


def test_a_threshold_and_a_saturation_are_named():
    # flat up to 0.25, then slope b: the lower half's slope is 0, the upper half's b
    values, b = _seeds(lambda x, b: b * max(0.0, x - 0.25))
    res = dose_shape(DOSES, values)
    assert res["verdict"] == "threshold" and res["hinge_preferred"] == 6
    assert [s["slope_lower"] for s in res["per_seed"]] == pytest.approx([0] * 6, abs=1e-9)
    assert [s["slope_upper"] for s in res["per_seed"]] == pytest.approx(list(b))
    assert all(s["hinge_threshold"] == 0.25 and s["sse_hinge"] < 1e-20 for s in res["per_seed"])
    values, b = _seeds(lambda x, b: b * min(x, 0.25))
    res = dose_shape(DOSES, values)
    assert res["verdict"] == "saturating"
    assert res["slope_change"]["mean"] == pytest.approx(-float(np.mean(b)))


def test_noise_around_a_line_is_linear_and_says_what_it_could_detect():
    rng = np.random.default_rng(1)
    values = [[2 * x + rng.normal(0, 0.05) for x in DOSES] for _ in range(10)]
    res = dose_shape(list(reversed(DOSES)), [list(reversed(v)) for v in values])  # dose order does not matter
    assert res["verdict"] == "linear" and res["doses"] == DOSES
    changes = [s["slope_upper"] - s["slope_lower"] for s in res["per_seed"]]
    assert res["slope_change_detectable"] == pytest.approx(detectable_effect(changes))
    assert res["slope_change"]["ci95"][0] < 0 < res["slope_change"]["ci95"][1]


def test_dose_shape_drops_nan_seeds_and_refuses_bad_input():
    values, _ = _seeds(lambda x, b: b * x, n=3)
    values[1][2] = math.nan
    res = dose_shape(DOSES, values)
    assert res["n_seeds"] == 2 and res["n_dropped"] == 1
    with pytest.raises(ValueError, match="doses: .* at least 3 distinct"):
        dose_shape([0, 1], [[0, 1], [0, 2]])
    with pytest.raises(ValueError, match="doses: .* at least 3 distinct"):
        dose_shape([0, 1, 1], [[0, 1, 1], [0, 2, 2]])
    with pytest.raises(ValueError, match=r"values: need one row of 5 responses"):
        dose_shape(DOSES, [[0, 1, 2]])
    with pytest.raises(ValueError, match="values: 1 seed"):
        dose_shape(DOSES, values[:2])


# ----------------------------------------------------------------------------- sign-flip test


def test_sign_flip_p_counts_the_sign_vectors_by_hand():
    from interp.stats import sign_flip_test

    # of the 8 sign vectors of [1, 2, 3] only +++ and --- reach |mean| 2
    res = sign_flip_test([1.0, 2.0, 3.0])
    assert res == {"observed": 2.0, "p": 2 / 8, "n": 3, "exact": True, "n_sign_vectors": 8, "min_p": 2 / 8}
    # 10 positive seeds: only all-positive and all-negative are as extreme, the smallest p there is
    res = sign_flip_test([0.1 * k + 0.05 for k in range(10)])
    assert res["p"] == 2 / 1024 == res["min_p"] and res["n_sign_vectors"] == 1024
    # symmetric about 0: the observed mean is 0, every sign vector is as extreme
    assert sign_flip_test([-2.0, -1.0, 1.0, 2.0])["p"] == 1.0
    assert sign_flip_test([0.7])["p"] == 1.0  # one seed cannot reject
    assert sign_flip_test([1.0, 1.0, 1.0, -3.0])["p"] == 1.0  # mean 0 with no symmetry of its own
    # [3, 1, 1]: signed sums 5, 3, 3, 1 and mirrors; only +-5 reach |5|: 2/8.
    # [3, 1, -1]: the same sums, observed 3; +-5 and the four +-3 reach it: 6/8
    assert sign_flip_test([3.0, 1.0, 1.0])["p"] == 2 / 8 and sign_flip_test([3.0, 1.0, -1.0])["p"] == 6 / 8


def test_sign_flip_p_is_scipys_exact_paired_permutation_p():
    from scipy import stats

    from interp.stats import sign_flip_test

    rng = np.random.default_rng(3)
    for n in (4, 7, 11):
        x = rng.normal(0.3, 1.0, n)
        want = stats.permutation_test(
            (x,), np.mean, permutation_type="samples", alternative="two-sided", n_resamples=np.inf
        ).pvalue  # exact: all 2^n sign flips
        assert sign_flip_test(x.tolist())["p"] == pytest.approx(want, rel=1e-12)


def test_sign_flip_monte_carlo_agrees_with_the_exact_p_and_is_seeded():
    from interp.stats import sign_flip_test

    rng = np.random.default_rng(5)
    for shift in (0.0, 0.4, 0.8):
        x = (rng.normal(shift, 1.0, 12)).tolist()
        exact = sign_flip_test(x)
        mc = sign_flip_test(x, n_perm=20000, seed=1, max_exact=0)
        assert exact["exact"] and not mc["exact"] and mc["n_sign_vectors"] == 20000
        assert abs(mc["p"] - exact["p"]) < 0.01, (exact["p"], mc["p"])
        assert mc == sign_flip_test(x, n_perm=20000, seed=1, max_exact=0)  # the seed fixes it
    assert sign_flip_test([1.0] * 20, n_perm=999)["p"] == 1 / 1000  # n > 16: sampled, never 0


def test_sign_flip_sees_a_paired_effect_that_seed_offsets_hide_from_the_unpaired_permutation():
    from interp.stats import permutation_test, sign_flip_test

    # each seed has its own base offset (sd 2) shared by both arms; the trait adds 0.5 to every seed
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 2.0, 10)
    trait, ref = (offsets + 0.5 + rng.normal(0, 0.1, 10)).tolist(), offsets.tolist()
    assert sign_flip_test([a - b for a, b in zip(trait, ref)])["p"] == 2 / 1024
    assert permutation_test(trait, ref)["p_value"] > 0.2


def test_sign_flip_refuses_no_values_and_nan():
    from interp.stats import sign_flip_test

    with pytest.raises(ValueError, match="values: need one or more"):
        sign_flip_test([])
    with pytest.raises(ValueError, match="values: .* without NaN"):
        sign_flip_test([1.0, math.nan])

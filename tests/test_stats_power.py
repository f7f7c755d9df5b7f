"""`stats.power_paired_t`: the power of a two-sided paired (one-sample) t-test."""

import numpy as np
import pytest
from scipy import stats

from interp.stats import power_paired_t


def test_power_matches_the_published_value_and_a_simulation():
    # R: power.t.test(n = 10, delta = 1, sd = 1, type = "one.sample") -> 0.803096 (the upper tail
    # only; the lower tail, counted here, adds under 1e-6)
    assert power_paired_t(1.0, 1.0, 10) == pytest.approx(0.803096, abs=2e-6)
    # the same by simulation: 200,000 t-tests of 10 N(0.5, 1) differences, n = 20 below
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.0, size=(200_000, 20))
    t = x.mean(1) / (x.std(1, ddof=1) / np.sqrt(20))
    simulated = float((np.abs(t) > stats.t.ppf(0.975, 19)).mean())
    assert power_paired_t(0.5, 1.0, 20) == pytest.approx(simulated, abs=0.004)  # 4 binomial sd


def test_power_at_no_effect_is_the_level_and_grows_with_seeds():
    assert power_paired_t(0.0, 1.0, 10) == pytest.approx(0.05, abs=1e-12)
    assert power_paired_t(-0.7, 1.0, 10) == pytest.approx(power_paired_t(0.7, 1.0, 10))  # two-sided
    powers = [power_paired_t(0.5, 1.0, n) for n in (3, 10, 20, 40)]
    assert powers == sorted(powers) and powers[-1] > 0.85
    assert power_paired_t(0.5, 1.0, 1) is None and power_paired_t(0.5, 0.0, 10) is None


def test_a_large_effect_has_power_one_not_nan():
    # seen in e23-rank's report: LoRA r64's paired sd 0.107 against a 0.37 target, noncentrality
    # 10.9 at n = 10, where scipy's nct.cdf of the far tail is nan
    assert stats.nct.cdf(-stats.t.ppf(0.975, 9), 9, 12.0) != stats.nct.cdf(-stats.t.ppf(0.975, 9), 9, 12.0)  # nan
    for nc in (12.0, 20.0, 60.0):
        assert power_paired_t(nc, 1.0 * np.sqrt(10), 10) == 1.0
        assert power_paired_t(-nc, 1.0 * np.sqrt(10), 10) == 1.0
    # and where both tails are finite, the mirrored tail is the one nct.cdf gives
    crit = stats.t.ppf(0.975, 9)
    for nc in (0.5, 2.0, 5.0):
        want = stats.nct.sf(crit, 9, nc) + stats.nct.cdf(-crit, 9, nc)
        assert power_paired_t(nc, np.sqrt(10), 10) == pytest.approx(want, rel=1e-12)

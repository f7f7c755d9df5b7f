"""Statistics shared by every experiment: bootstrap, t and exact binomial intervals.

Seeds are the unit of replication; intervals over questions alone understate seed-to-seed noise,
so every interval says what it resamples. Intervals are reported as `{"mean", "ci95": [lo, hi]}`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def bootstrap_ci(values: Tensor, n_boot: int = 2000, seed: int = 0, stat=torch.mean, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over the first dimension."""
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.numel() < 2:
        v = float(stat(values)) if values.numel() else float("nan")
        return v, v
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (n_boot, len(values)), generator=g)
    stats = torch.stack([stat(values[i]) for i in idx]) if stat is not torch.mean else values[idx].mean(-1)
    lo, hi = torch.quantile(stats, torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)).tolist()
    return lo, hi


def summarize(values: Tensor, n_boot: int = 2000, seed: int = 0) -> dict:
    values = torch.as_tensor(values, dtype=torch.float64)
    lo, hi = bootstrap_ci(values, n_boot, seed)
    return {"mean": float(values.mean()), "ci95": [lo, hi], "n": int(values.numel())}


def hierarchical_bootstrap(values: Tensor, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of a (seeds, questions) array with an interval that resamples seeds, then questions.

    Seeds are the unit of replication: with one seed the interval covers question noise only
    (`covers` says which), and it understates seed-to-seed variation.
    """
    x = torch.as_tensor(values, dtype=torch.float64)
    if x.ndim == 1:
        x = x[None]
    n_s, n_q = x.shape
    boots = hierarchical_draws(x, n_boot, seed)
    lo, hi = torch.quantile(boots, torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)).tolist()
    return {"mean": float(x.mean()), "ci95": [lo, hi], "n_seeds": n_s, "n_questions": n_q,
            "covers": "seeds and questions" if n_s > 1 else "questions only"}


def hierarchical_draws(values: Tensor, n_boot: int = 2000, seed: int = 0) -> Tensor:
    """(n_boot,) bootstrap means of a (seeds, questions) array: seeds resampled, then questions
    within each drawn seed (one seed: questions only)."""
    x = torch.as_tensor(values, dtype=torch.float64)
    if x.ndim == 1:
        x = x[None]
    n_s, n_q = x.shape
    g = torch.Generator().manual_seed(seed)
    si = torch.randint(0, n_s, (n_boot, n_s), generator=g) if n_s > 1 else torch.zeros(n_boot, 1, dtype=torch.long)
    qi = torch.randint(0, n_q, (n_boot, n_s, n_q), generator=g)
    return x[si[..., None], qi].mean((-1, -2))


def ratio_interval(a: Tensor, b: Tensor, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """mean(a) / mean(b) for two independent (seeds, questions) arrays, with a percentile interval
    from resampling each hierarchically; also the difference a - b. A ratio whose denominator's
    interval includes 0 is unstable: `denominator_excludes_zero` says whether it does."""
    da = hierarchical_draws(a, n_boot, seed)
    db = hierarchical_draws(b, n_boot, seed + 1)  # independent experiments: independent resamples
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    ma, mb = float(torch.as_tensor(a, dtype=torch.float64).mean()), float(torch.as_tensor(b, dtype=torch.float64).mean())
    b_lo, b_hi = torch.quantile(db, q).tolist()
    return {"ratio": ma / mb if mb != 0 else float("nan"), "ratio_ci95": torch.quantile(da / db, q).tolist(),
            "diff": ma - mb, "diff_ci95": torch.quantile(da - db, q).tolist(),
            "denominator_excludes_zero": b_lo > 0 or b_hi < 0}


def t_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean and Student-t interval over independent replicates (seeds)."""
    from scipy import stats

    x = torch.as_tensor(list(values), dtype=torch.float64)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "ci95": [mean, mean], "sd": None, "n": n}  # one replicate: no spread
    sd = float(x.std(unbiased=True))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "sd": sd, "n": n}


NO_INTERVAL = "n = 1: no interval"


def has_interval(d: dict) -> bool:
    """Whether an interval `{"mean", "ci95", "n"?}` has any spread to report: a t-interval over
    one replicate (`n` 1) is the mean twice, not a 95% interval."""
    return d.get("n", 2) >= 2 or d["ci95"][0] != d["ci95"][1]


def detectable_effect(values: Sequence[float], level: float = 0.95, power: float = 0.8) -> float | None:
    """The smallest true mean a two-sided one-sample t-test over these replicates would detect
    with probability `power` at this level, taking their sd as the truth (the size of effect a
    null result rules out): (t_{1-a/2} + t_{power}) * sd / sqrt(n)."""
    from scipy import stats

    x = torch.as_tensor(list(values), dtype=torch.float64)
    n = len(x)
    if n < 2:
        return None
    df = n - 1
    return float((stats.t.ppf(0.5 + level / 2, df) + stats.t.ppf(power, df)) * x.std(unbiased=True) / math.sqrt(n))


def permutation_test(a: Sequence[float], b: Sequence[float], n_perm: int = 10000, seed: int = 0) -> dict:
    """Two-sided test of mean(a) - mean(b) by shuffling the labels of the pooled replicates
    (students). Exact over all relabellings when there are at most `n_perm` of them."""
    import itertools

    x = torch.tensor(list(a) + list(b), dtype=torch.float64)
    n_a, n = len(a), len(a) + len(b)
    observed = float(x[:n_a].mean() - x[n_a:].mean())
    if math.comb(n, n_a) <= n_perm:
        splits = torch.tensor(list(itertools.combinations(range(n), n_a)))
        exact = True
    else:
        g = torch.Generator().manual_seed(seed)
        splits = torch.stack([torch.randperm(n, generator=g)[:n_a] for _ in range(n_perm)])
        exact = False
    in_a = torch.zeros(len(splits), n, dtype=torch.bool)
    in_a.scatter_(1, splits, True)
    diffs = (x * in_a).sum(1) / n_a - (x * ~in_a).sum(1) / (n - n_a)
    extreme = (diffs.abs() >= abs(observed) - 1e-12).sum().item()
    # a sampled test counts the observed labelling too, so p is never 0
    p = extreme / len(diffs) if exact else (extreme + 1) / (len(diffs) + 1)
    # the smallest p any labelling could reach (two-sided: mirror labellings tie at the extremes)
    floor = (diffs.abs() >= diffs.abs().max() - 1e-12).sum().item()
    min_p = floor / len(diffs) if exact else 1 / (len(diffs) + 1)
    return {"observed": observed, "p_value": p, "n_permutations": len(diffs), "exact": exact, "min_p": min_p}


def label_permutations(n_a: int, n: int, n_perm: int, seed: int) -> Tensor:
    """(n_perm, n) float64 0/1 masks, each choosing `n_a` of `n` pooled rows as group a (seeded):
    the relabellings a two-sample permutation test scores every statistic on."""
    g = torch.Generator().manual_seed(seed)
    in_a = torch.zeros(n_perm, n, dtype=torch.float64)
    in_a.scatter_(1, torch.rand(n_perm, n, generator=g).argsort(-1)[:, :n_a], 1.0)
    return in_a


def mean_differences(values: Tensor, in_a: Tensor) -> Tensor:
    """mean over group a minus mean over the rest, per relabelling: values (n, ...) float64 ->
    (n_perm, ...)."""
    n_a, n = int(in_a[0].sum()), values.shape[0]
    flat = values.reshape(n, -1)
    out = (in_a @ flat) / n_a - ((1 - in_a) @ flat) / (n - n_a)
    return out.reshape(len(in_a), *values.shape[1:])


def binomial_interval(k: int, n: int, chance: float | None = None, level: float = 0.95) -> dict:
    """k successes in n trials: the rate with its exact (Clopper-Pearson) interval, and with
    `chance` the one-sided exact binomial p of doing at least this well by guessing."""
    from scipy import stats

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"k, n: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = 1 - level
    lo = float(stats.beta.ppf(a / 2, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1 - a / 2, k + 1, n - k)) if k < n else 1.0
    out = {"mean": k / n, "ci95": [lo, hi], "k": k, "n": n, "method": "Clopper-Pearson"}
    if chance is not None:
        out["chance"] = chance
        out["p_vs_chance"] = float(stats.binomtest(k, n, chance, alternative="greater").pvalue)
    return out


def two_proportion_interval(k_a: int, n_a: int, k_b: int, n_b: int, level: float = 0.95) -> dict:
    """Difference of two independent proportions k_a/n_a - k_b/n_b (`mean`) with Newcombe's
    hybrid score interval (from the two Wilson intervals; sound at rates near 0), the ratio, and
    the two-sided p of the pooled z-test."""
    from scipy import stats

    for k, n, side in ((k_a, n_a, "a"), (k_b, n_b, "b")):
        if n < 1 or not 0 <= k <= n:
            raise ValueError(f"k_{side}, n_{side}: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    z = float(stats.norm.ppf(0.5 + level / 2))

    def wilson(k: int, n: int) -> tuple[float, float, float]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return p, max(0.0, centre - half), min(1.0, centre + half)

    (pa, la, ua), (pb, lb, ub) = wilson(k_a, n_a), wilson(k_b, n_b)
    d = pa - pb
    lo, hi = d - math.hypot(pa - la, ub - pb), d + math.hypot(ua - pa, pb - lb)
    pooled = (k_a + k_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p_value = float(2 * stats.norm.sf(abs(d) / se)) if se > 0 else 1.0
    return {"mean": d, "ci95": [lo, hi], "rate_a": pa, "rate_b": pb, "k_a": k_a, "n_a": n_a, "k_b": k_b, "n_b": n_b,
            "ratio": pa / pb if pb > 0 else None, "p_value": p_value,
            "method": "Newcombe hybrid score"}

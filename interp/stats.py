"""Statistics shared by every experiment: bootstrap, t and exact binomial intervals.

Seeds are the unit of replication; intervals over questions alone understate seed-to-seed noise,
so every interval says what it resamples. Intervals are reported as `{"mean", "ci95": [lo, hi]}`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def bootstrap_ci(
    values: Tensor, n_boot: int = 2000, seed: int = 0, stat=torch.mean, level: float = 0.95
) -> tuple[float, float]:
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
    return {
        "mean": float(x.mean()),
        "ci95": [lo, hi],
        "n_seeds": n_s,
        "n_questions": n_q,
        "covers": "seeds and questions" if n_s > 1 else "questions only",
    }


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
    ma, mb = (
        float(torch.as_tensor(a, dtype=torch.float64).mean()),
        float(torch.as_tensor(b, dtype=torch.float64).mean()),
    )
    b_lo, b_hi = torch.quantile(db, q).tolist()
    return {
        "ratio": ma / mb if mb != 0 else float("nan"),
        "ratio_ci95": torch.quantile(da / db, q).tolist(),
        "diff": ma - mb,
        "diff_ci95": torch.quantile(da - db, q).tolist(),
        "denominator_excludes_zero": b_lo > 0 or b_hi < 0,
    }


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


def power_paired_t(effect: float, sd: float, n: int, level: float = 0.95) -> float | None:
    """Power of a two-sided one-sample t-test over `n` replicates (paired differences, one per
    seed) at this level, when their true mean is `effect` and their sd `sd`: P(|T| > t_{1-a/2})
    with T noncentral t (df n - 1, noncentrality effect / (sd / sqrt(n))), both tails counted.
    None without a spread to scale by (n < 2, or sd 0)."""
    from scipy import stats

    if n < 2 or not sd > 0:
        return None
    df, nc = n - 1, effect / (sd / math.sqrt(n))
    crit = stats.t.ppf(0.5 + level / 2, df)
    # the far tail as the upper tail of the mirrored distribution: scipy's nct.cdf(-crit) is nan
    # for large noncentralities (about 11 and above at df 9), where this is 0 to the double
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


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


SIGN_FLIP_MAX_EXACT = 16  # 2^16 sign vectors x 16 seeds: a few MB, exact in milliseconds


def sign_flip_test(
    values: Sequence[float], n_perm: int = 10000, seed: int = 0, max_exact: int = SIGN_FLIP_MAX_EXACT
) -> dict:
    """Two-sided paired test over replicates (seeds): `values` are per-seed paired differences, H0
    that they are symmetric about 0, so each one's sign may be flipped. Exact over all 2^n sign
    vectors when n <= `max_exact`, else `n_perm` seeded random ones (the observed signs counted
    too, so p > 0). Unlike `permutation_test`, a seed's own offset (its base, its prompts) cancels
    in its difference: the test compares seeds with themselves."""
    x = torch.tensor([float(v) for v in values], dtype=torch.float64)
    n = len(x)
    if n < 1 or bool(torch.isnan(x).any()):
        raise ValueError(f"values: need one or more per-seed differences without NaN, got {list(values)}")
    observed = float(x.mean())
    exact = n <= max_exact
    if exact:
        bits = torch.arange(2**n)[:, None] >> torch.arange(n)[None]
        signs = 1.0 - 2.0 * (bits & 1).to(torch.float64)  # every sign vector, all +1 first
    else:
        g = torch.Generator().manual_seed(seed)
        signs = 1.0 - 2.0 * torch.randint(0, 2, (n_perm, n), generator=g).to(torch.float64)
    means = (signs * x).mean(1).abs()
    extreme = int((means >= abs(observed) - 1e-12).sum())
    p = extreme / len(means) if exact else (extreme + 1) / (len(means) + 1)
    # the smallest p any data could reach: exact, the all-same-sign vector and its mirror tie
    min_p = 2 / 2**n if exact else 1 / (len(means) + 1)
    return {
        "observed": observed,
        "p": p,
        "n": n,
        "exact": exact,
        "n_sign_vectors": len(means),
        "min_p": min(min_p, 1.0),
    }


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
    return {
        "mean": d,
        "ci95": [lo, hi],
        "rate_a": pa,
        "rate_b": pb,
        "k_a": k_a,
        "n_a": n_a,
        "k_b": k_b,
        "n_b": n_b,
        "ratio": pa / pb if pb > 0 else None,
        "p_value": p_value,
        "method": "Newcombe hybrid score",
    }


def _ols(x: Tensor, y: Tensor) -> tuple[float, float, float]:
    """Least-squares (intercept, slope, residual sum of squares) of y on x."""
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    intercept = float(y.mean()) - slope * float(x.mean())
    return intercept, slope, float(((y - intercept - slope * x) ** 2).sum())


# The rule that calls a dose-response linear or not, fixed before any E4 data were read:
# per seed, the least-squares slope over the lower half of the doses (up to and including the
# middle dose) and over the upper half (from the middle dose on); the seeds' slope change
# (upper - lower) gets a t-interval. "threshold": the interval lies above 0 (the response steepens
# with the dose, flat or shallow below some dose); "saturating": below 0; "linear": it holds 0, and
# the steepening a null could miss is the change detectable at 80% power. The per-seed hinge fits
# (y = a + b * max(0, x - t), t at each inner dose) are reported beside it, not used to decide.
SHAPE_RULE = (
    "slope over the upper half of the doses minus over the lower half (the middle dose in both), "
    "t-interval over seeds: above 0 threshold, below 0 saturating, else linear"
)


def dose_shape(
    doses: Sequence[float], values: Sequence[Sequence[float]], level: float = 0.95, power: float = 0.8
) -> dict:
    """Is a dose-response linear, or does it have a threshold? `values[s][i]` is seed s's response
    at `doses[i]` (a seed with any NaN is dropped). Returns the pooled Pearson r and slope over
    every (dose, value), the per-seed slope's t-interval, the slope change between the upper and
    lower halves of the doses per seed with its t-interval and detectable effect, the verdict by
    `SHAPE_RULE`, and each seed's best hinge against its line (BIC, the threshold a parameter)."""
    x = torch.tensor(list(doses), dtype=torch.float64)
    order = torch.argsort(x)
    x = x[order]
    if len(x) < 3 or len(set(x.tolist())) != len(x):
        raise ValueError(f"doses: {list(doses)} must hold at least 3 distinct doses")
    y = torch.as_tensor([list(v) for v in values], dtype=torch.float64)
    if y.ndim != 2 or y.shape[1] != len(x):
        raise ValueError(
            f"values: need one row of {len(x)} responses (one per dose) per seed, got shape {tuple(y.shape)}"
        )
    y = y[:, order]
    kept = ~torch.isnan(y).any(1)
    y = y[kept]
    if len(y) < 2:
        raise ValueError(f"values: {int(kept.sum())} seed(s) without NaN; the shape needs at least 2 seeds")
    mid, n = len(x) // 2, len(x)

    def bic(sse: float, k: int) -> float:
        return n * math.log(max(sse, 1e-300) / n) + k * math.log(n)

    slopes, changes, seeds = [], [], []
    for row in y:
        _, b, sse_lin = _ols(x, row)
        _, b_lo, _ = _ols(x[: mid + 1], row[: mid + 1])
        _, b_hi, _ = _ols(x[mid:], row[mid:])
        hinges = [(float(t), _ols(torch.clamp(x - t, min=0), row)) for t in x[1:-1]]
        t_best, (_, b_h, sse_h) = min(hinges, key=lambda h: h[1][2])
        slopes.append(b)
        changes.append(b_hi - b_lo)
        seeds.append(
            {
                "slope": b,
                "slope_lower": b_lo,
                "slope_upper": b_hi,
                "hinge_threshold": t_best,
                "hinge_slope": b_h,
                "sse_linear": sse_lin,
                "sse_hinge": sse_h,
                "hinge_preferred": bic(sse_h, 3) < bic(sse_lin, 2),
            }
        )
    xs, ys = x.repeat(len(y)), y.reshape(-1)
    xc, yc = xs - xs.mean(), ys - ys.mean()
    denom = float(xc.norm() * yc.norm())
    change = t_interval(changes, level)
    lo, hi = change["ci95"]
    tol = 1e-9 * max(abs(b) for b in slopes)  # rounding in an exactly linear response is not a shape
    verdict = "threshold" if lo > tol else "saturating" if hi < -tol else "linear"
    return {
        "doses": x.tolist(),
        "n_seeds": len(y),
        "n_dropped": int((~kept).sum()),
        "r": float((xc * yc).sum()) / denom if denom > 0 else None,
        "slope": _ols(xs, ys)[1],
        "slope_per_seed": t_interval(slopes, level),
        "slope_change": change,
        "slope_change_detectable": detectable_effect(changes, level, power),
        "verdict": verdict,
        "rule": SHAPE_RULE,
        "hinge_preferred": sum(s["hinge_preferred"] for s in seeds),
        "per_seed": seeds,
    }

"""Statistics across seed replicates, all from scipy.stats: summaries of one configuration (mean, sample
std, Student-t interval of the mean) and comparisons of two (paired t-test on per-seed differences,
Welch's t-test, percentile bootstrap, probability of improvement, Holm's correction, seeds needed for a
given power).

Values are plain floats in the metric's own units; nothing here rounds. A test or interval that cannot
be computed (too few values, zero variance) is None, never NaN.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

# Resampling seed of every bootstrap interval: a fixed generator makes the interval a pure function of
# the data (the same command prints the same interval twice). Documented in README and --help.
BOOTSTRAP_SEED = 20240229
BOOTSTRAP_RESAMPLES = 9999

# Where each metric lives: EER and minDCF are fractions in [0, 1] (minDCF is normalised so that a
# system that always accepts or always rejects scores 1); actDCF is normalised the same way but can
# exceed 1 when miscalibrated; Cllr is >= 0. An interval crossing these bounds is flagged, not clipped.
METRIC_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "eer": (0.0, 1.0), "min_dcf": (0.0, 1.0), "act_dcf": (0.0, None), "cllr": (0.0, None),
    "act_dcf_cal": (0.0, None), "cllr_cal": (0.0, None), "min_cllr": (0.0, 1.0)}  # minCllr <= 1: PAV never loses to "don't know"
_EER_GROUPS = ("attack_eer", "corpus_codec_eer")  # per-attack / per-corpus-codec EER tables


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with `df` degrees of freedom."""
    return float(stats.t.ppf(p, df))


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t with `df` degrees of freedom."""
    return float(stats.t.cdf(t, df))


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict:
    """mean, std (n-1), t-interval for the mean, min, max, n. With one value, std and CI are None."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = math.fsum(x) / n  # fsum: the mean does not depend on the replicates' order
    out = {"n": n, "mean": mean, "min": float(x.min()), "max": float(x.max()), "std": None, "ci_low": None, "ci_high": None}
    if n > 1:
        std = float(np.std(x, ddof=1))
        half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
        out.update(std=std, ci_low=mean - half, ci_high=mean + half)
    return out


def metric_bounds(metric: str) -> tuple[float | None, float | None]:
    """(lower, upper) bound of a metric named by its dotted path (`pooled.eer`, `attack_eer.A01`, ...);
    (None, None) for metrics without known bounds (counts, for example)."""
    parts = metric.split(".")
    if parts[0] in _EER_GROUPS:
        return METRIC_BOUNDS["eer"]
    return METRIC_BOUNDS.get(parts[-1], (None, None))


def is_eer(metric: str) -> bool:
    """Whether a metric path names an EER (a fraction that people read in percent)."""
    parts = metric.split(".")
    return parts[-1] == "eer" or parts[0] in _EER_GROUPS


def crosses_bounds(low: float | None, high: float | None, bounds: tuple[float | None, float | None]) -> bool:
    """True when the interval [low, high] reaches outside the metric's possible values."""
    lo_bound, hi_bound = bounds
    return (low is not None and lo_bound is not None and low < lo_bound) or (
        high is not None and hi_bound is not None and high > hi_bound)


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def paired_test(group: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict:
    """Paired t-test of group - baseline over seeds present in both (same order): mean difference, its
    t-interval, two-sided p. With zero variance of the differences p and the interval are None."""
    res = stats.ttest_rel(group, baseline)
    ci = res.confidence_interval(confidence)
    diff = float(np.mean(np.subtract(group, baseline)))
    return _test_result("paired", diff, res.pvalue, ci)


def welch_test(group: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict:
    """Welch's unequal-variance t-test of mean(group) - mean(baseline), its interval and two-sided p."""
    res = stats.ttest_ind(group, baseline, equal_var=False)
    ci = res.confidence_interval(confidence)
    diff = float(np.mean(group) - np.mean(baseline))
    return _test_result("welch", diff, res.pvalue, ci)


def _test_result(test: str, diff: float, p: float, ci) -> dict:
    low, high = _finite(ci.low), _finite(ci.high)
    return {"test": test, "diff": diff, "p": _finite(p),
            "ci": None if low is None or high is None else [low, high]}


def _mean_difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def bootstrap_ci(group: Sequence[float], baseline: Sequence[float], paired: bool,
                 confidence: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of mean(group) - mean(baseline), resampled with BOOTSTRAP_SEED.
    Paired: the per-seed differences are resampled; unpaired: each group is resampled on its own."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    if paired:
        data, statistic = (np.subtract(group, baseline),), np.mean
    else:
        data, statistic = (np.asarray(group, float), np.asarray(baseline, float)), _mean_difference
    res = stats.bootstrap(data, statistic, n_resamples=BOOTSTRAP_RESAMPLES, paired=False, vectorized=True,
                          confidence_level=confidence, method="percentile", rng=rng)
    low, high = _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)
    return None if low is None or high is None else [low, high]


def prob_improvement(group: Sequence[float], baseline: Sequence[float], paired: bool) -> float:
    """P(group < baseline) over seed pairs, ties counting one half (lower is better for every metric
    here). Paired: over the shared seeds; unpaired: over every (group, baseline) pair."""
    g, b = np.asarray(group, float), np.asarray(baseline, float)
    if not paired:
        g, b = g[:, None], b[None, :]
    return float(np.mean((g < b) + 0.5 * (g == b)))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None entries are not part of the family)."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    m, running = len(present), 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))  # adjusted p-values never decrease with rank
        out[i] = running
    return out


def power_t(n: int, delta: float, sd: float, paired: bool, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test to detect a true difference `delta` with `n` seeds (paired: n
    shared seeds, sd of the differences; unpaired: n seeds per group, sd of each group, Student's
    equal-variance test as the approximation of Welch's), from the noncentral t distribution."""
    if paired:
        df, nc = n - 1, delta * math.sqrt(n) / sd
    else:
        df, nc = 2 * n - 2, delta / (sd * math.sqrt(2 / n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(delta: float, sd: float, paired: bool, alpha: float = 0.05, power: float = 0.8,
                 limit: int = 1_000_000) -> int | None:
    """Smallest n (>= 2) whose t-test reaches `power` for a difference `delta` (see power_t); None when
    even `limit` seeds are not enough. With sd == 0 any difference is found with 2 seeds."""
    if sd == 0:
        return 2
    if power_t(2, delta, sd, paired, alpha) >= power:
        return 2
    lo, hi = 2, 4  # power grows with n: double until reached, then bisect
    while power_t(hi, delta, sd, paired, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > limit:
            return None if power_t(limit, delta, sd, paired, alpha) < power else _bisect(lo, limit, delta, sd, paired, alpha, power)
    return _bisect(lo, hi, delta, sd, paired, alpha, power)


def _bisect(lo: int, hi: int, delta: float, sd: float, paired: bool, alpha: float, power: float) -> int:
    while hi - lo > 1:  # invariant: power(lo) < target <= power(hi)
        mid = (lo + hi) // 2
        if power_t(mid, delta, sd, paired, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi

"""Score calibration: raw detector scores -> log-likelihood ratios, and the calibration-free Cllr floor.

* `fit_logistic(bona, spoof)` — linear logistic-regression calibration as in BOSARIS `train_llr_fusion`
  and pyllr: find (a, b) minimising the prior-weighted cross-entropy

      P/N_B · Σ_B log(1 + e^-(a·s + b + logit P)) + (1-P)/N_S · Σ_S log(1 + e^(a·s + b + logit P))

  where P is the effective bona fide prior of the ASVspoof 5 operating point
  (C_miss·P_bona / (C_miss·P_bona + C_fa·P_spoof) = 0.655). The logit(P) offset sits inside the loss,
  so `a·s + b` is a log-likelihood ratio (independent of the prior), ready for actDCF and Cllr.
  Solved by Newton's method in float64 from a fixed start, a fixed iteration cap and step halving: the
  same scores give the same (a, b) to the bit.
* `min_cllr(bona, spoof)` — Cllr after the optimal monotone calibration, found by the pool-adjacent-
  violators algorithm (PAV) on the scores (tied scores share one output): the floor no calibration of
  these scores can beat.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from antispoof.errors import DataError
from antispoof.metrics import C_FA, C_MISS, P_SPOOF, _scores

METHODS = ("none", "logistic")
MAX_ITERATIONS = 100
GRADIENT_TOLERANCE = 1e-12


def effective_prior(p_spoof: float = P_SPOOF, c_miss: float = C_MISS, c_fa: float = C_FA) -> float:
    """Bona fide prior that folds the costs in: the operating point actDCF's threshold is set for."""
    w_miss, w_fa = c_miss * (1.0 - p_spoof), c_fa * p_spoof
    return w_miss / (w_miss + w_fa)


def _weighted_loss(params: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, offset: float):
    """Loss, gradient and Hessian of the weighted logistic loss in (a, b); y = +1 bona fide, -1 spoof."""
    a, b = params
    z = y * (a * x + b + offset)
    loss = float(np.sum(w * np.logaddexp(0.0, -z)))
    # d/dz log(1+e^-z) = -sigmoid(-z); second derivative sigmoid(z)·sigmoid(-z)
    s_neg = np.exp(-np.logaddexp(0.0, z))       # sigmoid(-z), stable for any z
    h = w * s_neg * (1.0 - s_neg)
    g_z = -w * s_neg * y
    grad = np.array([np.sum(g_z * x), np.sum(g_z)])
    hess = np.array([[np.sum(h * x * x), np.sum(h * x)], [np.sum(h * x), np.sum(h)]])
    return loss, grad, hess


def fit_logistic(bona: Any, spoof: Any, prior: float | None = None) -> tuple[float, float]:
    """(slope a, offset b) of the linear calibration llr = a·score + b, fitted by prior-weighted
    logistic regression at `prior` (default: the ASVspoof 5 effective prior). Deterministic."""
    b_scores, s_scores = _scores(bona, "bona fide"), _scores(spoof, "spoof")
    prior = effective_prior() if prior is None else prior
    x = np.concatenate([b_scores, s_scores])
    y = np.concatenate([np.ones(b_scores.size), -np.ones(s_scores.size)])
    w = np.concatenate([np.full(b_scores.size, prior / b_scores.size),
                        np.full(s_scores.size, (1.0 - prior) / s_scores.size)])
    offset = math.log(prior / (1.0 - prior))
    # Centre and scale the scores so Newton's steps are well conditioned; map back at the end.
    centre, scale = float(np.mean(x)), float(np.std(x)) or 1.0
    xs = (x - centre) / scale
    theta = np.array([0.0, 0.0])
    loss, grad, hess = _weighted_loss(theta, xs, y, w, offset)
    for _ in range(MAX_ITERATIONS):
        if float(np.max(np.abs(grad))) < GRADIENT_TOLERANCE:
            break
        try:
            step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        for _ in range(60):  # step halving: the loss never increases
            candidate = theta - t * step
            c_loss, c_grad, c_hess = _weighted_loss(candidate, xs, y, w, offset)
            if c_loss <= loss:
                break
            t /= 2
        else:
            break
        if c_loss == loss and np.array_equal(candidate, theta):
            break
        theta, loss, grad, hess = candidate, c_loss, c_grad, c_hess
    a_s, b_s = float(theta[0]), float(theta[1])
    return a_s / scale, b_s - a_s * centre / scale


def apply(scores: Any, slope: float, offset: float) -> np.ndarray:
    """Calibrated log-likelihood ratios of raw `scores`."""
    return slope * np.asarray(scores, dtype=np.float64) + offset


def pav(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) least-squares fit of `values` in the given order, by the
    pool-adjacent-violators algorithm: a stack of blocks (mean, weight, length), merged while they
    violate the order."""
    means: list[float] = []
    wts: list[float] = []
    lens: list[int] = []
    for v, w in zip(values.tolist(), weights.tolist()):
        means.append(v), wts.append(w), lens.append(1)
        while len(means) > 1 and means[-2] >= means[-1]:
            w_sum = wts[-2] + wts[-1]
            m = (means[-2] * wts[-2] + means[-1] * wts[-1]) / w_sum
            n = lens[-2] + lens[-1]
            del means[-1], wts[-1], lens[-1]
            means[-1], wts[-1], lens[-1] = m, w_sum, n
    return np.repeat(np.array(means), lens)


def min_cllr(bona: Any, spoof: Any) -> float:
    """Cllr (bits) of the optimally (monotonically) calibrated scores: PAV posteriors at the empirical
    prior, turned into LLRs by removing the prior's log-odds. Tied scores are pooled first, since a
    calibration is a function of the score."""
    b, s = _scores(bona, "bona fide"), _scores(spoof, "spoof")
    scores = np.concatenate([b, s])
    is_bona = np.concatenate([np.ones(b.size), np.zeros(s.size)])
    unique, inverse = np.unique(scores, return_inverse=True)
    n_b = np.bincount(inverse, weights=is_bona, minlength=unique.size)
    n_all = np.bincount(inverse, minlength=unique.size).astype(np.float64)
    posterior = pav(n_b / n_all, n_all)          # P(bona fide | score block), non-decreasing
    n_s = n_all - n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - math.log(b.size / s.size)
        # Blocks with no trial of a class contribute nothing to its cost (avoids 0·inf).
        cost_b = np.where(n_b > 0, n_b * np.logaddexp(0.0, -llr), 0.0).sum() / b.size
        cost_s = np.where(n_s > 0, n_s * np.logaddexp(0.0, llr), 0.0).sum() / s.size
    return float((cost_b + cost_s) / (2.0 * math.log(2.0)))


def require_both_classes(bona: np.ndarray, spoof: np.ndarray, where: str) -> None:
    if bona.size == 0 or spoof.size == 0:
        missing = "bona fide" if bona.size == 0 else "spoof"
        raise DataError(f"{where}: no {missing} utterance to fit the calibration on; set evaluate.calibration: none "
                        "or give the dev split both classes")

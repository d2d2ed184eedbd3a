"""Calibration: the dev-fitted logistic map and minCllr (PAV), against independent implementations here."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from antispoof import calibration, metrics
from antispoof.errors import ParamError
from antispoof.params import validate

from conftest import default_params

# ASVspoof 5 operating point, written out here rather than imported: P_spoof 0.05, C_miss 1, C_fa 10.
PRIOR = 0.95 * 1 / (0.95 * 1 + 0.05 * 10)


def reference_logistic(bona: np.ndarray, spoof: np.ndarray, prior: float) -> np.ndarray:
    """Prior-weighted logistic regression by scipy's BFGS with an analytic gradient (pyllr's form:
    the logit(prior) offset inside the loss, so a·s + b is an LLR)."""
    logit = math.log(prior / (1 - prior))

    def loss(t):
        lb = t[0] * bona + t[1] + logit
        ls = t[0] * spoof + t[1] + logit
        value = prior * np.mean(np.logaddexp(0, -lb)) + (1 - prior) * np.mean(np.logaddexp(0, ls))
        gb = -prior / bona.size * (1 / (1 + np.exp(lb)))
        gs = (1 - prior) / spoof.size * (1 / (1 + np.exp(-ls)))
        return value, np.array([np.sum(gb * bona) + np.sum(gs * spoof), np.sum(gb) + np.sum(gs)])

    return minimize(loss, np.array([1.0, 0.0]), jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 10000}).x


def random_sets(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_b, n_s = rng.integers(20, 400, size=2)
    scale, shift = rng.uniform(0.2, 8), rng.uniform(-6, 6)
    return rng.normal(shift + 2, scale, n_b), rng.normal(shift - 1, scale * rng.uniform(0.5, 2), n_s)


@pytest.mark.parametrize("seed", range(6))
def test_logistic_calibration_matches_an_independent_optimiser(seed):
    bona, spoof = random_sets(seed)
    a, b = calibration.fit_logistic(bona, spoof)
    ref = reference_logistic(bona, spoof, PRIOR)
    assert a == pytest.approx(ref[0], rel=1e-5, abs=1e-7)
    assert b == pytest.approx(ref[1], rel=1e-5, abs=1e-6)
    assert calibration.effective_prior() == pytest.approx(PRIOR, rel=1e-15)


def test_logistic_calibration_is_bit_reproducible_and_lowers_actdcf_and_cllr_on_held_out_scores():
    rng = np.random.default_rng(11)
    # Scores that rank well but are badly calibrated: 4x too confident and shifted towards "bona fide" by 8.
    def draw(n):
        return 4 * rng.normal(0.8, 1, n) + 8, 4 * rng.normal(-0.8, 1, n) + 8

    dev, held_out = draw(500), draw(2000)
    first, second = calibration.fit_logistic(*dev), calibration.fit_logistic(*dev)
    assert np.array([first]).tobytes() == np.array([second]).tobytes()
    raw_dcf, raw_cllr = metrics.act_dcf(*held_out), metrics.cllr(*held_out)
    cal = [calibration.apply(x, *first) for x in held_out]
    assert metrics.act_dcf(*cal) < raw_dcf
    assert metrics.cllr(*cal) < 1 < raw_cllr


def reference_isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares under y_1 <= ... <= y_n, as a bound-constrained problem: x_1 free,
    increments >= 0 (L-BFGS-B)."""
    n = y.size

    def loss(v):
        x = np.cumsum(v)
        r = x - y
        g = 2 * w * r
        return float(np.sum(w * r * r)), np.cumsum(g[::-1])[::-1]

    start = np.concatenate([[y.min()], np.zeros(n - 1)])
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0, None)] * (n - 1),
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000})
    return np.cumsum(res.x)


@pytest.mark.parametrize("seed", range(5))
def test_pav_is_the_weighted_isotonic_least_squares_fit(seed):
    rng = np.random.default_rng(seed)
    y, w = rng.normal(size=25), rng.uniform(0.5, 3, 25)
    fit = calibration.pav(y, w)
    assert np.all(np.diff(fit) >= 0)
    np.testing.assert_allclose(fit, reference_isotonic(y, w), atol=1e-5)


def reference_min_cllr(bona: np.ndarray, spoof: np.ndarray, bound: float = 30.0) -> float:
    """min over non-decreasing maps of the score (one LLR per distinct score) of Cllr, by L-BFGS-B with
    LLRs bounded to ±bound (the optimum may sit at ±inf; e^-30 is negligible)."""
    values = np.unique(np.concatenate([bona, spoof]))
    ib, is_ = np.searchsorted(values, bona), np.searchsorted(values, spoof)
    n = values.size

    def cllr_of(v):
        llr = np.cumsum(v)
        c = (np.mean(np.logaddexp(0, -llr[ib])) + np.mean(np.logaddexp(0, llr[is_]))) / (2 * math.log(2))
        gb = -1 / (1 + np.exp(llr[ib])) / bona.size
        gs = 1 / (1 + np.exp(-llr[is_])) / spoof.size
        g = (np.bincount(ib, gb, n) + np.bincount(is_, gs, n)) / (2 * math.log(2))
        return c, np.cumsum(g[::-1])[::-1]

    start = np.concatenate([[-1.0], np.full(n - 1, 2.0 / n)])
    bounds = [(-bound, bound)] + [(0, 2 * bound)] * (n - 1)
    return float(minimize(cllr_of, start, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 50000}).fun)


@pytest.mark.parametrize("seed", range(5))
def test_min_cllr_matches_a_direct_minimisation_over_monotone_maps(seed):
    rng = np.random.default_rng(100 + seed)
    # Rounded scores: ties between and within classes, which a calibration must map to one value.
    bona = np.round(rng.normal(1, 1.5, rng.integers(10, 40)), 1)
    spoof = np.round(rng.normal(-1, 1.5, rng.integers(10, 40)), 1)
    got = calibration.min_cllr(bona, spoof)
    assert got == pytest.approx(reference_min_cllr(bona, spoof), abs=1e-5)
    a, b = calibration.fit_logistic(bona, spoof)
    assert got <= metrics.cllr(*(calibration.apply(x, a, b) for x in (bona, spoof))) + 1e-12
    assert got <= metrics.cllr(bona, spoof)


def test_min_cllr_edge_cases():
    assert calibration.min_cllr([1.0, 2.0], [-1.0, 0.5]) == 0.0       # separable: no cost
    assert calibration.min_cllr([0.3] * 4, [0.3] * 7) == pytest.approx(1.0, abs=1e-12)  # no information: 1 bit


def test_calibration_param_is_validated():
    params = default_params()
    assert params["evaluate"]["calibration"] == "logistic"
    params["evaluate"]["calibration"] = "isotonic"
    with pytest.raises(ParamError, match="evaluate.calibration"):
        validate(params)

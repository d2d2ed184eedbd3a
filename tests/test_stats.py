"""Seed statistics: t quantiles against published table values, intervals on hand-computed cases."""
from __future__ import annotations

import math

import pytest

from antispoof.aggregate import aggregate
from antispoof.stats import summarize, t_cdf, t_quantile


@pytest.mark.parametrize("df, q975", [(1, 12.706), (2, 4.303), (4, 2.776), (5, 2.571), (10, 2.228), (30, 2.042), (10**6, 1.960)])
def test_t_quantile_matches_tables(df, q975):
    assert t_quantile(0.975, df) == pytest.approx(q975, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q975, abs=5e-4)


def test_t_cdf_symmetry_and_centre():
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    assert t_cdf(1.3, 7) + t_cdf(-1.3, 7) == pytest.approx(1.0)
    # df = 1 is the Cauchy distribution: CDF(t) = 1/2 + atan(t)/pi
    assert t_cdf(2.0, 1) == pytest.approx(0.5 + math.atan(2.0) / math.pi, abs=1e-12)


def test_summarize_hand_case():
    s = summarize([0.1, 0.2, 0.3], 0.95)
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1)
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert s["ci_low"] == pytest.approx(0.2 - half, abs=1e-6) and s["ci_high"] == pytest.approx(0.2 + half, abs=1e-6)
    assert (s["min"], s["max"]) == (0.1, 0.3)


def test_single_replicate_has_no_spread():
    s = summarize([0.25])
    assert s["mean"] == 0.25 and s["std"] is None and s["ci_low"] is None


def test_aggregate_per_condition_and_seeds():
    evals = {r: {"pooled": {m: 0.1 * (r + 1) for m in ("eer", "min_dcf", "act_dcf", "cllr")},
                 "clean": {m: 0.05 for m in ("eer", "min_dcf", "act_dcf", "cllr")}, "attack_eer": {"A01": 0.1}}
             for r in range(3)}
    trains = {r: {"effective_seed": s} for r, s in enumerate([42, 7, 9])}
    agg = aggregate(evals, trains, 0.95)
    assert agg["pooled"]["eer"]["mean"] == pytest.approx(0.2) and agg["pooled"]["eer"]["std"] == pytest.approx(0.1)
    assert agg["clean"]["eer"]["std"] == 0.0
    assert agg["replicates"] == {"n": 3, "effective_seeds": [42, 7, 9], "confidence": 0.95}
    assert "attack_eer" not in agg


def test_group_table_reports_mean_std_and_each_replicate():
    from antispoof.aggregate import group_table

    evals = {0: {"corpus_codec_eer": {"C01": 0.1, "C05": 0.3}}, 1: {"corpus_codec_eer": {"C01": 0.2}}}
    lines = group_table("EER per codec", "codec", "corpus_codec_eer", evals)
    assert "| codec | mean ± std | r0 | r1 |" in lines
    assert "| C01 | 15.000 ± 7.071 | 10.000 | 20.000 |" in lines  # std of (10, 20) = 7.071
    assert "| C05 | 30.000 ± – | 30.000 | – |" in lines
    assert group_table("x", "codec", "corpus_codec_eer", {0: {}}) == []


def test_eval_metrics_keeps_corpus_codecs_only_when_present():
    from antispoof.evaluate import eval_metrics

    m = {"eer": 0.1, "min_dcf": 0.2, "act_dcf": 0.3, "cllr": 0.4, "n_bonafide": 5, "n_spoof": 6}
    result = {"pooled": m, "by_condition": {"clean": m}}
    out = eval_metrics(result, {"A01": {"eer": 0.05}}, {})
    assert set(out) == {"pooled", "clean", "attack_eer"}
    out = eval_metrics(result, {}, {"C05": {"eer": 0.25}})
    assert out["corpus_codec_eer"] == {"C05": 0.25}

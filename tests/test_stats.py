"""Seed statistics: t quantiles against published table values, intervals on hand-computed cases."""
from __future__ import annotations

import json
import math

import numpy as np
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


# --- scipy-based statistics (issue 11) -------------------------------------------------------------

from antispoof import stats  # noqa: E402


@pytest.mark.parametrize("p", [0.9, 0.95, 0.975, 0.995])
def test_t_quantile_closed_forms(p):
    # df = 1 (Cauchy): tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p))
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)


def test_aggregate_numbers_unchanged_against_the_committed_results():
    """metrics/aggregate.json as committed (written by the hand-written t code this module replaced, or
    since by this one) equals aggregate() on the committed per-replicate files, within 1e-12."""
    import subprocess

    import yaml

    from conftest import REPO

    def show(path):
        proc = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"no committed {path}")
        return proc.stdout

    params = yaml.safe_load(show("params.yaml"))
    evals = {r: json.loads(show(f"metrics/eval/r{r}.json"))[f"eval_r{r}"] for r in params["replicates"]}
    trains = {r: json.loads(show(f"metrics/train/r{r}.json"))[f"train_r{r}"] for r in params["replicates"]}
    committed = json.loads(show("metrics/aggregate.json"))["aggregate"]
    new = aggregate(evals, trains, params["aggregate"]["confidence"])
    assert new.keys() == committed.keys()
    for cond, block in committed.items():
        if cond == "replicates":
            assert new[cond] == block
            continue
        for m, s in block.items():
            for k, v in s.items():
                assert new[cond][m][k] == pytest.approx(v, abs=1e-12), (cond, m, k)


def test_holm_step_down_hand_case():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert stats.holm([0.04, None, 0.01, 0.03]) == pytest.approx([0.06, None, 0.03, 0.06])
    assert stats.holm([0.4, 0.9]) == [0.8, 0.9]
    assert stats.holm([]) == [] and stats.holm([None]) == [None]


def test_probability_of_improvement_counts_ties_half():
    assert stats.prob_improvement([1, 2, 3], [2, 2, 2], paired=True) == pytest.approx((1 + 0.5 + 0) / 3)
    # unpaired: all 6 pairs (g, b): 1<2, 1<4, 3>2, 3<4, 2=2 (half), 2<4
    assert stats.prob_improvement([1, 3, 2], [2, 4], paired=False) == pytest.approx(4.5 / 6)


@pytest.mark.parametrize("paired, d, n", [(True, 1.0, 10), (True, 0.5, 34), (False, 1.0, 17), (False, 0.5, 64)])
def test_seeds_needed_matches_published_sample_sizes(paired, d, n):
    # Cohen's tables / G*Power, alpha 0.05 two-sided, power 0.8: one-sample (paired) d = 1 -> 10,
    # d = 0.5 -> 34; two-sample per group d = 1 -> 17, d = 0.5 -> 64
    assert stats.seeds_needed(d * 0.02, 0.02, paired) == n


def test_zero_variance_gives_no_p_and_bootstrap_is_deterministic():
    assert stats.paired_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])["p"] is None
    a, b = [0.10, 0.14, 0.12, 0.18], [0.15, 0.16, 0.11, 0.2]
    first = stats.bootstrap_ci(a, b, paired=True)
    assert first == stats.bootstrap_ci(a, b, paired=True) and first[0] < np.mean(np.subtract(a, b)) < first[1]
    assert stats.bootstrap_ci(a, b, paired=False) != first


def test_bounds_are_flagged_by_metric_name():
    assert stats.metric_bounds("pooled.eer") == (0.0, 1.0) and stats.metric_bounds("attack_eer.A01") == (0.0, 1.0)
    assert stats.metric_bounds("clean.cllr") == (0.0, None) and stats.metric_bounds("pooled.n_spoof") == (None, None)
    assert stats.crosses_bounds(-0.01, 0.2, (0.0, 1.0)) and stats.crosses_bounds(0.5, 1.2, (0.0, 1.0))
    assert not stats.crosses_bounds(0.0, 1.0, (0.0, 1.0)) and not stats.crosses_bounds(-5, 9, (None, None))


def test_aggregate_report_flags_an_interval_past_the_bound():
    from antispoof.aggregate import report

    evals = {r: {"pooled": {"eer": e, "min_dcf": 0.5, "act_dcf": 0.5, "cllr": 1.0}} for r, e in enumerate([0.01, 0.2, 0.02])}
    trains = {r: {"effective_seed": r} for r in range(3)}
    agg = aggregate(evals, trains, 0.95)
    assert agg["pooled"]["eer"]["ci_low"] < 0  # reported as computed, not clipped
    md = report(agg, evals, trains)
    row = next(line for line in md.splitlines() if line.startswith("| pooled |"))
    assert row.split("|")[2].strip().endswith("†") and "not clipped" in md

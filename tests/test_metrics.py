"""Tests of antispoof.metrics.

Expected values are computed by hand (in comments) or by an independent brute-force implementation of
the official definitions written here in plain Python, never by the code under test.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from antispoof.errors import DataError
from antispoof.metrics import (
    act_dcf, breakdown, cllr, compute_metrics, det_curve, det_plot_points, eer, markdown_table,
    min_dcf, read_key, read_scores, score_histogram,
)

THR = -math.log(1.9)  # ASVspoof 5 Bayes threshold -ln(C_miss*P_bona / (C_fa*P_spoof)) = -ln(0.95/0.5)

# The 3+3 example used throughout. Sorted, bona fide first among ties (there are none here):
#   -0.3 S | 0.2 B | 0.5 S | 0.7 B | 0.8 S | 1.0 B
# k = trials rejected:   0    1    2    3    4    5    6
#   P_miss            :  0    0   1/3  1/3  2/3  2/3   1
#   P_fa              :  1   2/3  2/3  1/3  1/3   0    0
#   |P_miss - P_fa|   :  1   2/3  1/3   0   1/3  2/3   1   -> EER = 1/3 at k = 3
#   DCF = (0.95 P_miss + 0.5 P_fa) / 0.5 = 1.9 P_miss + P_fa:
#                        1  .667 1.3  .967 1.6 1.267 1.9  -> minDCF = 2/3 at k = 1
#   actDCF: every score >= -0.6419, so P_miss = 0, P_fa = 1 -> (0.5 * 1) / 0.5 = 1
B3 = [1.0, 0.2, 0.7]
S3 = [0.5, -0.3, 0.8]


# --------------------------------------------------------------------------------------------------
# Independent brute force: the official definitions, written separately and simply.


def brute_det(bona, spoof):
    """DET points: sort (score, class) pairs with bona fide (class 0) before spoof (class 1) at equal
    scores, reject the k lowest for k = 0..n, count."""
    nb, ns = len(bona), len(spoof)
    trials = sorted([(float(x), 0) for x in bona] + [(float(x), 1) for x in spoof])
    points = [(0.0, 1.0)]
    rejected_b = rejected_s = 0
    for _, cls in trials:
        if cls == 0:
            rejected_b += 1
        else:
            rejected_s += 1
        points.append((rejected_b / nb, (ns - rejected_s) / ns))
    thresholds = [trials[0][0] - 0.001] + [t[0] for t in trials]
    return points, thresholds


def brute_eer(bona, spoof):
    points, _ = brute_det(bona, spoof)
    best, best_diff = None, None
    for pm, pf in points:
        d = abs(pm - pf)
        if best_diff is None or d < best_diff:  # strict: keep the first minimiser
            best, best_diff = (pm, pf), d
    return (best[0] + best[1]) / 2


def brute_min_dcf(bona, spoof):
    points, _ = brute_det(bona, spoof)
    return min((1 * 0.95 * pm + 10 * 0.05 * pf) / min(0.95, 0.5) for pm, pf in points)


def brute_act_dcf(bona, spoof):
    pm = sum(1 for x in bona if x < THR) / len(bona)
    pf = sum(1 for x in spoof if x >= THR) / len(spoof)
    return (0.95 * pm + 0.5 * pf) / 0.5


def brute_cllr(bona, spoof):
    cb = sum(math.log1p(math.exp(-x)) for x in bona) / len(bona)
    cs = sum(math.log1p(math.exp(x)) for x in spoof) / len(spoof)
    return (cb + cs) / (2 * math.log(2))


# --------------------------------------------------------------------------------------------------
# DET and EER


def test_det_curve_hand_example():
    p_miss, p_fa, thr = det_curve(B3, S3)
    np.testing.assert_allclose(p_miss, [0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p_fa, [1, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 0, 0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(thr, [-0.301, -0.3, 0.2, 0.5, 0.7, 0.8, 1.0], rtol=0, atol=1e-12)


def test_eer_and_costs_hand_example():
    assert eer(B3, S3) == pytest.approx(1 / 3, abs=1e-15)
    assert min_dcf(B3, S3) == pytest.approx(2 / 3, abs=1e-12)
    assert act_dcf(B3, S3) == pytest.approx(1.0, abs=1e-12)


def test_perfect_system_eer_zero():
    # sorted: 0 S, 1 S, 2 B, 3 B -> k=2 gives (P_miss, P_fa) = (0, 0)
    assert eer([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert min_dcf([2.0, 3.0], [0.0, 1.0]) == 0.0


def test_inverted_system_eer_one():
    # sorted: 0 B, 1 B, 2 S, 3 S -> first |diff| = 0 is at k=2 with (1, 1)
    assert eer([0.0, 1.0], [2.0, 3.0]) == 1.0


def test_all_equal_scores_eer_is_one_not_half():
    # bona fide sort first among ties: (0,1), (.5,1), (1,1) -> first zero difference at (1, 1)
    assert eer([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert eer(np.zeros(40), np.zeros(40)) == 1.0  # long enough that numpy would not sort stably by luck


def test_ties_bona_fide_first():
    # sorted: 0 S, 1 B, 1 S, 2 B -> (0,1), (0,.5), (.5,.5): EER .5 (it would be 0 with spoof first)
    assert eer([1.0, 2.0], [0.0, 1.0]) == 0.5
    # 30 S@0, 30 B@1, 30 S@1, 30 B@2: after the 30 spoofs (0,.5); after the tied bona fide (.5,.5)
    b = [1.0] * 30 + [2.0] * 30
    s = [0.0] * 30 + [1.0] * 30
    assert eer(b, s) == 0.5
    p_miss, p_fa, _ = det_curve(b, s)
    assert (p_miss[60], p_fa[60]) == (0.5, 0.5)
    assert (p_miss[90], p_fa[90]) == (0.5, 0.0)


def test_first_minimiser_is_taken():
    # B=[1], S=[0, 2]: sorted 0 S, 1 B, 2 S -> (0,1) d=1, (0,.5) d=.5, (1,.5) d=.5, (1,0) d=1.
    # The first minimiser gives EER .25; the second would give .75.
    assert eer([1.0], [0.0, 2.0]) == 0.25


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1])
def test_against_brute_force(seed, decimals):
    rng = np.random.default_rng(seed)
    nb, ns = int(rng.integers(1, 150)), int(rng.integers(1, 300))
    bona = rng.normal(1.0, 1.5, nb)
    spoof = rng.normal(-1.0, 2.0, ns)
    if decimals is not None:  # many ties within and across classes
        bona, spoof = np.round(bona, decimals), np.round(spoof, decimals)
    points, thresholds = brute_det(bona.tolist(), spoof.tolist())
    p_miss, p_fa, thr = det_curve(bona, spoof)
    np.testing.assert_allclose(p_miss, [p[0] for p in points], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p_fa, [p[1] for p in points], rtol=0, atol=1e-15)
    np.testing.assert_allclose(thr, thresholds, rtol=0, atol=1e-12)
    m = compute_metrics(bona, spoof)
    assert m["eer"] == pytest.approx(brute_eer(bona.tolist(), spoof.tolist()), abs=1e-12)
    assert eer(bona, spoof) == m["eer"]
    assert m["min_dcf"] == pytest.approx(brute_min_dcf(bona.tolist(), spoof.tolist()), abs=1e-12)
    assert m["act_dcf"] == pytest.approx(brute_act_dcf(bona.tolist(), spoof.tolist()), abs=1e-12)
    assert m["cllr"] == pytest.approx(brute_cllr(bona.tolist(), spoof.tolist()), rel=1e-12)
    assert (m["n_bonafide"], m["n_spoof"]) == (nb, ns)


# --------------------------------------------------------------------------------------------------
# DCF and Cllr


def test_act_dcf_at_threshold():
    # A bona fide score exactly at the threshold is accepted (miss means < thr); a spoof exactly at the
    # threshold is accepted too (false alarm means >= thr): P_miss = 0, P_fa = 1/2 -> 0.5*0.5/0.5 = 0.5
    assert act_dcf([THR, 5.0], [THR, -5.0]) == pytest.approx(0.5, abs=1e-12)
    # One ulp below: the bona fide is now missed and the spoof rejected: P_miss=1/2, P_fa=0 -> 0.95
    below = math.nextafter(THR, -math.inf)
    assert act_dcf([below, 5.0], [below, -5.0]) == pytest.approx(0.95, abs=1e-12)


def test_act_dcf_hand_case():
    # B=[-1, 1]: -1 < -0.64 is missed -> P_miss=.5; S=[-1, -.5]: -.5 >= -.64 accepted -> P_fa=.5
    # (0.95*.5 + 0.5*.5) / 0.5 = 1.45
    assert act_dcf([-1.0, 1.0], [-1.0, -0.5]) == pytest.approx(1.45, abs=1e-12)


def test_custom_costs():
    # p_spoof=.5, c_miss=c_fa=1: weights .5/.5, normaliser .5 -> DCF = P_miss + P_fa;
    # on the 3+3 example the minimum over the table above is 2/3 (k=1, 3 or 5).
    assert min_dcf(B3, S3, p_spoof=0.5, c_miss=1, c_fa=1) == pytest.approx(2 / 3, abs=1e-12)
    # threshold -ln(1) = 0: no bona fide below 0; spoofs 0.5 and 0.8 >= 0 -> P_fa = 2/3
    assert act_dcf(B3, S3, p_spoof=0.5, c_miss=1, c_fa=1) == pytest.approx(2 / 3, abs=1e-12)


def test_cllr_hand_cases():
    assert cllr([0.0], [0.0]) == pytest.approx(1.0, abs=1e-15)  # (ln2 + ln2) / (2 ln2)
    # LLR ln3 for bona fide and -ln3 for spoof: each term ln(1 + 1/3) -> log2(4/3)
    assert cllr([math.log(3)], [-math.log(3)]) == pytest.approx(math.log2(4 / 3), rel=1e-12)
    # B=[0, ln3]: mean(ln2, ln(4/3)) = ln(8/3)/2; S=[0]: ln2
    assert cllr([0.0, math.log(3)], [0.0]) == pytest.approx((math.log(8 / 3) / 2 + math.log(2)) / (2 * math.log(2)))


def test_cllr_is_numerically_stable():
    assert cllr([1000.0, 800.0], [-1000.0]) == pytest.approx(0.0, abs=1e-300)
    # ln(1 + e^1000) = 1000 (to double precision): (1000 + 1000) / (2 ln 2)
    assert cllr([-1000.0], [1000.0]) == pytest.approx(1000 / math.log(2), rel=1e-12)


def test_compute_metrics_types_and_keys():
    m = compute_metrics(np.array(B3, dtype=np.float32), S3)
    assert set(m) == {"eer", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof"}
    assert all(type(m[k]) is float for k in ("eer", "min_dcf", "act_dcf", "cllr"))
    assert type(m["n_bonafide"]) is int and m["n_bonafide"] == 3


@pytest.mark.parametrize("bona,spoof,needle", [
    ([], [1.0], "bona fide"),
    ([1.0], [], "spoof"),
    ([1.0, float("nan")], [0.0], "finite"),
    ([1.0], [float("inf")], "finite"),
])
def test_bad_inputs_raise(bona, spoof, needle):
    with pytest.raises(DataError, match=needle):
        compute_metrics(bona, spoof)


# --------------------------------------------------------------------------------------------------
# Breakdown and table

BREAKDOWN_DF = pd.DataFrame(
    [
        ("b1", 2.0, "bonafide", "C1", "-"),
        ("b2", 3.0, "bonafide", "C1", "-"),
        ("b3", 1.0, "bonafide", "C2", "-"),
        ("b4", 9.0, "bonafide", "C3", "-"),
        ("s1", 0.0, "spoof", "C1", "A1"),
        ("s2", 5.0, "spoof", "C1", "A2"),
        ("s3", -1.0, "spoof", "C2", "A1"),
    ],
    columns=["utt_id", "score", "label", "condition", "attack"],
)


def test_breakdown_hand_case():
    r = breakdown(BREAKDOWN_DF, ["condition", "attack"])
    # pooled: -1 S, 0 S, 1 B, 2 B, 3 B, 5 S, 9 B -> (0,1) (0,2/3) (0,1/3) (1/4,1/3) ... first minimum
    # |1/4 - 1/3| at k=3 -> EER 7/24; minDCF 1.9*0 + 1/3 at k=2; actDCF: P_fa = 2/3 (0 and 5) -> 2/3
    assert r["pooled"]["eer"] == pytest.approx(7 / 24)
    assert r["pooled"]["min_dcf"] == pytest.approx(1 / 3)
    assert r["pooled"]["act_dcf"] == pytest.approx(2 / 3)
    # condition C1: B [2,3] vs S [0,5]: 0 S, 2 B, 3 B, 5 S -> (0,1) (0,.5) (.5,.5) -> .5
    # condition C2: B [1] vs S [-1] -> 0; C3 has no spoof -> skipped
    assert list(r["by_condition"]) == ["C1", "C2"]
    assert r["by_condition"]["C1"]["eer"] == 0.5
    assert r["by_condition"]["C2"]["eer"] == 0.0
    assert (r["by_condition"]["C1"]["n_bonafide"], r["by_condition"]["C1"]["n_spoof"]) == (2, 2)
    # attack A1: ALL bona fide [2,3,1,9] vs [0,-1] -> 0
    # attack A2: [1,2,3,9] vs [5]: 1 B, 2 B, 3 B, 5 S, 9 B -> (0,1) (1/4,1) (1/2,1) (3/4,1) (3/4,0) (1,0)
    #            first minimum |3/4 - 1| -> EER 7/8.  '-' (bona fide only) is skipped.
    assert list(r["by_attack"]) == ["A1", "A2"]
    assert r["by_attack"]["A1"]["eer"] == 0.0
    assert r["by_attack"]["A2"]["eer"] == pytest.approx(7 / 8)
    assert (r["by_attack"]["A2"]["n_bonafide"], r["by_attack"]["A2"]["n_spoof"]) == (4, 1)


def test_breakdown_natural_order_and_default_columns():
    df = pd.DataFrame({
        "utt_id": ["a", "b", "c", "d", "e", "f"],
        "score": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        "label": ["bonafide", "spoof"] * 3,
        "codec": ["C10", "C10", "C2", "C2", "C1", "C1"],
    })
    r = breakdown(df)
    assert list(r) == ["pooled", "by_codec"]
    assert list(r["by_codec"]) == ["C1", "C2", "C10"]


def test_breakdown_rejects_bad_labels():
    df = BREAKDOWN_DF.assign(label=["bonafide"] * 6 + ["fake"])
    with pytest.raises(DataError, match="fake"):
        breakdown(df, [])


def test_markdown_table():
    text = markdown_table(breakdown(BREAKDOWN_DF, ["condition", "attack"]))
    lines = text.strip().split("\n")
    assert lines[0] == "| group | value | EER (%) | minDCF | actDCF | Cllr (bits) | bona fide | spoof |"
    # pooled: EER 7/24 = 29.1666..% -> 29.167; minDCF 1/3; actDCF 2/3; Cllr from the brute force
    c = brute_cllr([2.0, 3.0, 1.0, 9.0], [0.0, 5.0, -1.0])
    assert lines[2] == f"| pooled | all | 29.167 | 0.33333 | 0.66667 | {c:.5f} | 4 | 3 |"
    assert lines[3].startswith("| condition | C1 | 50.000 | ")
    assert lines[4].startswith("| condition | C2 | 0.000 | 0.00000 | ")
    assert lines[5].startswith("| attack | A1 | 0.000 | ")
    assert lines[6].startswith("| attack | A2 | 87.500 | ")
    assert lines[6].endswith(" | 4 | 1 |")
    assert len(lines) == 7


# --------------------------------------------------------------------------------------------------
# Plot data


def _probit(p):
    return NormalDist().inv_cdf(min(max(p, 1e-4), 1 - 1e-4))


def test_det_plot_points_small_curve_is_complete():
    df = det_plot_points(B3, S3)
    assert list(df.columns) == ["p_fa", "p_miss", "probit_fa", "probit_miss"]
    points, _ = brute_det(B3, S3)
    assert df["p_miss"].tolist() == pytest.approx([p[0] for p in points], abs=1e-15)
    assert df["p_fa"].tolist() == pytest.approx([p[1] for p in points], abs=1e-15)
    assert df["probit_fa"].tolist() == pytest.approx([_probit(p[1]) for p in points])
    assert df["probit_miss"].tolist() == pytest.approx([_probit(p[0]) for p in points])
    assert df["probit_fa"].iloc[0] == pytest.approx(3.719016, abs=1e-6)  # probit(1 - 1e-4)


def test_det_plot_points_downsampled():
    rng = np.random.default_rng(7)
    bona, spoof = rng.normal(2, 1, 2000), rng.normal(-1, 1.5, 3000)
    df = det_plot_points(bona, spoof, max_points=200)
    assert 100 <= len(df) <= 200
    assert df.equals(det_plot_points(bona, spoof, max_points=200))  # deterministic
    points, _ = brute_det(bona.tolist(), spoof.tolist())
    assert (df["p_fa"].iloc[0], df["p_miss"].iloc[0]) == (1.0, 0.0)
    assert (df["p_fa"].iloc[-1], df["p_miss"].iloc[-1]) == (0.0, 1.0)
    assert (np.diff(df["p_fa"]) <= 0).all() and (np.diff(df["p_miss"]) >= 0).all()
    on_curve = set(points)
    assert all((pm, pf) in on_curve for pm, pf in zip(df["p_miss"], df["p_fa"]))
    # the EER point (first minimiser of |P_miss - P_fa|) is kept
    diffs = [abs(pm - pf) for pm, pf in points]
    eer_point = points[diffs.index(min(diffs))]
    assert any((pm, pf) == eer_point for pm, pf in zip(df["p_miss"], df["p_fa"]))
    # no large holes: consecutive rows are at most one arc-length step plus one DET step apart
    full = np.array([[_probit(pf), _probit(pm)] for pm, pf in points])
    seg = np.hypot(*np.diff(full, axis=0).T)
    step = seg.sum() / (200 - 2)
    gaps = np.hypot(np.diff(df["probit_fa"]), np.diff(df["probit_miss"]))
    assert gaps.max() <= step + seg.max() + 1e-9


def test_score_histogram_hand_case():
    # pooled range [0, 3], 3 bins: [0,1) [1,2) [2,3] (last bin closed)
    df = score_histogram([0.0, 1.0, 2.0, 3.0], [0.0, 0.0], bins=3)
    assert list(df.columns) == ["bin_center", "count", "label"]
    bona = df[df["label"] == "bonafide"]
    spoof = df[df["label"] == "spoof"]
    assert bona["bin_center"].tolist() == pytest.approx([0.5, 1.5, 2.5])
    assert bona["count"].tolist() == [1, 1, 2]
    assert spoof["count"].tolist() == [2, 0, 0]


def test_score_histogram_all_equal():
    # range widened to [1.5, 2.5]; 4 bins of .25; the value 2 falls into [2, 2.25)
    df = score_histogram([2.0, 2.0], [2.0], bins=4)
    assert df["bin_center"].tolist()[:4] == pytest.approx([1.625, 1.875, 2.125, 2.375])
    assert df["count"].tolist() == [0, 0, 2, 0, 0, 0, 1, 0]


# --------------------------------------------------------------------------------------------------
# Readers (in process)


def test_read_scores_plain_and_header(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("a 1.5\n\nb  -2e-1\n")
    assert read_scores(p) == {"a": 1.5, "b": -0.2}
    t = tmp_path / "s.tsv"
    t.write_text("filename\tcm-score\nE_1\t0.25\nE_2\t-3\n")
    assert read_scores(t) == {"E_1": 0.25, "E_2": -3.0}


@pytest.mark.parametrize("content,line,needle", [
    ("a 1\nb 2 3\n", 2, "field"),
    ("a 1\nb two\n", 2, "not a number"),
    ("a 1\nb nan\n", 2, "finite"),
    ("a 1\nb 2\na 3\n", 3, "duplicate utterance id 'a' (first on line 1)"),
    ("utt score_x\na 1\n", 1, "header"),
])
def test_read_scores_errors(tmp_path, content, line, needle):
    p = tmp_path / "scores.txt"
    p.write_text(content)
    with pytest.raises(DataError) as e:
        read_scores(p)
    assert f"{p}:{line}:" in str(e.value) and needle in str(e.value)


def test_read_key_errors(tmp_path):
    p = tmp_path / "key.txt"
    p.write_text("LA_1 a - - bonafide\nLA_1 b - A07 fake\n")
    with pytest.raises(DataError, match=r"key\.txt:2: label 'fake'"):
        read_key(p, "asvspoof2019")
    p.write_text("LA_1 a - - bonafide\nLA_1 a - A07 spoof\n")
    with pytest.raises(DataError, match=r"key\.txt:2: duplicate utterance id 'a' \(first on line 1\)"):
        read_key(p)
    p.write_text("LA_1 a - bonafide\n")
    with pytest.raises(DataError, match=r"key\.txt:1: cannot detect"):
        read_key(p)
    c = tmp_path / "key.csv"
    c.write_text("id,label\na,bonafide\n")
    with pytest.raises(DataError, match=r"key\.csv:1: .*utt_id"):
        read_key(c, "csv")


def test_read_key_in_the_wild_style_labels(tmp_path):
    c = tmp_path / "meta.csv"
    c.write_text("utt_id,speaker,label\n0.wav,X,bona-fide\n1.wav,Y,spoof\n")
    df, fmt = read_key(c)
    assert fmt == "csv"
    assert df["label"].tolist() == ["bonafide", "spoof"]


# --------------------------------------------------------------------------------------------------
# CLI (subprocess)

# Shared trials: b1..b3 bona fide, s1..s3 spoof, with the 3+3 scores above.
# by attack (all bona fide vs the attack's spoofs):
#   A07 = s1 0.5, s2 -0.3: -0.3 S, .2 B, .5 S, .7 B, 1 B -> (0,1) (0,.5) (1/3,.5) -> EER 5/12
#   A08 = s3 0.8:          .2 B, .7 B, .8 S, 1 B -> (0,1) (1/3,1) (2/3,1) (2/3,0): first min 1/3 -> 5/6
# by condition: "X" = {b1 1.0, s1 0.5} -> EER 0; "Y" = {b2 .2, b3 .7, s2 -.3, s3 .8}:
#   -.3 S, .2 B, .7 B, .8 S -> (0,1) (0,.5) (.5,.5) -> EER .5
SCORES = {"b1": 1.0, "b2": 0.2, "b3": 0.7, "s1": 0.5, "s2": -0.3, "s3": 0.8}
TRIALS = [  # utt, label, attack, condition group (X / Y)
    ("b1", "bonafide", None, "X"), ("b2", "bonafide", None, "Y"), ("b3", "bonafide", None, "Y"),
    ("s1", "spoof", "A07", "X"), ("s2", "spoof", "A07", "Y"), ("s3", "spoof", "A08", "Y"),
]
EXPECTED_CLLR = brute_cllr([1.0, 0.2, 0.7], [0.5, -0.3, 0.8])


def run_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "antispoof.metrics", *map(str, args)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)


def write_scores(path: Path, scores: dict, header: str | None = None, sep: str = " "):
    lines = ([header] if header else []) + [f"{u}{sep}{s!r}" for u, s in scores.items()]
    path.write_text("\n".join(lines) + "\n")


def check_pooled(out: dict):
    assert out["eer"] == pytest.approx(1 / 3, abs=1e-12)
    assert out["min_dcf"] == pytest.approx(2 / 3, abs=1e-12)
    assert out["act_dcf"] == pytest.approx(1.0, abs=1e-12)
    assert out["cllr"] == pytest.approx(EXPECTED_CLLR, rel=1e-12)
    assert (out["n_bonafide"], out["n_spoof"]) == (3, 3)
    assert out["by_attack"]["A07"]["eer"] == pytest.approx(5 / 12)
    assert out["by_attack"]["A08"]["eer"] == pytest.approx(5 / 6)
    assert set(out["by_attack"]) == {"A07", "A08"}


def run_json(tmp_path, *args) -> dict:
    r = run_cli(tmp_path, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_cli_asvspoof2019(tmp_path):
    key = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    key.write_text("".join(f"LA_0001 {u} - {a or '-'} {lab}\n" for u, lab, a, _ in TRIALS))
    write_scores(tmp_path / "scores.txt", SCORES)
    out = run_json(tmp_path, "scores.txt", "--key", key, "--format", "asvspoof2019")
    check_pooled(out)
    assert "by_condition" not in out
    assert out["missing_scores"]["count"] == 0 and out["unknown_utterances"]["count"] == 0
    # same result with auto-detection, and the text report
    r = run_cli(tmp_path, "scores.txt", "--key", key)
    assert r.returncode == 0, r.stderr
    assert "EER       33.333 %" in r.stdout
    assert "min DCF   0.66667" in r.stdout
    assert "act DCF   1.00000" in r.stdout
    assert f"Cllr      {EXPECTED_CLLR:.5f} bits" in r.stdout
    assert "| attack | A08 | 83.333 | " in r.stdout
    assert r.stderr == ""


def test_cli_asvspoof2021_la_subsets(tmp_path):
    codec = {"X": "alaw", "Y": "none"}
    rows = [f"LA_0009 {u} {codec[c]} ita_tx {a or '-'} {lab} notrim eval\n" for u, lab, a, c in TRIALS]
    rows.append("LA_0009 p1 none ita_tx A07 spoof notrim progress\n")
    rows.append("LA_0009 p2 alaw ita_tx A08 spoof notrim progress\n")
    rows.append("LA_0009 h1 none ita_tx - bonafide notrim hidden\n")  # no score
    key = tmp_path / "trial_metadata.txt"
    key.write_text("".join(rows))
    write_scores(tmp_path / "scores.txt", {**SCORES, "p1": 10.0, "p2": -5.0})
    out = run_json(tmp_path, "scores.txt", "--key", key, "--format", "asvspoof2021")
    check_pooled(out)  # the progress spoof (score 10) and hidden bona fide are not used
    assert out["by_condition"]["alaw"]["eer"] == 0.0
    assert out["by_condition"]["none"]["eer"] == 0.5
    assert set(out["by_transmission"]) == {"ita_tx"}
    assert out["missing_scores"]["count"] == 0
    assert out["unknown_utterances"]["count"] == 0  # p1 is in the key, just another subset
    assert out["outside_subset"] == 2
    # --subset all adds spoofs 10 and -5: -5 S, -.3 S, .2 B, .5 S, .7 B, .8 S, 1 B, 10 S
    #   (0,1) (0,.8) (0,.6) (1/3,.6) (1/3,.4) (2/3,.4) (2/3,.2) (1,.2) (1,0)
    #   |diff| minimal (1/15) only at (1/3, .4) -> EER 11/30
    out = run_json(tmp_path, "scores.txt", "--key", key, "--subset", "all")
    assert out["eer"] == pytest.approx(11 / 30)
    assert (out["n_bonafide"], out["n_spoof"]) == (3, 5)
    assert out["missing_scores"] == {"count": 1, "first": ["h1"]}


def test_cli_asvspoof2021_df(tmp_path):
    comp = {"X": "nocodec", "Y": "mp3m4a"}
    key = tmp_path / "trial_metadata.txt"
    key.write_text("".join(
        f"LA_0023 {u} {comp[c]} asvspoof {a or '-'} {lab} notrim eval traditional_vocoder - - - -\n"
        for u, lab, a, c in TRIALS))
    write_scores(tmp_path / "scores.txt", SCORES)
    out = run_json(tmp_path, "scores.txt", "--key", key)
    check_pooled(out)
    assert out["key_format"] == "asvspoof2021"
    assert out["by_condition"]["nocodec"]["eer"] == 0.0
    assert out["by_condition"]["mp3m4a"]["eer"] == 0.5
    assert out["by_source"]["asvspoof"]["eer"] == pytest.approx(1 / 3)


def test_cli_asvspoof5_tsv_scores(tmp_path):
    codec = {"X": "-", "Y": "C01"}
    attack_of = {"A07": "A17", "A08": "A18"}
    rows = []
    for u, lab, a, c in TRIALS:
        tag, att = ("-", "bonafide") if a is None else ("AC1", attack_of[a])
        rows.append(f"E_0001 {u} F {codec[c]} {'-' if c == 'X' else 2} - {tag} {att} {lab} -\n")
    key = tmp_path / "ASVspoof5.eval.track_1.tsv"
    key.write_text("".join(rows))
    write_scores(tmp_path / "scores.tsv", SCORES, header="filename\tcm-score", sep="\t")
    out = run_json(tmp_path, "scores.tsv", "--key", key, "--format", "asvspoof5")
    assert out["eer"] == pytest.approx(1 / 3)
    assert out["by_attack"]["A17"]["eer"] == pytest.approx(5 / 12)
    assert out["by_attack"]["A18"]["eer"] == pytest.approx(5 / 6)
    assert set(out["by_attack"]) == {"A17", "A18"}
    assert out["by_condition"]["none"]["eer"] == 0.0
    assert out["by_condition"]["C01"]["eer"] == 0.5


def test_cli_csv_key_and_outputs(tmp_path):
    key = tmp_path / "key.csv"
    key.write_text("utt_id,label,condition,attack\n" + "".join(
        f"{u},{lab},{c},{a or '-'}\n" for u, lab, a, c in TRIALS))
    write_scores(tmp_path / "scores.txt", SCORES)
    r = run_cli(tmp_path, "scores.txt", "--key", key, "--format", "csv", "--json",
                "--output", "out/metrics.json", "--plots-dir", "plots")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    check_pooled(out)
    assert out["by_condition"]["X"]["eer"] == 0.0 and out["by_condition"]["Y"]["eer"] == 0.5
    assert json.loads((tmp_path / "out/metrics.json").read_text()) == out
    det = pd.read_csv(tmp_path / "plots/det.csv")
    assert list(det.columns) == ["p_fa", "p_miss", "probit_fa", "probit_miss"]
    assert len(det) == 7  # 6 trials -> 7 DET points, none dropped
    hist = pd.read_csv(tmp_path / "plots/score_hist.csv")
    assert hist.groupby("label")["count"].sum().to_dict() == {"bonafide": 3, "spoof": 3}


def test_cli_reports_missing_and_unknown(tmp_path):
    key = tmp_path / "key.csv"
    key.write_text("utt_id,label\n" + "".join(f"{u},{lab}\n" for u, lab, _, _ in TRIALS) + "b4,bonafide\n")
    write_scores(tmp_path / "scores.txt", {**SCORES, "x9": 3.0})
    out = run_json(tmp_path, "scores.txt", "--key", key)
    assert out["eer"] == pytest.approx(1 / 3)  # over the intersection
    assert out["missing_scores"] == {"count": 1, "first": ["b4"]}
    assert out["unknown_utterances"] == {"count": 1, "first": ["x9"]}
    r = run_cli(tmp_path, "scores.txt", "--key", key)
    assert r.returncode == 0
    assert "1 key utterance(s) have no score (first: b4)" in r.stderr
    assert "1 scored utterance(s) are not in the key" in r.stderr and "x9" in r.stderr
    assert "EER       33.333 %" in r.stdout


def test_cli_malformed_score_line(tmp_path):
    key = tmp_path / "key.csv"
    key.write_text("utt_id,label\nb1,bonafide\ns1,spoof\n")
    (tmp_path / "scores.txt").write_text("b1 1.0\n\ns1\n")
    r = run_cli(tmp_path, "scores.txt", "--key", key)
    assert r.returncode == 2
    assert r.stdout == ""
    err = r.stderr.strip()
    assert "\n" not in err
    assert err.startswith("antispoof metrics: error: scores.txt:3: ")


def test_cli_malformed_key_line_and_empty_class(tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("LA_1 b1 - - bonafide\nLA_1 s1 - A07 spoof\nLA_1 s2 A07 spoof\n")
    write_scores(tmp_path / "scores.txt", SCORES)
    r = run_cli(tmp_path, "scores.txt", "--key", key)
    assert r.returncode == 2
    assert f"{key}:3: expected 5 columns" in r.stderr
    key.write_text("LA_1 b1 - - bonafide\nLA_1 b2 - - bonafide\n")
    r = run_cli(tmp_path, "scores.txt", "--key", key)
    assert r.returncode == 2 and "spoof" in r.stderr and r.stderr.count("\n") == 1


def test_cli_help(tmp_path):
    r = run_cli(tmp_path, "--help")
    assert r.returncode == 0
    assert "python -m antispoof.metrics scores.txt --key" in r.stdout
    for fmt in ("asvspoof2019", "asvspoof2021", "asvspoof5", "csv", "--subset", "--json"):
        assert fmt in r.stdout

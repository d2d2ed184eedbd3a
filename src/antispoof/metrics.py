"""Countermeasure metrics as defined by the official ASVspoof scoring scripts, plus a scoring CLI.

Convention (as in every official script): a higher score means "more bona fide". Bona fide is the
positive class, spoof the negative class.

* `det_curve`, `eer`: DET points from a stable sort in which bona fide trials come first among equal
  scores; the EER is taken at the first DET point minimising |P_miss - P_fa|, without interpolation
  (so a system whose scores are all equal gets EER = 1.0).
* `min_dcf`, `act_dcf`, `cllr`: ASVspoof 5 Track 1 costs (P_spoof = 0.05, C_miss = 1, C_fa = 10);
  scores are read as natural-log likelihood ratios for `act_dcf` and `cllr`.
* `breakdown`, `markdown_table`: pooled and per-condition / per-attack results.
* `det_plot_points`, `score_histogram`: small tables for `dvc plots` (see `.dvc/plots/det.json`).

Run `python -m antispoof.metrics --help` for the CLI.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from antispoof.errors import DataError, UserError

if TYPE_CHECKING:  # pandas is imported lazily: the scalar metrics do not need it
    import pandas as pd

P_SPOOF = 0.05
C_MISS = 1.0
C_FA = 10.0

BONAFIDE = "bonafide"
SPOOF = "spoof"
METRIC_KEYS = ("eer", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof")


# --------------------------------------------------------------------------------------------------
# Core metrics


def _scores(x: Any, name: str) -> np.ndarray:
    """A 1-D float64 array of finite scores; `name` is used in error messages."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise DataError(f"{name} scores must be a 1-D sequence, got an array of shape {a.shape}")
    if a.size == 0:
        raise DataError(f"no {name} scores: every metric needs at least one bona fide and one spoof trial")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name} scores must be finite; element {i} is {a[i]!r}")
    return a


def det_curve(bona: Any, spoof: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET points exactly as the official ASVspoof code computes them.

    All trials are sorted by score with a stable sort of [bona fide..., spoof...], so among equal scores
    bona fide trials come first. Point k (k = 0..n_B+n_S) rejects the k lowest-sorted trials:
    p_miss[k] = rejected bona fide / n_B, p_fa[k] = accepted spoof / n_S. thresholds[0] is the lowest
    score minus 0.001, thresholds[k] (k >= 1) the k-th sorted score.

    Returns (p_miss, p_fa, thresholds), each of length n_B + n_S + 1.
    """
    b = _scores(bona, "bona fide")
    s = _scores(spoof, "spoof")
    scores = np.concatenate([b, s])
    is_bona = np.concatenate([np.ones(b.size), np.zeros(s.size)])
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    bona_rejected = np.cumsum(is_bona[order])
    spoof_rejected = np.arange(1, scores.size + 1) - bona_rejected
    p_miss = np.concatenate([[0.0], bona_rejected / b.size])
    p_fa = np.concatenate([[1.0], (s.size - spoof_rejected) / s.size])
    thresholds = np.concatenate([[sorted_scores[0] - 0.001], sorted_scores])
    return p_miss, p_fa, thresholds


def _eer_index(p_miss: np.ndarray, p_fa: np.ndarray) -> int:
    return int(np.argmin(np.abs(p_miss - p_fa)))  # argmin returns the first minimiser


def eer(bona: Any, spoof: Any) -> float:
    """Equal error rate as a fraction (official definition: first DET point minimising
    |P_miss - P_fa|, EER = their mean, no interpolation)."""
    p_miss, p_fa, _ = det_curve(bona, spoof)
    i = _eer_index(p_miss, p_fa)
    return float((p_miss[i] + p_fa[i]) / 2)


def _costs(p_spoof: float, c_miss: float, c_fa: float) -> tuple[float, float, float]:
    if not 0.0 < p_spoof < 1.0:
        raise UserError(f"p_spoof must be in (0, 1), got {p_spoof}")
    if c_miss <= 0 or c_fa <= 0:
        raise UserError(f"c_miss and c_fa must be positive, got c_miss={c_miss}, c_fa={c_fa}")
    w_miss = c_miss * (1.0 - p_spoof)
    w_fa = c_fa * p_spoof
    return w_miss, w_fa, min(w_miss, w_fa)


def min_dcf(bona: Any, spoof: Any, *, p_spoof: float = P_SPOOF, c_miss: float = C_MISS,
            c_fa: float = C_FA) -> float:
    """Minimum normalised detection cost over the DET points:
    min_k (C_miss·P_bona·P_miss[k] + C_fa·P_spoof·P_fa[k]) / min(C_miss·P_bona, C_fa·P_spoof)."""
    w_miss, w_fa, norm = _costs(p_spoof, c_miss, c_fa)
    p_miss, p_fa, _ = det_curve(bona, spoof)
    return float(np.min((w_miss * p_miss + w_fa * p_fa) / norm))


def act_dcf_threshold(*, p_spoof: float = P_SPOOF, c_miss: float = C_MISS, c_fa: float = C_FA) -> float:
    """Bayes threshold on log-likelihood-ratio scores: -ln(C_miss·P_bona / (C_fa·P_spoof))."""
    w_miss, w_fa, _ = _costs(p_spoof, c_miss, c_fa)
    return -math.log(w_miss / w_fa)


def act_dcf(bona: Any, spoof: Any, *, p_spoof: float = P_SPOOF, c_miss: float = C_MISS,
            c_fa: float = C_FA) -> float:
    """Actual normalised detection cost at the Bayes threshold (scores read as natural-log LLRs).
    A bona fide trial is missed when its score is < threshold; a spoof is accepted when >= threshold."""
    w_miss, w_fa, norm = _costs(p_spoof, c_miss, c_fa)
    thr = act_dcf_threshold(p_spoof=p_spoof, c_miss=c_miss, c_fa=c_fa)
    b = _scores(bona, "bona fide")
    s = _scores(spoof, "spoof")
    p_miss = np.count_nonzero(b < thr) / b.size
    p_fa = np.count_nonzero(s >= thr) / s.size
    return float((w_miss * p_miss + w_fa * p_fa) / norm)


def cllr(bona: Any, spoof: Any) -> float:
    """Log-likelihood-ratio cost in bits: (mean ln(1+e^-B) + mean ln(1+e^S)) / (2 ln 2).
    Computed with logaddexp, so large scores neither overflow nor lose precision."""
    b = _scores(bona, "bona fide")
    s = _scores(spoof, "spoof")
    c_bona = float(np.mean(np.logaddexp(0.0, -b)))
    c_spoof = float(np.mean(np.logaddexp(0.0, s)))
    return (c_bona + c_spoof) / (2.0 * math.log(2.0))


def compute_metrics(bona: Any, spoof: Any, *, p_spoof: float = P_SPOOF, c_miss: float = C_MISS,
                    c_fa: float = C_FA) -> dict[str, float | int]:
    """All metrics as plain Python numbers: eer (fraction), min_dcf, act_dcf, cllr (bits),
    n_bonafide, n_spoof. Raises DataError if either class is empty."""
    b = _scores(bona, "bona fide")
    s = _scores(spoof, "spoof")
    costs = dict(p_spoof=p_spoof, c_miss=c_miss, c_fa=c_fa)
    p_miss, p_fa, _ = det_curve(b, s)
    i = _eer_index(p_miss, p_fa)
    w_miss, w_fa, norm = _costs(p_spoof, c_miss, c_fa)
    return {
        "eer": float((p_miss[i] + p_fa[i]) / 2),
        "min_dcf": float(np.min((w_miss * p_miss + w_fa * p_fa) / norm)),
        "act_dcf": act_dcf(b, s, **costs),
        "cllr": cllr(b, s),
        "n_bonafide": int(b.size),
        "n_spoof": int(s.size),
    }


# --------------------------------------------------------------------------------------------------
# Breakdowns and tables


def _natural_key(value: Any) -> tuple:
    """Sort 'C2' before 'C10' and 'A7' before 'A19'."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(value)) if t)


def breakdown(df: "pd.DataFrame", group_cols: Sequence[str] | None = None, *,
              attack_cols: Iterable[str] = ("attack",), **costs: float) -> dict[str, Any]:
    """Pooled and per-group metrics of a score table.

    `df` has columns utt_id, score, label ('bonafide' / 'spoof') and optional grouping columns.
    `group_cols` defaults to every other column. Result: {"pooled": metrics, "by_<col>": {value: metrics}}.

    * Condition-like columns (e.g. 'condition', 'codec'): for value v, the bona fide AND spoof trials
      whose column equals v.
    * Attack-like columns (those in `attack_cols`): spoof trials of attack v against ALL bona fide
      trials of `df` (the usual per-attack convention; bona fide trials carry no attack). For per-attack
      results inside one condition, pass `df` filtered to that condition.
    * A group value with no bona fide or no spoof trial is skipped (it has no defined EER); so are
      missing values (NaN / empty string).
    Group values become strings (JSON keys) and are ordered naturally (C2 before C10).
    `costs` (p_spoof, c_miss, c_fa) are passed to `compute_metrics`.
    """
    import pandas as pd

    missing = [c for c in ("score", "label") if c not in df.columns]
    if missing:
        raise DataError(f"score table lacks column(s) {missing}; it has {list(df.columns)}")
    labels = df["label"].astype(str)
    bad = sorted(set(labels) - {BONAFIDE, SPOOF})
    if bad:
        raise DataError(f"label column must hold only '{BONAFIDE}' or '{SPOOF}', found {bad[:5]}")
    if group_cols is None:
        group_cols = [c for c in df.columns if c not in ("utt_id", "score", "label")]
    for col in group_cols:
        if col not in df.columns:
            raise DataError(f"grouping column '{col}' is not in the score table (columns: {list(df.columns)})")
    groups = {col: [None if pd.isna(v) else str(v) for v in df[col]] for col in group_cols}
    return _breakdown_arrays(df["score"].to_numpy(dtype=np.float64), (labels == BONAFIDE).to_numpy(),
                             groups, set(attack_cols), costs)


def _breakdown_arrays(scores: np.ndarray, is_bona: np.ndarray, groups: dict[str, list[str | None]],
                      attack_cols: set[str], costs: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {"pooled": compute_metrics(scores[is_bona], scores[~is_bona], **costs)}
    for col, column in groups.items():
        values = np.array(["" if v is None else v for v in column], dtype=object)
        present = values != ""
        result: dict[str, Any] = {}
        for v in sorted(set(values[present]), key=_natural_key):
            in_group = values == v
            spoof_sel = in_group & ~is_bona
            bona_sel = is_bona if col in attack_cols else in_group & is_bona
            if not spoof_sel.any() or not bona_sel.any():
                continue
            result[v] = compute_metrics(scores[bona_sel], scores[spoof_sel], **costs)
        out[f"by_{col}"] = result
    return out


def _fmt_row(group: str, value: str, m: dict[str, Any]) -> str:
    cells = [group, value.replace("|", "\\|"), f"{100 * m['eer']:.3f}", f"{m['min_dcf']:.5f}",
             f"{m['act_dcf']:.5f}", f"{m['cllr']:.5f}", str(m["n_bonafide"]), str(m["n_spoof"])]
    return "| " + " | ".join(cells) + " |"


def markdown_table(result: dict[str, Any]) -> str:
    """One Markdown table: the pooled row, then one row per group value of every `by_<col>` entry.
    EER in percent with 3 decimals, the other metrics with 5 (as the official scripts print them).
    Accepts the output of `breakdown` or a single `compute_metrics` dict."""
    if "pooled" not in result and "eer" in result:
        result = {"pooled": result}
    lines = [
        "| group | value | EER (%) | minDCF | actDCF | Cllr (bits) | bona fide | spoof |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    if "pooled" in result:
        lines.append(_fmt_row("pooled", "all", result["pooled"]))
    for key, groups in result.items():
        if not key.startswith("by_") or not isinstance(groups, dict):
            continue
        for value, m in groups.items():
            lines.append(_fmt_row(key[3:], str(value), m))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Plot data


def _probit(p: np.ndarray, clip: float) -> np.ndarray:
    """Exact probit (statistics.NormalDist) of rates clipped to [clip, 1 - clip]."""
    inv = NormalDist().inv_cdf
    return np.array([inv(float(q)) for q in np.clip(p, clip, 1.0 - clip)], dtype=np.float64)


def _probit_fast(p: np.ndarray, clip: float, grid: int = 20001) -> np.ndarray:
    """Probit by interpolation in a table of the normal CDF (error ~1e-4): good enough to measure arc
    length along a curve of up to millions of points, which exact scalar calls would make slow."""
    z = np.linspace(NormalDist().inv_cdf(clip), NormalDist().inv_cdf(1.0 - clip), grid)
    cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])
    return np.interp(np.clip(p, clip, 1.0 - clip), cdf, z)


def det_plot_points(bona: Any, spoof: Any, max_points: int = 200, *, clip: float = 1e-4) -> "pd.DataFrame":
    """DET curve for `dvc plots` (template `.dvc/plots/det.json`, x: probit_fa, y: probit_miss).

    Columns p_fa, p_miss (exact DET values) and probit_fa, probit_miss (standard-normal quantiles of
    the rates clipped to [clip, 1 - clip], so 0 and 1 stay finite). If the curve has more than
    `max_points` points, points are taken at equal arc-length steps along the curve in probit space
    (always keeping both ends and the EER point), which is deterministic and keeps the plotted shape. Rows are ordered by increasing threshold (p_fa falls, p_miss rises).
    """
    import pandas as pd

    if max_points < 3:
        raise UserError(f"max_points must be at least 3, got {max_points}")
    if not 0.0 < clip < 0.5:
        raise UserError(f"clip must be in (0, 0.5), got {clip}")
    p_miss, p_fa, _ = det_curve(bona, spoof)
    eer_i = _eer_index(p_miss, p_fa)
    idx = np.arange(p_miss.size)
    if idx.size > max_points:
        x, y = _probit_fast(p_fa, clip), _probit_fast(p_miss, clip)
        # Each DET step moves along one axis, so no two consecutive points coincide (though clipping
        # can make them coincide in probit space: zero-length steps are harmless here).
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
        targets = np.linspace(0.0, arc[-1], max_points - 1)
        pick = np.union1d(np.searchsorted(arc, targets, side="left"), [0, idx.size - 1, eer_i])
        while pick.size > max_points:  # drop a sample next to the EER point, never an end or the EER
            pos = int(np.searchsorted(pick, eer_i))
            pick = np.delete(pick, pos + 1 if pos + 1 < pick.size - 1 else pos - 1)
        idx = pick
    return pd.DataFrame({"p_fa": p_fa[idx], "p_miss": p_miss[idx],
                         "probit_fa": _probit(p_fa[idx], clip), "probit_miss": _probit(p_miss[idx], clip)})


def score_histogram(bona: Any, spoof: Any, bins: int = 40) -> "pd.DataFrame":
    """Score histograms of both classes on shared bins: `bins` equal-width bins spanning the pooled
    minimum to maximum (a width-1 bin centred on the value if all scores are equal). The last bin
    includes its right edge. Columns bin_center, count, label; bona fide rows first."""
    import pandas as pd

    if bins < 1:
        raise UserError(f"bins must be at least 1, got {bins}")
    b = _scores(bona, "bona fide")
    s = _scores(spoof, "spoof")
    lo = float(min(b.min(), s.min()))
    hi = float(max(b.max(), s.max()))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    frames = []
    for label, a in ((BONAFIDE, b), (SPOOF, s)):
        counts, _ = np.histogram(a, bins=edges)
        frames.append(pd.DataFrame({"bin_center": centers, "count": counts.astype(np.int64), "label": label}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Readers

KEY_FORMATS = ("auto", "csv", "asvspoof2019", "asvspoof2021", "asvspoof5")
_LABEL_ALIASES = {"bonafide": BONAFIDE, "bona-fide": BONAFIDE, "bona_fide": BONAFIDE, "spoof": SPOOF}
_UTT_COLUMNS = ("utt_id", "filename", "file")
_SCORE_COLUMNS = ("cm-score", "cm_score", "score")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_scores(path: str | Path) -> dict[str, float]:
    """Read a score file into {utt_id: score}.

    Accepted layouts: `utt_id score` per line (whitespace separated, no header), or a table with a
    header line such as the ASVspoof 5 TSV `filename<TAB>cm-score` (a first line whose score field is
    not a number is taken as the header; the id column is utt_id/filename/file, the score column
    cm-score/cm_score/score). Blank lines are ignored. Malformed lines, non-finite scores and duplicate
    ids raise DataError naming the file and line.
    """
    path = Path(path)
    lines = _read_lines(path)
    numbered = [(i, ln.split()) for i, ln in enumerate(lines, 1) if ln.strip()]
    if not numbered:
        raise DataError(f"{path}: no scores (the file is empty)")
    utt_col, score_col, ncols = 0, 1, 2
    first_no, first = numbered[0]
    if len(first) >= 2 and not _is_float(first[-1]):
        header = [h.lower() for h in first]
        utt_col = next((header.index(c) for c in _UTT_COLUMNS if c in header), -1)
        score_col = next((header.index(c) for c in _SCORE_COLUMNS if c in header), -1)
        if utt_col < 0 or score_col < 0:
            raise DataError(
                f"{path}:{first_no}: header {first} needs an id column ({'/'.join(_UTT_COLUMNS)}) and a "
                f"score column ({'/'.join(_SCORE_COLUMNS)})")
        ncols = len(first)
        numbered = numbered[1:]
    scores: dict[str, float] = {}
    seen_on: dict[str, int] = {}
    for no, fields in numbered:
        if len(fields) != ncols:
            want = "'utt_id score'" if ncols == 2 else f"{ncols} fields like the header"
            raise DataError(f"{path}:{no}: expected {want}, got {len(fields)} field(s): {lines[no - 1].strip()!r}")
        utt, raw = fields[utt_col], fields[score_col]
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"{path}:{no}: score {raw!r} of '{utt}' is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{path}:{no}: score of '{utt}' is {raw!r}; scores must be finite")
        if utt in scores:
            raise DataError(f"{path}:{no}: duplicate utterance id '{utt}' (first on line {seen_on[utt]})")
        scores[utt] = value
        seen_on[utt] = no
    if not scores:
        raise DataError(f"{path}: no scores after the header line")
    return scores


# Whitespace-separated protocol layouts: columns, index of UTT, index of KEY, {name: column index}.
# ATTACK-like columns hold '-' / 'bonafide' for bona fide rows.
_PROTOCOLS: dict[str, list[tuple[int, dict[str, int]]]] = {
    "asvspoof2019": [(5, {"utt_id": 1, "attack": 3, "label": 4})],
    "asvspoof2021": [
        (8, {"utt_id": 1, "condition": 2, "transmission": 3, "attack": 4, "label": 5, "subset": 7}),  # LA
        (13, {"utt_id": 1, "condition": 2, "source": 3, "attack": 4, "label": 5, "subset": 7}),  # DF
    ],
    "asvspoof5": [(10, {"utt_id": 1, "condition": 3, "attack": 7, "label": 8})],
}
_COLUMN_COUNTS = {n: fmt for fmt, layouts in _PROTOCOLS.items() for n, _ in layouts}


def detect_key_format(path: str | Path) -> str:
    """Guess a key's format from its first non-blank line: a comma-separated header -> csv; otherwise
    the number of whitespace-separated columns (5: asvspoof2019, 8/13: asvspoof2021, 10: asvspoof5)."""
    path = Path(path)
    for no, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        if "," in line:
            return "csv"
        n = len(line.split())
        if n in _COLUMN_COUNTS:
            return _COLUMN_COUNTS[n]
        raise DataError(
            f"{path}:{no}: cannot detect the key format from {n} whitespace-separated columns (expected "
            f"5 = asvspoof2019, 8 or 13 = asvspoof2021, 10 = asvspoof5, or a CSV header); pass --format")
    raise DataError(f"{path}: the key file is empty")


def _label(path: Path, no: int, raw: str) -> str:
    label = _LABEL_ALIASES.get(raw.strip().lower())
    if label is None:
        raise DataError(f"{path}:{no}: label {raw!r} is neither 'bonafide' nor 'spoof'")
    return label


# A key table is {column: list of str} with the same length per column; "_line" holds line numbers.
Table = dict[str, list]


def _read_protocol(path: Path, fmt: str) -> Table:
    layouts = dict(_PROTOCOLS[fmt])
    cols: dict[str, int] | None = None
    table: Table = {}
    ncols = 0
    for no, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if cols is None:
            if len(fields) not in layouts:
                want = " or ".join(str(n) for n in layouts)
                raise DataError(f"{path}:{no}: {fmt} key lines have {want} columns, got {len(fields)}")
            ncols, cols = len(fields), layouts[len(fields)]
            table = {name: [] for name in [*cols, "_line"]}
        if len(fields) != ncols:
            raise DataError(f"{path}:{no}: expected {ncols} columns like the first line of this {fmt} key, "
                            f"got {len(fields)}")
        for name, i in cols.items():
            table[name].append(fields[i])
        table["label"][-1] = _label(path, no, fields[cols["label"]])
        table["_line"].append(no)
    if cols is None:
        raise DataError(f"{path}: the key file is empty")
    if fmt == "asvspoof5":
        table["condition"] = ["none" if c == "-" else c for c in table["condition"]]
    return table


def _read_csv_key(path: Path) -> Table:
    lines = _read_lines(path)
    start = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if start is None:
        raise DataError(f"{path}: the key file is empty")
    header = [h.strip() for h in lines[start].split(",")]
    lower = [h.lower() for h in header]
    utt = next((lower.index(c) for c in _UTT_COLUMNS if c in lower), -1)
    if utt < 0 or "label" not in lower:
        raise DataError(f"{path}:{start + 1}: CSV key header needs columns utt_id and label, got {header}")
    wanted = {"utt_id": utt, "label": lower.index("label")}
    for name in ("condition", "codec", "attack"):
        if name in lower:
            wanted[name] = lower.index(name)
    table: Table = {name: [] for name in [*wanted, "_line"]}
    for no in range(start + 2, len(lines) + 1):
        line = lines[no - 1]
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(header):
            raise DataError(f"{path}:{no}: expected {len(header)} comma-separated fields like the header, "
                            f"got {len(fields)}")
        if not fields[utt]:
            raise DataError(f"{path}:{no}: empty {header[utt]}")
        for name, i in wanted.items():
            table[name].append(fields[i])
        table["label"][-1] = _label(path, no, fields[wanted["label"]])
        table["_line"].append(no)
    if "condition" not in table and "codec" in table:
        table = {("condition" if k == "codec" else k): v for k, v in table.items()}
    return table


def _select(table: Table, keep: list[bool]) -> Table:
    return {k: [v for v, ok in zip(col, keep) if ok] for k, col in table.items()}


def _read_key_table(path: Path, fmt: str, subset: str) -> tuple[Table, str, set[str]]:
    """(table without _line/subset columns, format used, utterance ids left out by the subset filter)."""
    if fmt not in KEY_FORMATS:
        raise UserError(f"unknown key format '{fmt}'; choose one of {', '.join(KEY_FORMATS)}")
    if fmt == "auto":
        fmt = detect_key_format(path)
    table = _read_csv_key(path) if fmt == "csv" else _read_protocol(path, fmt)
    first_line: dict[str, int] = {}
    for utt, no in zip(table["utt_id"], table["_line"]):
        if utt in first_line:
            raise DataError(f"{path}:{no}: duplicate utterance id '{utt}' (first on line {first_line[utt]})")
        first_line[utt] = no
    del table["_line"]
    left_out: set[str] = set()
    if "subset" in table:
        subsets = table.pop("subset")
        if subset != "all":
            keep = [s == subset for s in subsets]
            if not any(keep):
                raise DataError(f"{path}: no rows with SUBSET '{subset}' (subsets present: "
                                f"{sorted(set(subsets))}); use --subset")
            left_out = {u for u, ok in zip(table["utt_id"], keep) if not ok}
            table = _select(table, keep)
    return table, fmt, left_out


def read_key(path: str | Path, fmt: str = "auto", subset: str = "eval") -> tuple["pd.DataFrame", str]:
    """Read a CM key/protocol file. Returns (table, format actually used).

    Formats: 'asvspoof2019' (5 columns), 'asvspoof2021' (LA 8 / DF 13 columns), 'asvspoof5'
    (10 columns), 'csv' (header with utt_id and label, optional condition/codec/attack), or 'auto'
    (see `detect_key_format`). The table has columns utt_id, label ('bonafide'/'spoof'; 'bona-fide'
    is accepted) and, where the format has them, condition (2021 LA: CODEC, 2021 DF: COMPRESSION,
    ASVspoof 5: CODEC with '-' -> 'none'; CSV: condition, else codec), transmission (2021 LA),
    source (2021 DF), codec (CSV with both) and attack. ASVspoof 2021 keys keep only rows whose
    SUBSET equals `subset` ('all' keeps every row). Wrong column counts, bad labels and duplicate
    utterance ids raise DataError naming the file and line.
    """
    import pandas as pd

    path = Path(path)
    table, used, _ = _read_key_table(path, fmt, subset)
    return pd.DataFrame(table), used


def _join(table: Table, scores: dict[str, float], left_out: set[str],
          n_examples: int = 5) -> tuple[Table, np.ndarray, dict[str, Any]]:
    """Keep the key rows that have a score. Returns (kept rows, their scores, report): key utterances
    without a score ("missing_scores") and scored utterances not in the key ("unknown_utterances"),
    each as {"count", "first"} (first ids in file order); scored utterances whose key rows were left
    out by the subset filter are only counted ("outside_subset")."""
    has = [u in scores for u in table["utt_id"]]
    missing = [u for u, ok in zip(table["utt_id"], has) if not ok]
    in_key = set(table["utt_id"])
    unknown = [u for u in scores if u not in in_key and u not in left_out]
    kept = _select(table, has)
    values = np.array([scores[u] for u in kept["utt_id"]], dtype=np.float64)
    report = {
        "missing_scores": {"count": len(missing), "first": missing[:n_examples]},
        "unknown_utterances": {"count": len(unknown), "first": unknown[:n_examples]},
        "outside_subset": sum(1 for u in scores if u in left_out),
    }
    return kept, values, report


# --------------------------------------------------------------------------------------------------
# CLI

_EPILOG = """\
examples:
  python -m antispoof.metrics scores.txt --key ASVspoof2019.LA.cm.eval.trl.txt
  python -m antispoof.metrics scores.tsv --key ASVspoof5.eval.track_1.tsv --format asvspoof5 --json
  python -m antispoof.metrics scores.txt --key trial_metadata.txt --subset progress

SCORES holds 'utt_id score' per line, or a header line and columns such as the ASVspoof 5
'filename<TAB>cm-score'. Higher scores mean more bona fide; act_dcf and cllr read scores as
natural-log likelihood ratios. Metrics use the utterances present in both files; key utterances
without a score and scores not in the key are reported (stderr, or 'missing_scores' and
'unknown_utterances' in --json). Exit status 2 on bad input.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m antispoof.metrics",
        description="Score a spoofing countermeasure like the official ASVspoof scripts: EER, minDCF and "
                    "actDCF (ASVspoof 5 costs: P_spoof=0.05, C_miss=1, C_fa=10), Cllr, with per-condition "
                    "and per-attack breakdowns.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scores", metavar="SCORES", help="score file")
    p.add_argument("--key", required=True, metavar="KEY", help="key / protocol file")
    p.add_argument("--format", default="auto", choices=KEY_FORMATS,
                   help="key format (default: auto-detect from the first line; csv needs a header with "
                        "utt_id,label and optional condition,codec,attack)")
    p.add_argument("--subset", default="eval",
                   help="ASVspoof 2021 keys: SUBSET to score, e.g. eval, progress, hidden, or all "
                        "(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--output", metavar="FILE", help="also write the JSON result to FILE (atomically)")
    p.add_argument("--plots-dir", metavar="DIR",
                   help="also write DIR/det.csv and DIR/score_hist.csv for dvc plots")
    return p


def _describe_missing(report: dict[str, Any], n_used: int) -> list[str]:
    out = []
    m, u = report["missing_scores"], report["unknown_utterances"]
    if m["count"]:
        out.append(f"warning: {m['count']} key utterance(s) have no score (first: {', '.join(m['first'])}); "
                   f"metrics use the {n_used} scored key utterance(s)")
    if u["count"]:
        out.append(f"warning: {u['count']} scored utterance(s) are not in the key and are ignored "
                   f"(first: {', '.join(u['first'])})")
    if report.get("outside_subset"):
        out.append(f"note: {report['outside_subset']} scored utterance(s) belong to other key subsets "
                   f"(see --subset) and are not scored")
    return out


def evaluate(scores_path: str | Path, key_path: str | Path, fmt: str = "auto",
             subset: str = "eval") -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Read a score file and a key, join them and compute pooled and per-group metrics.

    Returns (result, bona fide scores, spoof scores) where result is the object printed by --json:
    the `compute_metrics` keys, `by_<column>` for each grouping column of the key, `missing_scores`,
    `unknown_utterances`, `outside_subset` and `key_format`. Metrics use the key utterances that have
    a score; raises DataError if a class has none.
    """
    key_path = Path(key_path)
    table, used, left_out = _read_key_table(key_path, fmt, subset)
    scores = read_scores(scores_path)
    kept, values, report = _join(table, scores, left_out)
    if values.size == 0:
        raise DataError(f"{scores_path}: none of its {len(scores)} utterance ids is in the key {key_path}")
    is_bona = np.array([lab == BONAFIDE for lab in kept["label"]], dtype=bool)
    if is_bona.all() or not is_bona.any():
        cls = "spoof" if is_bona.all() else "bona fide"
        raise DataError(f"{scores_path}: no scored {cls} utterance of key {key_path}; the metrics need both classes")
    groups = {c: v for c, v in kept.items() if c not in ("utt_id", "label")}
    res = _breakdown_arrays(values, is_bona, groups, {"attack"}, {})
    result: dict[str, Any] = dict(res.pop("pooled"))
    result.update(res)
    result.update(report)
    result["key_format"] = used
    return result, values[is_bona], values[~is_bona]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from antispoof.repro import atomic_write_json, atomic_write_text, dumps_json

        result, bona, spoof = evaluate(args.scores, args.key, args.format, args.subset)
        if args.output:
            atomic_write_json(args.output, result)
        if args.plots_dir:
            out = Path(args.plots_dir)
            atomic_write_text(out / "det.csv", det_plot_points(bona, spoof).to_csv(index=False, float_format="%.10g"))
            atomic_write_text(out / "score_hist.csv", score_histogram(bona, spoof).to_csv(index=False, float_format="%.10g"))
    except UserError as e:
        print(f"antispoof metrics: error: {e}", file=sys.stderr)
        return e.exit_code
    n_used = result["n_bonafide"] + result["n_spoof"]
    if args.json:
        sys.stdout.write(dumps_json(result))
        return 0
    for line in _describe_missing(result, n_used):
        print(line, file=sys.stderr)
    used = result["key_format"]
    subset = f", subset {args.subset}" if used == "asvspoof2021" else ""
    print(f"key: {args.key} ({used}{subset}); scores: {args.scores}")
    print(f"EER       {100 * result['eer']:.3f} %")
    print(f"min DCF   {result['min_dcf']:.5f}")
    print(f"act DCF   {result['act_dcf']:.5f}")
    print(f"Cllr      {result['cllr']:.5f} bits")
    print(f"trials    {result['n_bonafide']} bona fide, {result['n_spoof']} spoof")
    groups = {k: v for k, v in result.items() if k.startswith("by_") and v}
    if groups:
        print()
        print(markdown_table({"pooled": {k: result[k] for k in METRIC_KEYS}, **groups}), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

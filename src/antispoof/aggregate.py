"""Stage `aggregate`: statistics across the seed replicates of one experiment.

Reads metrics/eval/r<r>.json and metrics/train/r<r>.json of every replicate in `replicates` and writes,
per condition (pooled, clean, each codec condition) and metric (EER, minDCF, actDCF, Cllr): mean,
sample standard deviation, a Student-t confidence interval for the mean (`aggregate.confidence`),
min, max and n, plus the replicates' effective seeds. metrics/aggregate.json is what `dvc exp show` and
`dvc metrics diff` compare; reports/aggregate.md is the same as a readable table (plus EER per attack),
and plots/eer_by_condition.csv feeds the EER-per-condition bar chart of `dvc plots show`.

With calibration (evaluate.calibration) each condition also has minCllr and the calibrated actDCF and
Cllr; the dev split's metrics appear as the row `dev`.

Plots of every replicate in `replicates`: DVC's top-level plots cannot loop over a param, so this stage
combines the replicates' plot files into plots/replicates/{curves,det,hist}.csv (column `replicate`),
drawn by the templates of antispoof.plots, and renders the key figures as SVG into reports/figures/
(offline, by vl-convert) for reports/aggregate.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from antispoof import plots
from antispoof.cli import run_stage
from antispoof.errors import UserError
from antispoof.repro import atomic_write_json, atomic_write_text
from antispoof.stats import crosses_bounds, metric_bounds, summarize, t_quantile
from antispoof.vega import save_chart

METRICS = ("eer", "min_dcf", "act_dcf", "cllr", "min_cllr", "act_dcf_cal", "cllr_cal")
LABELS = {"eer": "EER (%)", "min_dcf": "minDCF", "act_dcf": "actDCF", "cllr": "Cllr (bits)",
          "min_cllr": "minCllr (bits)", "act_dcf_cal": "actDCF calibrated", "cllr_cal": "Cllr calibrated (bits)"}
NOT_CONDITIONS = ("attack_eer", "corpus_codec_eer", "calibration")
FIGURES = Path("reports/figures")
PLOT_DATA = Path("plots/replicates")


def read_replicates(replicates: list[int]) -> tuple[dict[int, dict], dict[int, dict]]:
    evals, trains = {}, {}
    for r in replicates:
        for kind, into in (("eval", evals), ("train", trains)):
            path = Path(f"metrics/{kind}/r{r}.json")
            stage = "evaluate" if kind == "eval" else "train"
            fix = f"re-run {stage} (uv run dvc repro {stage}@{r})"
            if not path.exists():
                raise UserError(f"{path} not found: replicate {r} has not been {kind}ed: {fix}")
            try:
                block = json.loads(path.read_text(encoding="utf-8"))[f"{kind}_r{r}"]
            except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
                raise UserError(f"{path}: not valid JSON ({e}): {fix}") from None
            except (KeyError, TypeError):
                raise UserError(f"{path}: has no {kind}_r{r} block: {fix}") from None
            if not isinstance(block, dict) or (kind == "eval" and not isinstance(block.get("pooled"), dict)) \
                    or (kind == "train" and "effective_seed" not in block):
                raise UserError(f"{path}: {kind}_r{r} lacks the expected metrics: {fix}")
            into[r] = block
    return evals, trains


def aggregate(evals: dict[int, dict], trains: dict[int, dict], confidence: float) -> dict:
    replicates = sorted(evals)
    conditions = [c for c in evals[replicates[0]] if c not in NOT_CONDITIONS]
    out: dict = {}
    for cond in conditions:
        out[cond] = {}
        for m in METRICS:
            values = [evals[r][cond][m] for r in replicates if m in evals[r].get(cond, {})]
            if values:
                out[cond][m] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in summarize(values, confidence).items()}
    seeds = [trains[r]["effective_seed"] for r in replicates]
    out["replicates"] = {"n": len(replicates), "effective_seeds": seeds, "confidence": confidence}
    return out


def report(agg: dict, evals: dict[int, dict], trains: dict[int, dict]) -> str:
    reps = sorted(evals)
    conf = agg["replicates"]["confidence"]
    shown = [m for m in METRICS if any(m in b for c, b in agg.items() if c != "replicates")]
    lines = [
        "# Results across seed replicates", "",
        f"{len(reps)} replicates, effective seeds {', '.join(map(str, agg['replicates']['effective_seeds']))}. "
        f"Cells: mean ± sample std [{conf:.0%} t-interval of the mean]. EER in %. Row `dev`: the clean dev split "
        "(where the calibration is fitted).", "",
        "| condition | " + " | ".join(LABELS[m] for m in shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    flagged = False
    for cond, block in agg.items():
        if cond == "replicates":
            continue
        cells = []
        for m in shown:
            if m not in block:
                cells.append("–")
                continue
            s = block[m]
            scale, fmt = (100, "{:.3f}") if m == "eer" else (1, "{:.5f}")
            f = lambda v: "–" if v is None else fmt.format(v * scale)  # noqa: E731
            # an interval past the metric's bound is shown as computed (not clipped) and marked
            mark = " †" if crosses_bounds(s["ci_low"], s["ci_high"], metric_bounds(m)) else ""
            flagged = flagged or bool(mark)
            cells.append(f"{f(s['mean'])} ± {f(s['std'])} [{f(s['ci_low'])}, {f(s['ci_high'])}]{mark}")
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    if flagged:
        lines += ["", "† The interval reaches past the metric's possible values (EER and minDCF lie in [0, 1], "
                  "actDCF and Cllr are ≥ 0): shown as computed, not clipped; too few replicates for a tight interval."]
    lines += ["", "## Per replicate (EER %)", "",
              "| replicate | seed | " + " | ".join(c for c in agg if c != "replicates") + " |",
              "|---|---|" + "---|" * (len(agg) - 1)]
    for r in reps:
        cells = [f"{100 * evals[r][c]['eer']:.3f}" if c in evals[r] else "–" for c in agg if c != "replicates"]
        lines.append(f"| r{r} | {trains[r]['effective_seed']} | " + " | ".join(cells) + " |")
    lines += group_table("EER per attack, clean audio (%)", "attack", "attack_eer", evals)
    lines += group_table("EER per codec condition of the corpus, unmodified audio (%)", "codec", "corpus_codec_eer", evals)
    t = f"t = {t_quantile(0.5 + conf / 2, len(reps) - 1):.2f}" if len(reps) > 1 else "no interval from one replicate"
    lines += ["", "Two experiments differ beyond seed noise only if the difference of their means is large against",
              f"these standard deviations. With {len(reps)} replicates the interval is wide ({t} at {conf:.0%}): add",
              "replicates (`dvc exp run -S 'replicates=[0,1,2,3,4]'`, only new ones train) before trusting a small gain.", ""]
    if "cllr_cal" in agg.get("clean", {}):
        lines += ["actDCF and Cllr read scores as log-likelihood ratios. The raw score (bona fide logit minus spoof logit) is",
                  "not one; *calibrated* is the linear map fitted on each replicate's dev scores (logistic regression at the",
                  "ASVspoof 5 operating point), and minCllr is the floor no monotone calibration can beat. Cllr above 1 bit",
                  "is worse than always answering \"don't know\".", ""]
    lines += ["## Figures", ""] + [f"![{title}](figures/{name}.svg)" for name, title in FIGURE_TITLES.items()] + [""]
    return "\n".join(lines)


def group_table(title: str, column: str, key: str, evals: dict[int, dict]) -> list[str]:
    """Markdown lines: EER per group (attack, corpus codec) as mean ± std and per replicate."""
    reps = sorted(evals)
    groups = sorted({g for r in reps for g in evals[r].get(key, {})})
    if not groups:
        return []
    lines = ["", f"## {title}", "", f"| {column} | mean ± std | " + " | ".join(f"r{r}" for r in reps) + " |",
             "|---|---|" + "---|" * len(reps)]
    for g in groups:
        values = {r: evals[r][key][g] for r in reps if g in evals[r].get(key, {})}
        s = summarize(list(values.values()))
        spread = "–" if s["std"] is None else f"{100 * s['std']:.3f}"
        cells = [f"{100 * values[r]:.3f}" if r in values else "–" for r in reps]
        lines.append(f"| {g} | {100 * s['mean']:.3f} ± {spread} | " + " | ".join(cells) + " |")
    return lines


FIGURE_TITLES = {"train_loss": "Training loss per epoch", "dev_eer": "Dev EER per epoch",
                 "det": "DET curves per condition", "calibration": "Cllr per condition"}


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise UserError(f"{path} not found: run dvc repro (the train and evaluate stages write it)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)  # values pass through unchanged


def _stack(frames: dict[int, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(replicate=str(r))[["replicate", *f.columns]] for r, f in frames.items()], ignore_index=True)


def replicate_plot_data(replicates: list[int], conditions: list[str]) -> dict[str, pd.DataFrame]:
    """Every replicate's curves, DET points (every condition) and clean score histograms in three tables."""
    curves = _stack({r: _read_csv(Path(f"plots/train/r{r}.csv")) for r in replicates})
    det = pd.concat([_stack({r: _read_csv(Path(f"plots/det/r{r}/{c}.csv")) for r in replicates})
                     .assign(condition=c, condition_order=str(i)) for i, c in enumerate(conditions)], ignore_index=True)
    hist = _stack({r: _read_csv(Path(f"plots/hist/r{r}/clean.csv")) for r in replicates})
    hist = hist.melt(id_vars=["replicate", "bin_center"], var_name="label", value_name="count")
    return {"curves": curves, "det": det, "hist": hist}


def calibration_rows(agg: dict) -> pd.DataFrame:
    """Mean Cllr per condition: raw, calibrated (if evaluate.calibration is not none) and minCllr."""
    rows = [(c, name, f"{b[m]['mean']:.6f}") for c, b in agg.items() if c != "replicates"
            for name, m in (("raw", "cllr"), ("calibrated", "cllr_cal"), ("minimum (PAV)", "min_cllr")) if m in b]
    return pd.DataFrame(rows, columns=["condition", "scores", "cllr"])


def write_plots(agg: dict, data: dict[str, pd.DataFrame], calib: pd.DataFrame) -> None:
    """Plot data for `dvc plots show` and the report's SVG figures (deterministic bytes)."""
    for name, frame in data.items():
        atomic_write_text(PLOT_DATA / f"{name}.csv", frame.to_csv(index=False, lineterminator="\n"))
    bars = "".join(f"{c},{100 * b['eer']['mean']:.3f}\n" for c, b in agg.items() if c not in ("replicates", "dev"))
    atomic_write_text("plots/eer_by_condition.csv", "condition,eer_percent\n" + bars)
    atomic_write_text("plots/calibration.csv", calib.to_csv(index=False, lineterminator="\n"))
    records = {k: v.to_dict("records") for k, v in data.items()}
    figures = {
        "train_loss": plots.figure("replicates", records["curves"], "epoch", "train_loss", FIGURE_TITLES["train_loss"]),
        "dev_eer": plots.figure("replicates", records["curves"], "epoch", "dev_eer", FIGURE_TITLES["dev_eer"]),
        "det": plots.figure("det_replicates", records["det"], "probit_fa", "probit_miss", FIGURE_TITLES["det"]),
        "calibration": plots.figure("calibration", calib.to_dict("records"), "cllr", "condition",
                                    FIGURE_TITLES["calibration"] + " (mean over replicates)"),
    }
    for name, spec in figures.items():
        save_chart(spec, FIGURES / f"{name}.svg")


def body(args: argparse.Namespace, params: dict) -> None:
    evals, trains = read_replicates(params["replicates"])
    agg = aggregate(evals, trains, params["aggregate"]["confidence"])
    atomic_write_json("metrics/aggregate.json", {"aggregate": agg})
    atomic_write_text("reports/aggregate.md", report(agg, evals, trains))
    conditions = [c for c in agg if c not in ("replicates", "pooled", "dev")]
    write_plots(agg, replicate_plot_data(sorted(evals), conditions), calibration_rows(agg))
    e = agg.get("pooled", {}).get("eer", {})
    print(f"aggregate: pooled EER {100 * e['mean']:.3f}% over {e['n']} replicates")


def main(argv: list[str] | None = None) -> int:
    return run_stage("aggregate", __doc__, body, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage `aggregate`: statistics across the seed replicates of one experiment.

Reads metrics/eval/r<r>.json and metrics/train/r<r>.json of every replicate in `replicates` and writes,
per condition (pooled, clean, each codec condition) and metric (EER, minDCF, actDCF, Cllr): mean,
sample standard deviation, a Student-t confidence interval for the mean (`aggregate.confidence`),
min, max and n, plus the replicates' effective seeds. metrics/aggregate.json is what `dvc exp show` and
`dvc metrics diff` compare; reports/aggregate.md is the same as a readable table (plus EER per attack),
and plots/eer_by_condition.csv feeds the EER-per-condition bar chart of `dvc plots show`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from antispoof.cli import run_stage
from antispoof.errors import UserError
from antispoof.repro import atomic_write_json, atomic_write_text
from antispoof.stats import crosses_bounds, metric_bounds, summarize, t_quantile

METRICS = ("eer", "min_dcf", "act_dcf", "cllr")
LABELS = {"eer": "EER (%)", "min_dcf": "minDCF", "act_dcf": "actDCF", "cllr": "Cllr (bits)"}


def read_replicates(replicates: list[int]) -> tuple[dict[int, dict], dict[int, dict]]:
    evals, trains = {}, {}
    for r in replicates:
        for kind, into in (("eval", evals), ("train", trains)):
            path = Path(f"metrics/{kind}/r{r}.json")
            if not path.exists():
                raise UserError(f"{path} not found: replicate {r} has not been {kind}ed (run dvc repro)")
            into[r] = json.loads(path.read_text())[f"{kind}_r{r}"]
    return evals, trains


def aggregate(evals: dict[int, dict], trains: dict[int, dict], confidence: float) -> dict:
    replicates = sorted(evals)
    conditions = [c for c in evals[replicates[0]] if c not in ("attack_eer", "corpus_codec_eer")]
    out: dict = {}
    for cond in conditions:
        out[cond] = {}
        for m in METRICS:
            values = [evals[r][cond][m] for r in replicates if cond in evals[r]]
            out[cond][m] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in summarize(values, confidence).items()}
    seeds = [trains[r]["effective_seed"] for r in replicates]
    out["replicates"] = {"n": len(replicates), "effective_seeds": seeds, "confidence": confidence}
    return out


def report(agg: dict, evals: dict[int, dict], trains: dict[int, dict]) -> str:
    reps = sorted(evals)
    conf = agg["replicates"]["confidence"]
    lines = [
        "# Results across seed replicates", "",
        f"{len(reps)} replicates, effective seeds {', '.join(map(str, agg['replicates']['effective_seeds']))}. "
        f"Cells: mean ± sample std [{conf:.0%} t-interval of the mean]. EER in %.", "",
        "| condition | " + " | ".join(LABELS[m] for m in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    flagged = False
    for cond, block in agg.items():
        if cond == "replicates":
            continue
        cells = []
        for m in METRICS:
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
        cells = [f"{100 * evals[r][c]['eer']:.3f}" for c in agg if c != "replicates"]
        lines.append(f"| r{r} | {trains[r]['effective_seed']} | " + " | ".join(cells) + " |")
    lines += group_table("EER per attack, clean audio (%)", "attack", "attack_eer", evals)
    lines += group_table("EER per codec condition of the corpus, unmodified audio (%)", "codec", "corpus_codec_eer", evals)
    t = f"t = {t_quantile(0.5 + conf / 2, len(reps) - 1):.2f}" if len(reps) > 1 else "no interval from one replicate"
    lines += ["", "Two experiments differ beyond seed noise only if the difference of their means is large against",
              f"these standard deviations. With {len(reps)} replicates the interval is wide ({t} at {conf:.0%}): add",
              "replicates (`dvc exp run -S 'replicates=[0,1,2,3,4]'`, only new ones train) before trusting a small gain.", ""]
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


def body(args: argparse.Namespace, params: dict) -> None:
    evals, trains = read_replicates(params["replicates"])
    agg = aggregate(evals, trains, params["aggregate"]["confidence"])
    atomic_write_json("metrics/aggregate.json", {"aggregate": agg})
    atomic_write_text("reports/aggregate.md", report(agg, evals, trains))
    bars = "".join(f"{c},{100 * b['eer']['mean']:.3f}\n" for c, b in agg.items() if c != "replicates")
    atomic_write_text("plots/eer_by_condition.csv", "condition,eer_percent\n" + bars)
    e = agg.get("pooled", {}).get("eer", {})
    print(f"aggregate: pooled EER {100 * e['mean']:.3f}% over {e['n']} replicates")


def main(argv: list[str] | None = None) -> int:
    return run_stage("aggregate", __doc__, body, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())

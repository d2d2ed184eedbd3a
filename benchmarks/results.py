"""What calibration, the replicate plots and the registry add to a pipeline run, against the evaluate work
they sit next to. Run in a workspace after `dvc repro` (it reads models/r0 and the data; it writes only to
a temporary directory):

    uv run python benchmarks/results.py [--reps 3] [--replicate 0]

Timed, median over --reps, for one replicate:
- eval_scoring: scoring the eval split under every condition (what evaluate did before; the baseline);
- dev_scoring:  the added pass over the clean dev split (the calibration's input);
- calibration:  the logistic fit plus minCllr and calibrated metrics for every condition;
- figures:      aggregate's four SVG figures (vl-convert, in a fresh process as in the stage);
- template:     the offline `dvc plots show` page (vl-convert's Vega bundle; the plots-template stage,
                which runs once, not per experiment).
Headline:
    results: eval_scoring_s=<a> dev_scoring_s=<b> calibration_s=<c> figures_s=<d> template_s=<e> added_per_replicate_ratio=<(b+c)/a>
No asserts: numbers only.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from antispoof import evaluate
from antispoof.data import load_split, read_manifest
from antispoof.params import load_params

FIGURE_CODE = """
import json, sys
from antispoof import plots
from antispoof.vega import save_chart
rows = [{"replicate": str(r), "epoch": str(e), "train_loss": str(1 / (e + r)), "dev_eer": str(0.1 / e)} for r in range(3) for e in range(1, 13)]
for i, y in enumerate(("train_loss", "dev_eer", "train_loss", "dev_eer")):
    save_chart(plots.figure("replicates", rows, "epoch", y, y), f"{sys.argv[1]}/{i}.svg")
"""


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--replicate", type=int, default=0)
    args = parser.parse_args()
    params = load_params()
    r = args.replicate
    model = evaluate.load_model(r, params)
    rows, clean, store, crop = evaluate.eval_inputs(params)
    conditions = evaluate.eval_conditions(store)
    tables = []

    def eval_scoring():
        tables.clear()
        for cond in conditions:
            ids, scores = evaluate.score_condition(model, cond, rows, clean, store, crop)
            part = rows.set_index("utt_id").loc[ids, ["label"]].reset_index()
            part["score"], part["condition"] = scores, cond
            tables.append(part)

    t_eval = timed(eval_scoring, args.reps)
    dev = {}

    def dev_scoring():  # what evaluate.score_dev does, minus writing the score file
        dev_rows, audio = load_split(read_manifest(), "dev", params["data"]["root"], params["data"]["sample_rate"])
        ids, scores = evaluate.score_condition(model, "clean", dev_rows, audio, None, crop)
        is_bona = (dev_rows.set_index("utt_id").loc[ids, "label"] == "bonafide").to_numpy()
        dev["scores"] = scores[is_bona], scores[~is_bona]

    t_dev = timed(dev_scoring, args.reps)
    table = pd.concat(tables, ignore_index=True)
    t_cal = timed(lambda: evaluate.calibration_metrics(table, evaluate.fit_calibration("logistic", dev["scores"])),
                  args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        t_fig = timed(lambda: subprocess.run([sys.executable, "-c", FIGURE_CODE, tmp], check=True), args.reps)
        t_tpl = timed(lambda: subprocess.run([sys.executable, "-m", "antispoof.plots", "--html-template",
                                              f"{tmp}/offline.html"], check=True, capture_output=True), 1)
    print(f"{'part':<14}{'seconds':>10}")
    for name, t in (("eval_scoring", t_eval), ("dev_scoring", t_dev), ("calibration", t_cal), ("figures", t_fig),
                    ("template", t_tpl)):
        print(f"{name:<14}{t:>10.3f}")
    print(f"results: eval_scoring_s={t_eval:.3f} dev_scoring_s={t_dev:.3f} calibration_s={t_cal:.3f} "
          f"figures_s={t_fig:.3f} template_s={t_tpl:.3f} added_per_replicate_ratio={(t_dev + t_cal) / t_eval:.3f}")


if __name__ == "__main__":
    main()

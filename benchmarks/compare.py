"""Time `antispoof-compare` takes beyond `dvc exp show --json`, for 50 experiments.

    uv run python benchmarks/compare.py [--experiments 50] [--configs 10] [--reps 5]

Everything compare needs per replicate (metrics/eval/r<r>.json, metrics/train/r<r>.json) is inside the
`dvc exp show --json` listing, so compare does no `git show` per revision: its cost beyond exp show is
parsing that JSON, the statistics and the output. The listing here has the real shape: the workspace
row of this repository's own `dvc exp show --json` (every metrics file, deps, outs), copied to
--experiments experiments (--configs values of model.lcnn.dropout x master seeds, 3 replicates each, values
drawn from a fixed generator, effective seeds from replicate_seed). Timed, median over --reps:
- exp_show:  `dvc exp show --json` in this repository (its rows only: the reference cost, which grows
             with the number of experiments on DVC's side);
- analyse:   compare's analysis of the 50-experiment listing in this process (text output);
- power:     the same with --power (a noncentral-t search per comparison);
- cli:       `python -m antispoof.compare --from-json LISTING --power` as a process (start-up included).
Headline:
    compare: experiments=50 exp_show_s=<a> analyse_s=<b> power_s=<c> cli_s=<d> target_s=10
No asserts: numbers only.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from antispoof.compare import main as compare_main
from antispoof.repro.seeding import replicate_seed

ROOT = Path(__file__).resolve().parents[1]


def exp_show() -> list:
    out = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def listing(real: list, experiments: int, configs: int) -> list:
    """A `dvc exp show --json` listing with `experiments` experiments built on a real row."""
    template = next(row for row in real if row["rev"] != "workspace")["data"]
    rng = np.random.default_rng(0)
    exps = []
    for i in range(experiments):
        dropout, seed = round(0.05 * (i % configs), 2), 1000 + i // configs
        data = copy.deepcopy(template)
        params = data["params"]["params.yaml"]["data"]
        params.update(seed=seed, replicates=[0, 1, 2])
        params["model"]["lcnn"]["dropout"] = dropout
        for r in (0, 1, 2):
            ev = data["metrics"][f"metrics/eval/r{r}.json"]["data"][f"eval_r{r}"]
            for cond in ev.values():
                for m in ("eer", "min_dcf", "act_dcf", "cllr"):
                    if isinstance(cond, dict) and m in cond:
                        cond[m] = round(float(rng.uniform(0.05, 0.4)) + 0.002 * (i % configs), 6)
            data["metrics"][f"metrics/train/r{r}.json"]["data"][f"train_r{r}"]["effective_seed"] = replicate_seed(seed, r)
        exps.append({"name": f"exp-{i:02d}", "executor": {"state": "success"},
                     "revs": [{"rev": f"{i:040x}", "name": f"exp-{i:02d}", "data": data, "error": None}]})
    base = copy.deepcopy(next(row for row in real if row["rev"] != "workspace"))
    base["experiments"] = exps
    return [base]


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", type=int, default=50)
    ap.add_argument("--configs", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    real = exp_show()
    exp_show_s = timed(exp_show, args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "listing.json"
        path.write_text(json.dumps(listing(real, args.experiments, args.configs)))

        def run(*extra):
            with redirect_stdout(io.StringIO()):
                assert compare_main(["--from-json", str(path), *extra]) == 0

        analyse_s = timed(run, args.reps)
        power_s = timed(lambda: run("--power"), args.reps)
        cli = [sys.executable, "-m", "antispoof.compare", "--from-json", str(path), "--power"]
        cli_s = timed(lambda: subprocess.run(cli, check=True, capture_output=True), args.reps)
    print(f"{'step':<10} {'median s':>9}")
    for name, value in (("exp_show", exp_show_s), ("analyse", analyse_s), ("power", power_s), ("cli", cli_s)):
        print(f"{name:<10} {value:>9.3f}")
    print(f"compare: experiments={args.experiments} exp_show_s={exp_show_s:.2f} analyse_s={analyse_s:.2f} "
          f"power_s={power_s:.2f} cli_s={cli_s:.2f} target_s=10")


if __name__ == "__main__":
    main()

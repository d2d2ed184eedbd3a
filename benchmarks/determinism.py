"""Price of determinism: time per training epoch with `deterministic: true` vs `false`.

    uv run python benchmarks/determinism.py [--reps 5] [--utterances-per-speaker 40] [--channels 16 24 32]

Makes a synthetic corpus once (`python -m antispoof.prepare` in a temp dir, default params.yaml otherwise:
model, batch size, crop, num_threads; augment.prob 0, so no codec stage is needed), then trains one full
epoch (optimisation steps plus the epoch-end dev EER, exactly as the train stage: `train.setup` and
`train.train_loop`) --reps times per mode, alternating modes (false, true, false, true, ...) so drift in
machine load hits both alike. `deterministic: false` is the baseline. Data loading (`setup`) is not timed.
Prints per-mode medians, the ratio, whether the two modes gave bit-identical weights, and a headline:
    determinism: nondeterministic_s_per_epoch=<a> deterministic_s_per_epoch=<b> ratio=<b/a> steps_per_epoch=<n>
No asserts: numbers only.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from antispoof import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--utterances-per-speaker", type=int, default=40)
    ap.add_argument("--channels", type=int, nargs="+", default=None, help="model.lcnn.channels (default: params.yaml)")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["synthetic"]["utterances_per_speaker"] = args.utterances_per_speaker
    params["augment"]["prob"] = 0
    params["runtime"]["num_workers"] = 0
    if args.channels:
        params["model"]["lcnn"]["channels"] = args.channels

    with tempfile.TemporaryDirectory(prefix="determinism-bench-") as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ANTISPOOF_CACHE_DIR": str(Path(tmp) / "cache")}
        subprocess.run([sys.executable, "-m", "antispoof.prepare"], cwd=tmp, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chdir(tmp)  # the stages read data/ relative to the working directory
        times: dict[bool, list[float]] = {False: [], True: []}
        weights: dict[bool, dict] = {}
        steps = 0
        for rep in range(args.reps + 1):  # round 0 warms up (first-call costs) and is dropped
            for deterministic in (False, True):
                p = copy.deepcopy(params)
                p["deterministic"] = deterministic
                run = train.setup(p, 0)
                state = train.new_state()
                steps = run.steps_per_epoch
                t = time.perf_counter()
                train.train_loop(run, state, lambda s: None, until_step=run.steps_per_epoch)
                elapsed = time.perf_counter() - t
                if rep:
                    times[deterministic].append(elapsed)
                weights[deterministic] = {k: v.clone() for k, v in run.model.state_dict().items()}
        os.chdir(ROOT)

    a, b = statistics.median(times[False]), statistics.median(times[True])
    same = all(torch.equal(weights[False][k], weights[True][k]) for k in weights[True])
    print(f"one epoch = {steps} steps of batch {params['train']['batch_size']} + dev EER; model channels "
          f"{params['model']['lcnn']['channels']}; {params['num_threads']} threads; median of {args.reps} per mode; torch {torch.__version__}")
    print(f"  deterministic false (baseline): {a:.3f} s/epoch  ({1000 * a / steps:.1f} ms/step incl. dev EER share)")
    print(f"  deterministic true:             {b:.3f} s/epoch  ({1000 * b / steps:.1f} ms/step incl. dev EER share)")
    print(f"  ratio true/false: {b / a:.3f}; weights after the epoch bit-identical across modes: {'yes' if same else 'no'}")
    print(f"determinism: nondeterministic_s_per_epoch={a:.3f} deterministic_s_per_epoch={b:.3f} ratio={b / a:.3f} "
          f"steps_per_epoch={steps}")


if __name__ == "__main__":
    main()

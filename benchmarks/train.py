"""Training throughput per model, and whether data loading keeps up (issue: beyond one process).

    uv run dvc repro augment-cache          # once: the built-in corpus, prepared, with codec shards
    uv run python benchmarks/train.py [--models lcnn aasist_light] [--steps 12] [--num-workers N] [--batch-size B]

For each model of the registry at its params.yaml default size, in a fresh subprocess each (so peak RSS
is the model's own), on this project's prepared data with the default params otherwise (its
`crop_samples`, codec augmentation; train.batch_size unless --batch-size: samples/s hardly depends on
it on a CPU, and the published sizes take minutes per default batch here). `ssl` is measured at the size
researchers fine-tune, WavLM Base+ (transformers' WavLMConfig defaults: 12 layers of 768, 94 M
parameters), with random weights from a saved config.json (`model.ssl.random_init: true`): no
pretrained weights ship here, and the cost of a step does not depend on the weights' values.

- train: `train.setup`'s loader and `train.optimisation_step` for --steps optimiser steps after 2 warm-up
  steps -> samples_per_s (loading included, as in training);
- loader: the same loader (same dataset, sampler, workers) iterated for the same batches with the model
  removed -> loader_samples_per_s;
- loader_ratio = loader_samples_per_s / samples_per_s (the target: >= 3 for every model);
- peak_rss_mb: the subprocess's peak resident set (its loader workers included).

Prints one line per model:

    train: model=lcnn samples_per_s=... loader_samples_per_s=... loader_ratio=... peak_rss_mb=...

Numbers only, no asserts. The machine is shared: run it more than once and quote medians.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wavlm_base_plus_config(directory: Path) -> Path:
    """A Hugging Face model directory holding only WavLM Base+'s config.json (the architecture)."""
    from transformers import WavLMConfig

    WavLMConfig().save_pretrained(directory)
    return directory


def measure(model: str, steps: int, num_workers: int, batch_size: int | None) -> dict:
    """In this process: train `steps` steps of `model`, then iterate its loader alone."""
    import tempfile

    from antispoof.params import load_params
    from antispoof.train import group_totals, micro_batch_groups, new_state, optimisation_step, setup

    params = load_params(REPO / "params.yaml")
    params["model"]["name"] = model
    if model == "ssl":
        weights = wavlm_base_plus_config(Path(tempfile.mkdtemp(prefix="wavlm-base-plus-")))
        params["model"]["ssl"].update({"weights": str(weights), "random_init": True})
    params["runtime"]["num_workers"] = num_workers
    if batch_size is not None:
        params["train"]["batch_size"] = batch_size
    run = setup(params, 0)
    state = new_state()
    run.network.train()
    groups = micro_batch_groups(run.loader, run.tp["grad_accum"])
    timed, trained = 0.0, 0
    for i in range(steps + 2):  # an epoch of the built-in corpus is 23 default steps: enough
        start = time.perf_counter()
        group = next(groups)
        w, n, _ = group_totals(run, state, len(group))
        optimisation_step(run, state, group, (w, n))
        if i >= 2:
            timed += time.perf_counter() - start
            trained += n
    del groups
    # The loader alone: the same epoch's batches, from the start, same workers, nothing else.
    run.batches.epoch, run.batches.start = 0, 0
    loaded, start_l = 0, None
    for i, (x, y, d) in enumerate(run.loader):
        if i == 2:
            start_l = time.perf_counter()
        elif i > 2:
            loaded += len(y)
        if i == steps + 2:
            break
    loader_time = time.perf_counter() - start_l
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return {"model": model, "samples_per_s": trained / timed, "loader_samples_per_s": loaded / loader_time,
            "peak_rss_mb": rss, "parameters": sum(p.numel() for p in run.model.parameters()),
            "batch_size": params["train"]["batch_size"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=None, help="models to measure (default: every registered one)")
    ap.add_argument("--steps", type=int, default=12, help="timed optimiser steps per model (after 2 warm-up steps)")
    ap.add_argument("--num-workers", type=int, default=0, help="runtime.num_workers for the loader")
    ap.add_argument("--batch-size", type=int, default=None, help="train.batch_size (default: params.yaml's)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.chdir(REPO)
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.num_workers, args.batch_size)))
        return 0
    if not Path("data/augmented/index.csv").exists():
        print("benchmarks/train.py: run `uv run dvc repro augment-cache` first (needs the prepared corpus)", file=sys.stderr)
        return 2
    from antispoof.models import REGISTRY

    for model in args.models or list(REGISTRY):
        proc = subprocess.run([sys.executable, __file__, "--child", model, "--steps", str(args.steps),
                               "--num-workers", str(args.num_workers)]
                              + ([] if args.batch_size is None else ["--batch-size", str(args.batch_size)]),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"train: model={model} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"train: model={model} samples_per_s={r['samples_per_s']:.1f} loader_samples_per_s="
              f"{r['loader_samples_per_s']:.1f} loader_ratio={r['loader_samples_per_s'] / r['samples_per_s']:.1f} "
              f"peak_rss_mb={r['peak_rss_mb']:.0f} parameters={r['parameters']} batch_size={r['batch_size']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

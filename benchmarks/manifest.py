"""Cost of the prepare stage's manifest: decoding and hashing every file, serial vs a thread pool.

    uv run python benchmarks/manifest.py [--workers N] [--reps 5]

Builds the manifest of the corpus that params.yaml's `data` section points at (by default the
built-in corpus in data/raw: run `uv run dvc repro prepare` first) with `datasets.build_manifest`,
alternating one thread (the baseline, as before the pool) and --workers threads (default: the usable
cores), and checks that both give the same bytes. Prints medians per file and one line:
    manifest: files=<n> serial_ms_per_file=<a> pool_ms_per_file=<b> workers=<w> speedup=<a/b>
No asserts: numbers only. ASVspoof 5 train (182,357 files) takes about n x ms_per_file / 1000 s.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from antispoof.datasets import build_manifest
from antispoof.params import load_params, pool_workers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=0, help="threads of the pool (default: usable cores)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each (default %(default)s)")
    args = ap.parse_args(argv)

    params = load_params("params.yaml")
    workers = args.workers or pool_workers({"runtime": {"num_workers": 0}})
    repo = Path.cwd()
    times: dict[str, list[float]] = {"serial": [], "pool": []}
    outputs = {}
    for _ in range(args.reps):
        for name, w in (("serial", 1), ("pool", workers)):
            t = time.perf_counter()
            m = build_manifest(params["data"], repo, progress=False, workers=w)
            times[name].append(time.perf_counter() - t)
            outputs[name] = m.to_csv(index=False)
    n = len(m)
    ms = {k: 1000 * statistics.median(v) / n for k, v in times.items()}
    print(f"{n} files; seconds per run: serial {[round(x, 2) for x in times['serial']]} "
          f"pool({workers}) {[round(x, 2) for x in times['pool']]}; identical: {outputs['serial'] == outputs['pool']}")
    print(f"manifest: files={n} serial_ms_per_file={ms['serial']:.2f} pool_ms_per_file={ms['pool']:.2f} "
          f"workers={workers} speedup={ms['serial'] / ms['pool']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

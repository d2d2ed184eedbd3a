"""Cost of a resumable checkpoint: time per save (and load) and bytes per checkpoint.

    uv run python benchmarks/checkpoint.py [--reps 21] [--channels 16 24 32]

The state is exactly what the train stage checkpoints (`train.checkpoint_state`: model, Adam state after
one real optimisation step, cursor, history, every RNG state, versions) for the model of params.yaml
(or --channels). Timed, in alternation, median over --reps:
- baseline: `torch.save(state, path)` — what a plain training script does (no checksum, no fsync);
- ours:     `CheckpointStore.save` — serialise, load back with weights_only=True (refuse what could not
            be resumed), sha256 header, temp file + fsync + atomic rename + directory fsync, pruning;
- load:     `CheckpointStore.latest()` — checksum, weights_only load, required keys.
Prints a table and a headline line:
    checkpoint: baseline_ms=<a> ours_ms=<b> ratio=<b/a> load_ms=<c> bytes=<n> model_bytes=<m>
No asserts: numbers only.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
from pathlib import Path

import torch
import yaml

from antispoof.models import build_model
from antispoof.repro.checkpoint import REQUIRED_KEYS, CheckpointStore
from antispoof.repro.seeding import seed_everything
from antispoof.objectives import ERM
from antispoof.train import checkpoint_state, new_state, train_crop

ROOT = Path(__file__).resolve().parents[1]


def make_run(params: dict) -> tuple[types.SimpleNamespace, dict]:
    """A model and optimiser after one real step, with a training state of a finished default run."""
    sr = params["data"]["sample_rate"]
    model = build_model(params["model"], sr)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["train"]["lr"], weight_decay=params["train"]["weight_decay"])
    x = torch.randn(params["train"]["batch_size"], train_crop(params))
    y = torch.randint(0, 2, (params["train"]["batch_size"],))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    state = new_state()
    state["history"] = [{"epoch": e + 1, "step": 23 * (e + 1), "train_loss": 0.5, "dev_eer": 0.1}
                        for e in range(params["train"]["epochs"])]
    state["global_step"] = 23 * params["train"]["epochs"]
    return types.SimpleNamespace(model=model, optimizer=optimizer, run_id="0" * 64, objective=ERM(),
                                 scaler=torch.amp.GradScaler("cpu", enabled=False)), state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--channels", type=int, nargs="+", default=None, help="model.lcnn.channels (default: params.yaml)")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.channels:
        params["model"]["lcnn"]["channels"] = args.channels
    seed_everything(params["seed"], params["deterministic"], params["num_threads"])
    run, state = make_run(params)
    n_params = sum(p.numel() for p in run.model.parameters())

    with tempfile.TemporaryDirectory(prefix="ckpt-bench-") as tmp:
        tmp = Path(tmp)
        store = CheckpointStore(tmp / "store", keep=3)
        base, ours, load = [], [], []
        first = state["global_step"]
        for i in range(args.reps + 1):  # the first round warms up (imports, page cache) and is dropped
            state["global_step"] = first + i
            ckpt = checkpoint_state(run, state)
            t = time.perf_counter()
            torch.save(ckpt, tmp / f"plain-{i % 3}.pt")
            t_base = time.perf_counter() - t
            t = time.perf_counter()
            store.save(state["global_step"], ckpt)
            t_ours = time.perf_counter() - t
            t = time.perf_counter()
            store.latest(required=REQUIRED_KEYS)
            t_load = time.perf_counter() - t
            if i:
                base.append(t_base)
                ours.append(t_ours)
                load.append(t_load)
        size = store.path_for(state["global_step"]).stat().st_size
        plain_size = (tmp / "plain-0.pt").stat().st_size
        torch.save(run.model.state_dict(), tmp / "model.pt")
        model_size = (tmp / "model.pt").stat().st_size

    med = {k: 1000 * statistics.median(v) for k, v in (("base", base), ("ours", ours), ("load", load))}
    print(f"model {params['model']['name']} channels {params['model']['lcnn']['channels']}: {n_params} parameters; "
          f"median of {args.reps} repeats, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  {'':<34}{'ms':>9}{'bytes':>11}")
    print(f"  {'baseline torch.save(state)':<34}{med['base']:>9.2f}{plain_size:>11}")
    print(f"  {'ours CheckpointStore.save':<34}{med['ours']:>9.2f}{size:>11}")
    print(f"  {'ours CheckpointStore.latest (load)':<34}{med['load']:>9.2f}")
    print(f"  {'final model.pt (weights only)':<34}{'':>9}{model_size:>11}")
    print(f"checkpoint: baseline_ms={med['base']:.2f} ours_ms={med['ours']:.2f} ratio={med['ours'] / med['base']:.2f} "
          f"load_ms={med['load']:.2f} bytes={size} model_bytes={model_size}")


if __name__ == "__main__":
    main()

"""Stage `train`: train replicate r's detector, resumably and bit-reproducibly.

Replicate r trains with seed `seed` (r = 0) or `replicate_seed(seed, r)`. Each step samples a batch in
the order `epoch_permutation(seed, epoch)`; each sample is a random crop of the clean clip or, with
probability `augment.prob`, of one of its codec variants — both drawn from a counter-based generator keyed
by (seed, epoch, index). Loss: class-weighted cross-entropy; optimiser: Adam; a fixed epoch budget (or
early stopping on dev EER with `train.patience`).

Resumable checkpoints (model, optimiser, cursor, RNG states, history) go to the resume store under
$ANTISPOOF_CACHE_DIR/checkpoints/<run fingerprint>/; a re-run with the same fingerprint continues from
the newest valid checkpoint without replaying consumed batches.

Outputs: models/r<r>/model.pt (+ model.json), metrics/train/r<r>.json, plots/train/r<r>.csv.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from antispoof import metrics
from antispoof.cli import run_stage
from antispoof.data import (AUGMENTED, MANIFEST, EpochBatches, ScoringBatches, ScoringSet, TrainingSet, collate,
                            SplitClips, dev_subset, load_split, read_manifest)
from antispoof.errors import ParamError, UserError
from antispoof.models import build_model, crop_samples, scores_from_logits, select_device, selected
from antispoof.repro import atomic_open, atomic_write_json, atomic_write_text, cache_dir
from antispoof.repro.checkpoint import REQUIRED_KEYS, CheckpointStore, capture_rng_state, library_versions, restore_rng_state
from antispoof.repro.hashing import code_version, file_digest, fingerprint
from antispoof.repro.lock import run_lock
from antispoof.repro.seeding import replicate_seed, seed_everything
from antispoof.shards import AugmentedStore

# Source files whose content is part of the run fingerprint (dvc.yaml lists the same ones as deps).
CODE = ["train.py", "data.py", "datasets.py", "models", "audio.py", "audio_store.py", "shards.py", "metrics.py", "repro"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicate", type=int, required=True, help="replicate index (one of params 'replicates')")
    parser.add_argument("--no-resume", action="store_true", help="ignore resumable checkpoints and start over")


def run_fingerprint(params: dict, effective_seed: int) -> dict:
    """Everything that determines the trained weights. Same fingerprint => same run => safe to resume."""
    return {
        "effective_seed": effective_seed,
        "deterministic": params["deterministic"],
        "num_threads": params["num_threads"],
        "sample_rate": params["data"]["sample_rate"],
        "model": selected(params["model"]),
        "train": params["train"],
        "augment": {"prob": params["augment"]["prob"], "train": params["augment"]["train"]},
        "manifest": file_digest(MANIFEST),
        "augmented_index": file_digest(AUGMENTED / "index.csv"),
        "code": code_version(CODE),
        "torch": torch.__version__,
    }


def train_crop(params: dict) -> int:
    """Training crop length in samples: train.crop_seconds, or the model's own default."""
    seconds = params["train"]["crop_seconds"]
    return crop_samples(params["model"]) if seconds is None else int(round(seconds * params["data"]["sample_rate"]))


def run_id_for(params: dict, r: int) -> str:
    """Replicate r's run fingerprint (hex) under the current params, data and code."""
    return fingerprint(run_fingerprint(params, replicate_seed(params["seed"], r)))


def checkpoint_store(run_id: str) -> CheckpointStore:
    """The resume store of one run: shared by every experiment, keyed by the run fingerprint."""
    return CheckpointStore(cache_dir("checkpoints", run_id[:32]))


def dev_eer(model: torch.nn.Module, clips, labels: np.ndarray) -> float:
    """EER on the dev clips; NaN when they lack a class (then there is no early stopping signal)."""
    if len(set(labels.tolist())) < 2:
        return float("nan")
    scores = score_utterances(model, clips)
    return metrics.eer(scores[labels == 0], scores[labels == 1])


@torch.no_grad()
def score_utterances(model: torch.nn.Module, clips, crop: int | None = None, batch_size: int = 1,
                     num_workers: int = 0) -> np.ndarray:
    """Scores of `clips` (a sequence of 1-D arrays, e.g. data.SplitClips: read on access, so memory
    stays O(batch)), in their order. Full length (or a centre crop of `crop` samples). batch_size 1
    scores one clip per forward pass, so a score never depends on its neighbours; larger batches
    group clips of equal input length (data.ScoringBatches), whose scores may differ from one-at-a-time
    in the last float32 bits. `num_workers` loader processes read the clips; results do not depend on it."""
    model.eval()
    device = next(model.parameters()).device
    lengths = getattr(clips, "lengths", None)
    if lengths is None:  # a plain list of arrays
        lengths = np.array([len(x) for x in clips], dtype=np.int64)
    batches = ScoringBatches(lengths, crop, batch_size)
    # A private generator: a loader iterator must not draw from torch's global RNG (training's dropout).
    loader = DataLoader(ScoringSet(clips, crop), batch_sampler=batches, collate_fn=torch.stack,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    out = np.empty(len(lengths), dtype=np.float64)
    for positions, x in zip(batches, loader):
        out[positions] = scores_from_logits(model(x.to(device))).double().cpu().numpy()
    return out


@dataclass
class Run:
    """Everything fixed for one replicate's training run (built by `setup`); the mutable progress
    (cursor, early stopping, history) lives in a separate `state` dict that checkpoints save."""

    r: int
    tp: dict
    seed: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    batches: EpochBatches
    weight: torch.Tensor
    dev_clips: SplitClips  # the dev utterances of the early-stopping pass (train.dev_max_utterances)
    dev_labels: np.ndarray
    steps_per_epoch: int
    fp: dict
    run_id: str



def setup(params: dict, r: int) -> Run:
    """Seed, load the data and build model, optimiser and loader for replicate r (nothing trained yet)."""
    tp = params["train"]
    seed = replicate_seed(params["seed"], r)
    seed_everything(seed, params["deterministic"], params["num_threads"])
    sr = params["data"]["sample_rate"]

    manifest = read_manifest()
    rows, clips = load_split(manifest, "train", params["data"]["root"], sr)
    _, dev_clips = load_split(manifest, "dev", params["data"]["root"], sr)
    del manifest, rows  # the clips hold what is needed as small arrays; no audio is loaded here
    if len(clips) == 0 or len(set(clips.labels.tolist())) < 2:
        raise UserError(f"{MANIFEST}: the train split needs both bonafide and spoof utterances")
    dev_clips = dev_clips.subset(dev_subset(dev_clips.utt_ids, dev_clips.labels, tp["dev_max_utterances"]))
    variants = AugmentedStore(AUGMENTED) if params["augment"]["prob"] > 0 else None
    dataset = TrainingSet(clips, variants, seed, params["augment"]["prob"], train_crop(params))
    batches = EpochBatches(len(dataset), tp["batch_size"], seed)
    workers = params["runtime"]["num_workers"]
    # A private generator: creating a loader iterator must not consume the global torch RNG (dropout's),
    # or resuming and persistent workers would shift it. Samples draw from their own counter-based RNG.
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                        persistent_workers=workers > 0 and params["runtime"]["persistent_workers"],
                        generator=torch.Generator().manual_seed(0))

    # Initialisation draws from torch's seeded CPU RNG, so CPU and GPU runs start from the same weights.
    model = build_model(params["model"], sr).to(select_device(params["runtime"]["device"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=tp["lr"], weight_decay=tp["weight_decay"])
    labels = dataset.labels
    counts = np.bincount(labels, minlength=2)
    weight = torch.tensor(len(labels) / (2.0 * counts) if tp["class_weighting"] == "balanced" else [1.0, 1.0],
                          dtype=torch.float32, device=next(model.parameters()).device)
    fp = run_fingerprint(params, seed)
    return Run(r, tp, seed, model, optimizer, loader, batches, weight, dev_clips, dev_clips.labels,
               -(-len(dataset) // tp["batch_size"]), fp, fingerprint(fp))


def new_state() -> dict:
    return {"epoch": 0, "batch": 0, "global_step": 0, "loss_sum": 0.0, "seen": 0, "history": [],
            "best_dev_eer": None, "best_epoch": None, "bad_epochs": 0, "stopped_early": False}


def resume(run: Run, ckpt: dict) -> dict:
    """Load a checkpoint into the run (model, optimiser, RNG states); returns its training state."""
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng_state(ckpt["rng"])
    state = dict(ckpt["cursor"])
    state["history"] = list(ckpt["history"])
    return state


def checkpoint_state(run: Run, state: dict) -> dict:
    """What a resumable checkpoint holds (every key of REQUIRED_KEYS)."""
    cursor = {k: v for k, v in state.items() if k != "history"}
    return {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "epoch": state["epoch"],
            "global_step": state["global_step"], "cursor": cursor, "rng": capture_rng_state(),
            "fingerprint": run.run_id, "history": state["history"], "versions": library_versions()}


# TEST-ONLY hook (tests/test_train_repro.py), to crash training at an exact point like a power cut:
# ANTISPOOF_TEST_KILL_AT="<step>" makes the process SIGKILL itself right after optimisation step <step>
# and its checkpoint, if one is due (for the last step of an epoch: after the dev evaluation and the
# epoch-end checkpoint); "<step>:before" right after the optimiser step, before any checkpoint. Never set
# it outside tests.
_TEST_KILL_AT = os.environ.get("ANTISPOOF_TEST_KILL_AT", "")


def _test_kill_point(step: int, when: str) -> None:
    if _TEST_KILL_AT and _TEST_KILL_AT in (f"{step}:{when}", f"{step}" if when == "after" else None):
        os.kill(os.getpid(), signal.SIGKILL)


def train_loop(run: Run, state: dict, on_checkpoint: Callable[[dict], None], until_step: int | None = None) -> None:
    """Train from `state` (fresh or resumed) to the end of the plan, calling `on_checkpoint(state)` every
    `train.checkpoint_every` steps and at each epoch end. With `until_step`, return right after the first
    checkpoint point at or beyond that step (verify uses this to re-run K steps from a checkpoint)."""
    model, optimizer, tp, steps_per_epoch = run.model, run.optimizer, run.tp, run.steps_per_epoch
    total = tp["epochs"] * steps_per_epoch
    bar = tqdm(total=total, initial=state["global_step"], desc=f"train r{run.r}", unit="step", file=sys.stderr)
    while state["epoch"] < tp["epochs"] and not state["stopped_early"]:
        model.train()
        run.batches.epoch, run.batches.start = state["epoch"], state["batch"]
        for x, y in run.loader:
            x, y = x.to(run.weight.device), y.to(run.weight.device)
            loss = torch.nn.functional.cross_entropy(model(x), y, weight=run.weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["loss_sum"] += loss.item() * len(y)
            state["seen"] += len(y)
            state["batch"] += 1
            state["global_step"] += 1
            bar.update(1)
            bar.set_postfix(epoch=state["epoch"], loss=f"{loss.item():.3f}")
            _test_kill_point(state["global_step"], "before")
            if state["batch"] < steps_per_epoch:  # the last batch of an epoch is checkpointed below
                if state["global_step"] % tp["checkpoint_every"] == 0:
                    on_checkpoint(state)
                    if until_step is not None and state["global_step"] >= until_step:
                        bar.close()
                        return
                _test_kill_point(state["global_step"], "after")
        # End of epoch: dev EER (every train.dev_every epochs, and after the last), curves, early
        # stopping (counting only epochs with a dev pass), then an epoch-boundary checkpoint.
        dev_pass = (state["epoch"] + 1) % tp["dev_every"] == 0 or state["epoch"] + 1 == tp["epochs"]
        eer = dev_eer(model, run.dev_clips, run.dev_labels) if dev_pass else float("nan")
        state["history"].append({"epoch": state["epoch"] + 1, "step": state["global_step"],
                                 "train_loss": state["loss_sum"] / max(state["seen"], 1), "dev_eer": eer})
        if dev_pass and (state["best_dev_eer"] is None or eer < state["best_dev_eer"]):
            state["best_dev_eer"], state["best_epoch"], state["bad_epochs"] = eer, state["epoch"] + 1, 0
        elif dev_pass:
            state["bad_epochs"] += 1
            state["stopped_early"] = tp["patience"] > 0 and state["bad_epochs"] >= tp["patience"]
        state.update(epoch=state["epoch"] + 1, batch=0, loss_sum=0.0, seen=0)
        on_checkpoint(state)
        bar.set_postfix(epoch=state["epoch"], dev_eer=f"{eer:.3f}" if dev_pass else "-")
        if until_step is not None and state["global_step"] >= until_step:
            break
        _test_kill_point(state["global_step"], "after")
    bar.close()


def planned_steps(run: Run, state: dict) -> int:
    """Optimisation steps the plan calls for: every epoch in full (early stopping ends it at an epoch)."""
    epochs = state["epoch"] if state["stopped_early"] else run.tp["epochs"]
    return epochs * run.steps_per_epoch


def body(args: argparse.Namespace, params: dict) -> None:
    r = args.replicate
    if r not in params["replicates"]:
        raise ParamError("replicates", f"--replicate {r} is not listed in replicates {params['replicates']}")
    run = setup(params, r)
    store = checkpoint_store(run.run_id)
    with run_lock(store.root, f"train r{r}"):  # one process per run: a second one waits, then resumes
        store.describe(run.fp)
        state = new_state()
        found = None if args.no_resume else store.latest(required=REQUIRED_KEYS)
        if found is not None:
            step, ckpt = found
            state = resume(run, ckpt)
            print(f"train r{r}: resuming from checkpoint at step {step} (epoch {state['epoch']}, batch {state['batch']})", file=sys.stderr)

        train_loop(run, state, lambda s: store.save(s["global_step"], checkpoint_state(run, s)))

        planned = planned_steps(run, state)
        if state["global_step"] != planned or (state["epoch"] != run.tp["epochs"] and not state["stopped_early"]):
            raise RuntimeError(f"train r{r}: {state['global_step']} optimisation steps in {state['epoch']} epochs, "
                               f"planned {planned}: refusing to save")
        write_outputs(r, params, run.seed, run.run_id, run.model, state, run.steps_per_epoch)


def _metric(value: float | None) -> float | None:
    """Rounded for the metrics file; NaN (no dev split) becomes null, which JSON can hold."""
    return None if value is None or math.isnan(value) else round(value, 6)


def write_outputs(r: int, params: dict, seed: int, run_id: str, model: torch.nn.Module, state: dict, steps_per_epoch: int) -> None:
    out = Path(f"models/r{r}")
    with atomic_open(out / "model.pt", "wb") as f:
        torch.save(model.state_dict(), f)
    last = state["history"][-1]
    atomic_write_json(out / "model.json", {
        "replicate": r, "effective_seed": seed, "run_fingerprint": run_id, "model": selected(params["model"]),
        "sample_rate": params["data"]["sample_rate"], "epochs": state["epoch"], "steps": state["global_step"],
        "versions": library_versions(),
    })
    atomic_write_json(f"metrics/train/r{r}.json", {f"train_r{r}": {
        "effective_seed": seed, "epochs": state["epoch"], "steps": state["global_step"],
        "steps_per_epoch": steps_per_epoch, "final_train_loss": round(last["train_loss"], 6),
        "final_dev_eer": _metric(last["dev_eer"]), "best_dev_eer": _metric(state["best_dev_eer"]),
        "best_epoch": state["best_epoch"], "stopped_early": state["stopped_early"],
    }})
    curves = pd.DataFrame(state["history"])[["epoch", "step", "train_loss", "dev_eer"]]
    atomic_write_text(f"plots/train/r{r}.csv", curves.to_csv(index=False, lineterminator="\n", float_format="%.6f"))


def main(argv: list[str] | None = None) -> int:
    return run_stage("train", __doc__, body, add_arguments, argv)


if __name__ == "__main__":
    raise SystemExit(main())

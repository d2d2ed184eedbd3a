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
import contextlib
import hashlib
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

from antispoof import metrics, stopping
from antispoof.cli import run_stage
from antispoof.codecs import conditions_by_split
from antispoof.distributed import World
from antispoof.data import (AUGMENTED, MANIFEST, EpochBatches, TrainingSet, collate,
                            SplitClips, dev_subset, load_split, read_manifest)
from antispoof.errors import DataError, ParamError, UserError
from antispoof.models import (build_model, crop_samples, input_file_digests, parameter_count, select_device,
                              selected)
from antispoof.objectives import build_objective, dann_lambda, domains_of
from antispoof.optim import build_optimizer, class_weights, learning_rate, set_learning_rate
from antispoof.scoring import score_utterances
from antispoof.repro import atomic_open, atomic_write_json, atomic_write_text, cache_dir
from antispoof.repro.checkpoint import REQUIRED_KEYS, CheckpointStore, capture_rng_state, library_versions, restore_rng_state
from antispoof.repro.hashing import code_version, file_digest, fingerprint
from antispoof.repro.lock import run_lock
from antispoof.repro.rng import epoch_permutation
from antispoof.repro.seeding import replicate_seed, seed_everything
from antispoof.shards import AugmentedStore

# Source files whose content is part of the run fingerprint (dvc.yaml lists the same ones as deps).
CODE = ["train.py", "distributed.py", "objectives.py", "optim.py", "stopping.py", "data.py", "datasets.py", "models", "audio.py", "audio_store.py", "shards.py", "metrics.py", "repro"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicate", type=int, required=True, help="replicate index (one of params 'replicates')")
    parser.add_argument("--no-resume", action="store_true", help="ignore resumable checkpoints and start over")


def run_fingerprint(params: dict, effective_seed: int) -> dict:
    """Everything that determines the trained weights. Same fingerprint => same run => safe to resume."""
    fp = {
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
    model_files = input_file_digests(params["model"])  # e.g. an ssl model's pretrained weights
    if model_files:  # (absent otherwise, so other models' fingerprints stay as they were)
        fp["model_files"] = model_files
    return fp


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


@dataclass
class Run:
    """Everything fixed for one replicate's training run (built by `setup`); the mutable progress
    (cursor, stopping rules, history) lives in a separate `state` dict that checkpoints save."""

    r: int
    tp: dict
    seed: int
    world: World
    model: torch.nn.Module       # the detector (what models/r<r>/model.pt holds)
    objective: object            # objectives.ERM or DANN (owns any extra modules)
    network: torch.nn.Module     # what trains: the detector, or detector + domain classifier (DDP-wrapped)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: Callable[[], object]
    loader: DataLoader
    batches: EpochBatches
    weight: torch.Tensor
    dev_clips: SplitClips  # the dev utterances of the early-stopping pass (train.dev_max_utterances)
    dev_labels: np.ndarray
    labels: np.ndarray      # training labels, by sample index
    batches_per_epoch: int  # loader batches (micro-batches with train.grad_accum > 1)
    steps_per_epoch: int    # optimiser steps
    fp: dict
    run_id: str

    @property
    def total_steps(self) -> int:
        return self.tp["epochs"] * self.steps_per_epoch

    def global_batches(self, epoch: int, first: int, count: int) -> list[np.ndarray]:
        """Sample indices of global batches first..first+count-1 of `epoch` (every rank's slices)."""
        order = epoch_permutation(self.seed, epoch, len(self.labels))
        return [self.batches.global_batch(order, b) for b in range(first, first + count)]


def training_domains(params: dict) -> dict[str, int]:
    """Stored codec condition name -> DANN domain index (0 is clean audio), from augment.train."""
    specs = conditions_by_split(params["augment"])["train"]
    names = domains_of({s.name: s.codec for s in specs})
    return {s.name: names.index(s.codec) for s in specs}


def setup(params: dict, r: int, world: World = World()) -> Run:
    """Seed, load the data and build model, optimiser and loader for replicate r (nothing trained yet);
    with torchrun, this process's share of it."""
    tp = params["train"]
    if tp["batch_size"] % world.size:
        raise ParamError("train.batch_size", f"{tp['batch_size']} is the global batch and must be divisible by "
                         f"the world size {world.size} (torchrun processes)")
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
    domain_of = training_domains(params)
    dataset = TrainingSet(clips, variants, seed, params["augment"]["prob"], train_crop(params), domain_of)
    last = len(dataset) % tp["batch_size"]
    if 0 < last < world.size:
        raise DataError(f"{MANIFEST}: the last batch of each epoch holds {last} train utterance(s), fewer than the "
                        f"{world.size} processes that share it: change train.batch_size")
    batches = EpochBatches(len(dataset), tp["batch_size"], seed, world.rank, world.size)
    workers = params["runtime"]["num_workers"]
    select_device(params["runtime"]["device"])  # a clear error when CUDA is asked for but absent
    device = world.device(params["runtime"]["device"])
    # A private generator: creating a loader iterator must not consume the global torch RNG (dropout's),
    # or resuming and persistent workers would shift it. Samples draw from their own counter-based RNG.
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                        persistent_workers=workers > 0 and params["runtime"]["persistent_workers"],
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))

    # Initialisation draws from torch's seeded CPU RNG, so CPU and GPU runs start from the same weights;
    # an objective's extra modules (DANN's domain classifier) draw next.
    model = build_model(params["model"], sr)
    objective = build_objective(tp, model, 1 + len(set(domain_of.values())))
    network = objective.network(model).to(device)
    optimizer = build_optimizer(network.parameters(), tp)
    if world.size > 1:  # gradients are averaged over processes after every backward
        network = torch.nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    weight = torch.tensor(class_weights(dataset.labels, tp), dtype=torch.float32, device=device)
    amp = tp["amp"] if tp["amp"] in ("bf16", "fp16") else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)) \
        if amp else contextlib.nullcontext
    fp = run_fingerprint(params, seed)
    n_batches = -(-len(dataset) // tp["batch_size"])
    return Run(r, tp, seed, world, model, objective, network, optimizer, scaler, autocast, loader, batches, weight,
               dev_clips, dev_clips.labels, dataset.labels, n_batches, -(-n_batches // tp["grad_accum"]), fp, fingerprint(fp))


def new_state() -> dict:
    return {"epoch": 0, "batch": 0, "global_step": 0, "loss_sum": 0.0, "seen": 0, "domain_loss_sum": 0.0,
            "domain_correct": 0, "samples_sha256": hashlib.sha256().hexdigest(), "history": [], **stopping.new_stopping_state()}


def resume(run: Run, ckpt: dict) -> dict:
    """Load a checkpoint into the run (model, objective, optimiser, scaler, RNG states); returns its
    training state."""
    run.model.load_state_dict(ckpt["model"])
    if run.objective.extra is not None:
        run.objective.extra.load_state_dict(ckpt["objective"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if "scaler" in ckpt:
        run.scaler.load_state_dict(ckpt["scaler"])
    ranks = ckpt.get("rng_ranks", [])  # one state per process of a torchrun run; else rank 0's
    restore_rng_state(ranks[run.world.rank] if len(ranks) == run.world.size else ckpt["rng"])
    state = {**new_state(), **ckpt["cursor"]}
    if not run.world.writer:  # rank 0 carries the epoch's partial loss sums (pooled at every checkpoint)
        state.update(loss_sum=0.0, seen=0, domain_loss_sum=0.0, domain_correct=0)
    state["history"] = list(ckpt["history"])
    if "best_model" in ckpt:
        state["best_model"] = ckpt["best_model"]
    return state


def checkpoint_state(run: Run, state: dict, rng_ranks: list | None = None) -> dict:
    """What a resumable checkpoint holds (every key of REQUIRED_KEYS, plus the objective's modules, the
    AMP scaler, the best model so far and every process's RNG states when they exist)."""
    cursor = {k: v for k, v in state.items() if k not in ("history", "best_model")}
    out = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "epoch": state["epoch"],
           "global_step": state["global_step"], "cursor": cursor, "rng": capture_rng_state(),
           "fingerprint": run.run_id, "history": state["history"], "versions": library_versions()}
    if rng_ranks is not None and len(rng_ranks) > 1:
        out["rng_ranks"] = rng_ranks
    if run.objective.extra is not None:
        out["objective"] = run.objective.extra.state_dict()
    if run.scaler.is_enabled():
        out["scaler"] = run.scaler.state_dict()
    if "best_model" in state:
        out["best_model"] = state["best_model"]
    return out


# TEST-ONLY hook (tests/test_train_repro.py), to crash training at an exact point like a power cut:
# ANTISPOOF_TEST_KILL_AT="<step>" makes the process SIGKILL itself right after optimisation step <step>
# and its checkpoint, if one is due (for the last step of an epoch: after the dev evaluation and the
# epoch-end checkpoint); "<step>:before" right after the optimiser step, before any checkpoint. Never set
# it outside tests.
_TEST_KILL_AT = os.environ.get("ANTISPOOF_TEST_KILL_AT", "")


def _test_kill_point(step: int, when: str) -> None:
    if _TEST_KILL_AT and _TEST_KILL_AT in (f"{step}:{when}", f"{step}" if when == "after" else None):
        os.kill(os.getpid(), signal.SIGKILL)


def samples_digest(previous: str, epoch: int, batches: list[np.ndarray]) -> str:
    """Chained sha256 over the (epoch, sample index) keys of every global batch trained on, in order: equal
    digests mean the same samples in the same order (whatever the resumes and process counts)."""
    h = hashlib.sha256(bytes.fromhex(previous))
    for b in batches:
        h.update(np.stack([np.full(len(b), epoch, dtype=np.int64), b.astype(np.int64)], axis=1).tobytes())
    return h.hexdigest()


def micro_batch_groups(loader, k: int):
    """The loader's batches in groups of k consecutive ones (one optimiser step each; the last group
    of an epoch may be shorter)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == k:
            yield group
            group = []
    if group:
        yield group


def group_totals(run: Run, state: dict, k: int) -> tuple[torch.Tensor, int, list[np.ndarray]]:
    """Class weight and sample count of the next k global batches (all processes' slices), and their
    sample indices: what each process's share of the loss is scaled by."""
    batches = run.global_batches(state["epoch"], state["batch"], k)
    labels = torch.from_numpy(np.concatenate([run.labels[b] for b in batches])).to(run.weight.device)
    return run.weight[labels].sum(), int(labels.numel()), batches


def optimisation_step(run: Run, state: dict, group: list, totals: tuple[torch.Tensor, int] | None) -> float:
    """One optimiser step on `group`: this process's slices of k consecutive global batches. The
    gradient is that of one batch holding all k global batches: each micro-batch's class loss (a
    class-weighted mean) is weighted by its share of `totals`' class weight, an objective's extra loss (a
    plain mean) by its share of samples, times the world size (DDP averages over processes). With one
    process and no accumulation nothing is rescaled. Returns the last class loss (for the progress bar)."""
    set_learning_rate(run.optimizer, learning_rate(run.tp, state["global_step"], run.total_steps, run.steps_per_epoch))
    progress = state["global_step"] / run.total_steps
    device = run.weight.device
    group = [(x.to(device, non_blocking=True), y.to(device, non_blocking=True), d.to(device, non_blocking=True))
             for x, y, d in group]
    rescale = totals is not None and (len(group) > 1 or run.world.size > 1)
    run.optimizer.zero_grad(set_to_none=True)
    for i, (x, y, d) in enumerate(group):
        # DDP: gradients are all-reduced on the group's last backward only (the sum is the same)
        sync = run.network.no_sync() if run.world.size > 1 and i < len(group) - 1 else contextlib.nullcontext()
        with sync, run.autocast():
            class_loss, extra_loss, stats = run.objective.loss(run.network, x, y, d, run.weight, progress)
            loss = class_loss * (run.weight[y].sum() / totals[0] * run.world.size) if rescale else class_loss
            if extra_loss is not None:
                loss = loss + (extra_loss * (len(y) / totals[1] * run.world.size) if rescale else extra_loss)
            run.scaler.scale(loss).backward()
        state["loss_sum"] += class_loss.item() * len(y)
        state["seen"] += len(y)
        state["domain_loss_sum"] += stats.get("domain_loss", 0.0) * len(y)
        state["domain_correct"] += stats.get("domain_correct", 0)
        state["batch"] += 1
    if run.tp["grad_clip"] is not None:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.network.parameters(), run.tp["grad_clip"])
    run.scaler.step(run.optimizer)
    run.scaler.update()
    state["global_step"] += 1
    return class_loss.item()


def pool_partial_sums(run: Run, state: dict) -> None:
    """Sum the epoch's running loss statistics over processes into rank 0's state (others restart at
    zero), so a checkpoint holds all of them and a run resumes with any number of processes."""
    if run.world.size == 1:
        return
    keys = ("loss_sum", "seen", "domain_loss_sum", "domain_correct")
    totals = run.world.sum([float(state[k]) for k in keys])
    for k, v in zip(keys, totals):
        state[k] = (int(v) if k in ("seen", "domain_correct") else v) if run.world.writer else type(state[k])(0)


def end_epoch(run: Run, state: dict) -> float:
    """Dev EER (every train.dev_every epochs, and after the last), the epoch's curves, stopping rules
    (counting only epochs with a dev pass for patience), the best model; NaN when no dev pass ran."""
    tp, epoch = run.tp, state["epoch"] + 1
    pool_partial_sums(run, state)
    dev_pass = epoch % tp["dev_every"] == 0 or epoch == tp["epochs"]
    # rank 0 scores dev and tells the others, so every process takes the same stopping decision
    eer = dev_eer(run.model, run.dev_clips, run.dev_labels) if dev_pass and run.world.writer else float("nan")
    eer = run.world.broadcast(eer)
    train_loss = state["loss_sum"] / max(state["seen"], 1)
    row = {"epoch": epoch, "step": state["global_step"], "train_loss": train_loss, "dev_eer": eer}
    if run.objective.stats:  # DANN: how well the domain classifier still tells the codec domains apart
        row.update(domain_loss=state["domain_loss_sum"] / max(state["seen"], 1),
                   domain_acc=state["domain_correct"] / max(state["seen"], 1),
                   dann_lambda=dann_lambda(tp["dann"], state["global_step"] / run.total_steps))
    state["history"].append(row)
    improved = stopping.end_of_epoch(state, tp, epoch, train_loss, eer if dev_pass else None)
    if improved and stopping.rules_enabled(tp):  # kept in memory and checkpoints: the model we keep
        state["best_model"] = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    state.update(epoch=epoch, batch=0, loss_sum=0.0, seen=0, domain_loss_sum=0.0, domain_correct=0)
    return eer


def train_loop(run: Run, state: dict, on_checkpoint: Callable[[dict], None], until_step: int | None = None) -> None:
    """Train from `state` (fresh or resumed) to the end of the plan, calling `on_checkpoint(state)` every
    `train.checkpoint_every` steps and at each epoch end. With `until_step`, return right after the first
    checkpoint point at or beyond that step (verify uses this to re-run K steps from a checkpoint)."""
    tp = run.tp
    bar = tqdm(total=run.total_steps, initial=state["global_step"], desc=f"train r{run.r}", unit="step",
               file=sys.stderr, disable=not run.world.writer)
    while state["epoch"] < tp["epochs"] and not state["stopped_early"]:
        run.network.train()
        run.batches.epoch, run.batches.start = state["epoch"], state["batch"]
        for group in micro_batch_groups(run.loader, tp["grad_accum"]):
            total_weight, total_count, batches = group_totals(run, state, len(group))
            state["samples_sha256"] = samples_digest(state["samples_sha256"], state["epoch"], batches)
            loss = optimisation_step(run, state, group, (total_weight, total_count))
            bar.update(1)
            bar.set_postfix(epoch=state["epoch"], loss=f"{loss:.3f}")
            _test_kill_point(state["global_step"], "before")
            if state["batch"] < run.batches_per_epoch:  # the last step of an epoch is checkpointed below
                if state["global_step"] % tp["checkpoint_every"] == 0:
                    pool_partial_sums(run, state)
                    on_checkpoint(state)
                    if until_step is not None and state["global_step"] >= until_step:
                        bar.close()
                        return
                _test_kill_point(state["global_step"], "after")
        eer = end_epoch(run, state)
        on_checkpoint(state)
        bar.set_postfix(epoch=state["epoch"], dev_eer=f"{eer:.3f}" if not math.isnan(eer) else "-")
        if until_step is not None and state["global_step"] >= until_step:
            break
        _test_kill_point(state["global_step"], "after")
    bar.close()


def planned_steps(run: Run, state: dict) -> int:
    """Optimisation steps the plan calls for: every epoch in full (a stopping rule ends it at an epoch)."""
    epochs = state["epoch"] if state["stopped_early"] else run.tp["epochs"]
    return epochs * run.steps_per_epoch


def body(args: argparse.Namespace, params: dict) -> None:
    r = args.replicate
    if r not in params["replicates"]:
        raise ParamError("replicates", f"--replicate {r} is not listed in replicates {params['replicates']}")
    world = World.from_env(params["runtime"]["device"])
    try:
        train_replicate(args, params, r, world)
    finally:
        world.close()


def train_replicate(args: argparse.Namespace, params: dict, r: int, world: World) -> None:
    """Train (or resume) replicate r in this process; under torchrun every process runs this together
    and rank 0 alone takes the run lock and writes checkpoints and outputs."""
    if world.writer:
        print(f"train r{r}: {world.describe()}", file=sys.stderr)
    run = setup(params, r, world)
    if world.writer:
        print(f"train r{r}: model {params['model']['name']}, {parameter_count(run.model):,} parameters, "
              f"objective {run.tp['objective']}", file=sys.stderr)
    store = checkpoint_store(run.run_id)
    # one training per run: a second one waits, then resumes (or finds it finished)
    with run_lock(store.root, f"train r{r}") if world.writer else contextlib.nullcontext():
        if world.writer:
            store.describe(run.fp)
        state = new_state()
        found = None if args.no_resume or not world.writer else store.latest(required=REQUIRED_KEYS)
        found = world.broadcast(found)  # rank 0 reads the checkpoint (under the lock) and sends it to all
        if found is not None:
            step, ckpt = found
            state = resume(run, ckpt)
            if world.writer:
                print(f"train r{r}: resuming from checkpoint at step {step} (epoch {state['epoch']}, batch {state['batch']})", file=sys.stderr)

        def on_checkpoint(s: dict) -> None:
            rng_ranks = world.gather(capture_rng_state())
            if world.writer:
                store.save(s["global_step"], checkpoint_state(run, s, rng_ranks))

        train_loop(run, state, on_checkpoint)

        planned = planned_steps(run, state)
        if state["global_step"] != planned or (state["epoch"] != run.tp["epochs"] and not state["stopped_early"]):
            raise RuntimeError(f"train r{r}: {state['global_step']} optimisation steps in {state['epoch']} epochs, "
                               f"planned {planned}: refusing to save")
        if "best_model" in state:  # a stopping rule is on: keep the best dev epoch's weights
            run.model.load_state_dict(state["best_model"])
        if world.writer:
            write_outputs(r, params, run.seed, run.run_id, run.model, state, run.steps_per_epoch)
        world.barrier()


def _metric(value: float | None) -> float | None:
    """Rounded for the metrics file; NaN (no dev split) becomes null, which JSON can hold."""
    return None if value is None or math.isnan(value) else round(value, 6)


def write_outputs(r: int, params: dict, seed: int, run_id: str, model: torch.nn.Module, state: dict, steps_per_epoch: int) -> None:
    out = Path(f"models/r{r}")
    kept = state["best_epoch"] if "best_model" in state else state["epoch"]
    with atomic_open(out / "model.pt", "wb") as f:
        torch.save(model.state_dict(), f)
    last = state["history"][-1]
    atomic_write_json(out / "model.json", {
        "replicate": r, "effective_seed": seed, "run_fingerprint": run_id, "model": selected(params["model"]),
        "sample_rate": params["data"]["sample_rate"], "epochs": state["epoch"], "steps": state["global_step"],
        "parameters": parameter_count(model), "versions": library_versions(),
    })
    atomic_write_json(f"metrics/train/r{r}.json", {f"train_r{r}": {
        "effective_seed": seed, "epochs": state["epoch"], "steps": state["global_step"],
        "steps_per_epoch": steps_per_epoch, "final_train_loss": round(last["train_loss"], 6),
        "final_dev_eer": _metric(last["dev_eer"]), "best_dev_eer": _metric(state["best_dev_eer"]),
        "best_epoch": state["best_epoch"], "stopped_early": state["stopped_early"],
        "stop_reason": state["stop_reason"], "kept_epoch": kept, "parameters": parameter_count(model),
        "samples_sha256": state["samples_sha256"],
        **({"final_domain_acc": round(last["domain_acc"], 6)} if "domain_acc" in last else {}),
    }})
    columns = ["epoch", "step", "train_loss", "dev_eer"] + [c for c in ("domain_loss", "domain_acc", "dann_lambda") if c in last]
    curves = pd.DataFrame(state["history"])[columns]
    atomic_write_text(f"plots/train/r{r}.csv", curves.to_csv(index=False, lineterminator="\n", float_format="%.6f"))


def main(argv: list[str] | None = None) -> int:
    return run_stage("train", __doc__, body, add_arguments, argv)


if __name__ == "__main__":
    raise SystemExit(main())

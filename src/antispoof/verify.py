"""Check, bit for bit, that replicate R's recorded results are what the current code computes.

    uv run python -m antispoof.verify --replicate R [--from-step S [--steps K]]

Checks (one row each in a PASS/FAIL table; exit status 1 if any fails, 2 on bad input):
1. fingerprint: models/r<R>/model.json was trained under the current params, data and code.
2. scores: the eval split is re-scored (clean and every codec condition) with models/r<R>/model.pt
   exactly as the evaluate stage scores it, and compared with scores/r<R>/<condition>.txt: same ids in
   the same order, same float64 bits. A recorded file evaluate would not write, or a missing one, fails.
3. final model: model.pt holds the weights of the newest checkpoint in the run's resume store
   ($ANTISPOOF_CACHE_DIR/checkpoints/<fingerprint>/) when that checkpoint ends the training plan
   (SKIP when the store holds none).
4. with --from-step S: checkpoint S is loaded from the resume store and training continues for K steps
   (default: up to the next recorded checkpoint) through the train stage's own code path
   (`train.setup`, `train.resume`, `train.train_loop`); at every recorded checkpoint passed on the way,
   up to step S+K, the weights, optimiser state, cursor/history and RNG states must equal the
   recorded ones bit for bit. Nothing is written to the resume store.
"""
from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
import torch

from antispoof import evaluate, metrics, train
from antispoof.cli import run_stage
from antispoof.errors import ParamError, UserError
from antispoof.repro.checkpoint import REQUIRED_KEYS, CheckpointStore, CorruptCheckpoint, load_checkpoint, validate_state
from antispoof.repro.seeding import replicate_seed, seed_everything

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


class VerificationFailed(UserError):
    """At least one check failed (exit status 1)."""

    exit_code = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicate", type=int, required=True, help="replicate index (one of params 'replicates')")
    parser.add_argument("--from-step", type=int, default=None, metavar="S",
                        help="re-train from the resume store's checkpoint at global step S")
    parser.add_argument("--steps", type=int, default=None, metavar="K",
                        help="optimisation steps to re-train from S (default: up to the next recorded checkpoint)")


# ------------------------------------------------------------------------------------ comparisons
def _tensor_bits(t: torch.Tensor) -> bytes:
    return t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()


def differences(recorded, recomputed, path: str = "") -> list[str]:
    """Paths at which two checkpoint components differ (tensors by dtype, shape and bits; floats by
    bits; everything else by ==). Empty when bit-identical."""
    a, b = recorded, recomputed
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and _tensor_bits(a) == _tensor_bits(b))
        return [] if same else [path or "<tensor>"]
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}" if path else str(k))
            else:
                out += differences(a[k], b[k], f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}[len {len(a)} != {len(b)}]"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if struct.pack("<d", a) == struct.pack("<d", b) else [path]
    return [] if type(a) is type(b) and a == b else [path]


def _count_tensors(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, dict):
        return sum(_count_tensors(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count_tensors(v) for v in obj)
    return 0


def _summary(diffs: list[str], what: str) -> tuple[str, str]:
    if not diffs:
        return PASS, what
    shown = ", ".join(diffs[:4]) + (f", … ({len(diffs)} in all)" if len(diffs) > 4 else "")
    return FAIL, f"differs at {shown}"


# ----------------------------------------------------------------------------------------- scores
def check_scores(r: int, params: dict, rows: list) -> None:
    """Re-score the eval split as the evaluate stage does; compare with scores/r<r>/*.txt."""
    seed_everything(replicate_seed(params["seed"], r), params["deterministic"], params["num_threads"])
    model = evaluate.load_model(r, params)
    eval_rows, clean, store, crop = evaluate.eval_inputs(params)
    conditions = evaluate.eval_conditions(store)
    directory = Path(f"scores/r{r}")
    recorded_files = sorted(directory.glob("*.txt"))
    for extra in [p for p in recorded_files if p.stem not in conditions]:
        rows.append((str(extra), FAIL, "recorded, but evaluate scores no such condition"))
    for cond in conditions:
        path = directory / f"{cond}.txt"
        if not path.exists():
            rows.append((str(path), FAIL, "missing (evaluate writes it)"))
            continue
        ids, scores = evaluate.score_condition(model, cond, eval_rows, clean, store, crop,
                                               params["evaluate"]["batch_size"], params["runtime"]["num_workers"])
        recorded = metrics.read_scores(path)
        rec_ids, rec_scores = list(recorded), np.fromiter(recorded.values(), dtype=np.float64)
        if rec_ids != ids:
            rows.append((str(path), FAIL, f"utterance ids/order differ ({len(rec_ids)} recorded, {len(ids)} scored)"))
            continue
        bad = np.flatnonzero(rec_scores.view(np.uint64) != scores.view(np.uint64))
        if len(bad):
            i = bad[0]
            rows.append((str(path), FAIL, f"{len(bad)} of {len(ids)} scores differ (first {ids[i]}: recorded "
                                          f"{float(rec_scores[i])!r}, recomputed {float(scores[i])!r})"))
        else:
            rows.append((str(path), PASS, f"{len(ids)} scores bit-identical"))


# ------------------------------------------------------------------------------------- checkpoints
def _load(store: CheckpointStore, step: int) -> dict:
    path = store.path_for(step)
    try:
        ckpt = load_checkpoint(path)
        validate_state(ckpt, REQUIRED_KEYS, path)
    except (CorruptCheckpoint, FileNotFoundError) as e:
        raise UserError(str(e)) from e
    return ckpt


def check_final_model(r: int, params: dict, store: CheckpointStore, rows: list) -> None:
    steps = store.steps()
    label = f"models/r{r}/model.pt = newest checkpoint"
    if not steps:
        rows.append((label, SKIP, f"no checkpoints in {store.root}"))
        return
    ckpt = _load(store, steps[-1])
    cursor = ckpt["cursor"]
    if cursor["epoch"] != params["train"]["epochs"] and not cursor["stopped_early"]:
        rows.append((label, SKIP, f"newest checkpoint (step {steps[-1]}) is mid-training"))
        return
    final = torch.load(f"models/r{r}/model.pt", map_location="cpu", weights_only=True)
    status, detail = _summary(differences(ckpt["model"], final), f"{_count_tensors(final)} tensors bit-identical")
    rows.append((f"models/r{r}/model.pt = checkpoint step {steps[-1]}", status, detail))


def check_retrain(r: int, params: dict, store: CheckpointStore, start: int, k: int | None, rows: list) -> None:
    """Train from checkpoint `start` for k steps through train.py's loop; compare with the recorded
    checkpoints on the way."""
    steps = store.steps()
    if start not in steps:
        raise UserError(f"--from-step {start}: no checkpoint at that step in {store.root} (have: {steps or 'none'})")
    later = [s for s in steps if s > start]
    if k is None:
        if not later:
            raise UserError(f"--from-step {start}: no later checkpoint to compare with (have: {steps})")
        k = later[0] - start
    if k < 1:
        raise UserError(f"--steps must be >= 1, got {k}")
    target = start + k
    if target not in steps:
        raise UserError(f"--from-step {start} --steps {k}: no recorded checkpoint at step {target} to compare "
                        f"with (have: {steps})")
    recorded = {s: _load(store, s) for s in later if s <= target}
    run = train.setup(params, r)
    state = train.resume(run, _load(store, start))
    reached = []

    def compare(s: dict) -> None:
        step = s["global_step"]
        if step not in recorded:
            return
        reached.append(step)
        now, rec = train.checkpoint_state(run, s), recorded[step]
        where = f"train {start}->{step}"
        rows.append((f"{where}: weights", *_summary(differences(rec["model"], now["model"]),
                                                    f"{_count_tensors(now['model'])} tensors bit-identical")))
        rows.append((f"{where}: optimizer", *_summary(differences(rec["optimizer"], now["optimizer"]),
                                                      "bit-identical")))
        progress = ("epoch", "global_step", "cursor", "history", "fingerprint")
        rows.append((f"{where}: cursor, history", *_summary(
            differences({n: rec[n] for n in progress}, {n: now[n] for n in progress}), "identical")))
        rows.append((f"{where}: RNG states", *_summary(differences(rec["rng"], now["rng"]), "bit-identical")))

    train.train_loop(run, state, compare, until_step=target)
    if target not in reached:
        rows.append((f"train {start}->{target}", FAIL, f"training never reached a checkpoint at step {target} "
                                                       f"(stopped at {state['global_step']})"))


# -------------------------------------------------------------------------------------------- main
def print_table(r: int, rows: list) -> None:
    width = max(len("check"), *(len(c) for c, _, _ in rows))
    print(f"verify r{r}")
    print(f"  {'check':<{width}}  result  detail")
    for check, status, detail in rows:
        print(f"  {check:<{width}}  {status:<6}  {detail}")


def body(args: argparse.Namespace, params: dict) -> None:
    r = args.replicate
    if r not in params["replicates"]:
        raise ParamError("replicates", f"--replicate {r} is not listed in replicates {params['replicates']}")
    if args.steps is not None and args.from_step is None:
        raise UserError("--steps needs --from-step")
    info_path = Path(f"models/r{r}/model.json")
    if not info_path.exists():
        raise UserError(f"{info_path} not found: run the train stage for replicate {r} first")
    rows: list[tuple[str, str, str]] = []

    run_id = train.run_id_for(params, r)
    trained = json.loads(info_path.read_text(encoding="utf-8")).get("run_fingerprint")
    rows.append((f"{info_path} run fingerprint", PASS if trained == run_id else FAIL,
                 f"{run_id[:16]}… (current params, data, code)" if trained == run_id
                 else f"trained as {str(trained)[:16]}…, current params/data/code give {run_id[:16]}…"))
    check_scores(r, params, rows)
    store = train.checkpoint_store(run_id)
    check_final_model(r, params, store, rows)
    if args.from_step is not None:
        check_retrain(r, params, store, args.from_step, args.steps, rows)

    print_table(r, rows)
    failed = [c for c, status, _ in rows if status == FAIL]
    if failed:
        print(f"verify r{r}: FAIL ({len(failed)} of {len(rows)} checks)", flush=True)
        raise VerificationFailed(f"replicate {r}: {len(failed)} of {len(rows)} checks failed: {', '.join(failed)}")
    print(f"verify r{r}: PASS ({sum(s == PASS for _, s, _ in rows)} checks passed"
          f"{', ' + str(sum(s == SKIP for _, s, _ in rows)) + ' skipped' if any(s == SKIP for _, s, _ in rows) else ''})")


def main(argv: list[str] | None = None) -> int:
    return run_stage("verify", __doc__, body, add_arguments, argv)


if __name__ == "__main__":
    raise SystemExit(main())

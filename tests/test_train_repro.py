"""Issue 3's promise, proved on the real CLIs (`python -m antispoof.train/evaluate/verify`, `dvc repro`) in
subprocesses on the built-in synthetic corpus, no mocks.

Tiny run (params below): 4 optimisation steps per epoch, 2 epochs, `train.checkpoint_every: 3`, so the
resume store gets checkpoints at steps 3 (mid-epoch), 4 (epoch end), 6 (mid-epoch) and 8 (end) and keeps
the newest three. Crashes are real SIGKILLs, raised by the process itself at an exact point through
train.py's test-only hook ANTISPOOF_TEST_KILL_AT ("<step>": after that step and its checkpoint, if any;
"<step>:before": after the optimiser step, before any checkpoint or dev evaluation).

Every scenario trains in its own resume store (ANTISPOOF_CACHE_DIR) and is compared byte for byte with
one uninterrupted reference run: model.pt, model.json, metrics/train, plots/train (training curves) and,
where evaluated, the score files, metrics/eval and DET-curve files.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import BIN, deep_update, make_project, run, tiny_params

from antispoof.repro.checkpoint import load_checkpoint, save_checkpoint

# No codecs: the train stage then needs no data/augmented (the codec test at the end covers prob > 0).
CLEAN = tiny_params(replicates=[0], augment={"prob": 0, "train": [], "eval": []})
STEPS_PER_EPOCH, EPOCHS = 4, 2
TRAIN_FILES = ("models/r0/model.pt", "models/r0/model.json", "metrics/train/r0.json", "plots/train/r0.csv")
OUTPUT_DIRS = ("models", "metrics", "plots", "scores")


class Lab:
    """One prepared project in which scenarios run `train`/`evaluate`/`verify` for replicate 0, each
    with its own resume store and params file."""

    def __init__(self, project, base: Path):
        self.p, self.root, self.base = project, project.root, base

    def params_file(self, name: str, base: dict = CLEAN, **overrides) -> str:
        """Write `base` with `overrides` (deep-merged) to `name` in the project; returns the name."""
        (self.root / name).write_text(yaml.safe_dump(deep_update(base, overrides), sort_keys=False))
        return name

    def cache(self, name: str) -> Path:
        return self.base / "caches" / name

    def stage(self, module: str, *args: str, cache: Path, params: str = "params.yaml", kill_at: str | None = None,
              check: bool = True):
        env = {**self.p.env, "ANTISPOOF_CACHE_DIR": str(cache)}
        env.pop("ANTISPOOF_TEST_KILL_AT", None)
        if kill_at is not None:
            env["ANTISPOOF_TEST_KILL_AT"] = kill_at
        return run([sys.executable, "-m", f"antispoof.{module}", "--params", params, *args], self.root, env, check=check)

    def train(self, cache: Path, params: str = "params.yaml", kill_at: str | None = None):
        proc = self.stage("train", "--replicate", "0", cache=cache, params=params, kill_at=kill_at,
                          check=kill_at is None)
        if kill_at is not None:
            assert proc.returncode == -signal.SIGKILL, f"expected SIGKILL at {kill_at}, got {proc.returncode}:\n{proc.stderr}"
            assert not (self.root / "models/r0/model.pt").exists(), "a killed run must not have written the model"
        return proc

    def evaluate(self, cache: Path, params: str = "params.yaml"):
        return self.stage("evaluate", "--replicate", "0", cache=cache, params=params)

    def clean(self) -> None:
        for d in OUTPUT_DIRS:
            shutil.rmtree(self.root / d, ignore_errors=True)

    def snapshot(self) -> dict[str, bytes]:
        """Bytes of every output file of replicate 0 (train and, if present, evaluate)."""
        out = {}
        for d in ("models/r0", "scores/r0", "plots/det/r0"):
            for f in sorted((self.root / d).rglob("*")) if (self.root / d).exists() else []:
                if f.is_file():
                    out[f.relative_to(self.root).as_posix()] = f.read_bytes()
        for name in ("metrics/train/r0.json", "plots/train/r0.csv", "metrics/eval/r0.json"):
            if (self.root / name).exists():
                out[name] = (self.root / name).read_bytes()
        return out

    def restore(self, snapshot: dict[str, bytes]) -> None:
        self.clean()
        for name, data in snapshot.items():
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_bytes(data)


def store_dirs(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "checkpoints").iterdir() if p.is_dir()) if (cache / "checkpoints").exists() else []


def ckpt_steps(cache: Path) -> list[int]:
    (d,) = store_dirs(cache)
    return sorted(int(p.name[5:13]) for p in d.glob("step-*.ckpt"))


def table(stdout: str) -> dict[str, tuple[str, str]]:
    """verify's PASS/FAIL table: {check: (result, detail)}."""
    rows = [re.match(r"^  (\S.*?)\s{2,}(PASS|FAIL|SKIP)\s+(.*)$", line) for line in stdout.splitlines()]
    return {m.group(1): (m.group(2), m.group(3)) for m in rows if m}


def assert_identical(got: dict[str, bytes], ref: dict[str, bytes], only: tuple[str, ...] | None = None) -> None:
    if only is not None:
        ref = {k: v for k, v in ref.items() if k in only}
        got = {k: v for k, v in got.items() if k in only}
        assert set(ref) == set(only), f"reference lacks {set(only) - set(ref)}"
    assert set(got) == set(ref), f"output files differ: {sorted(set(got) ^ set(ref))}"
    differing = [k for k in ref if got[k] != ref[k]]
    assert not differing, f"not byte-identical to the uninterrupted reference run: {differing}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bytecode_cache) -> Lab:
    base = tmp_path_factory.mktemp("train_repro")
    project = make_project(base, CLEAN, git=False)
    project.env.update(bytecode_cache)
    project.stage("prepare")
    return Lab(project, base)


@pytest.fixture(scope="module")
def reference(lab) -> dict[str, bytes]:
    """The uninterrupted run (num_workers 0), evaluated."""
    lab.clean()
    cache = lab.cache("reference")
    lab.train(cache)
    lab.evaluate(cache)
    assert ckpt_steps(cache) == [4, 6, 8], "the scenarios below assume this checkpoint schedule"
    snap = lab.snapshot()
    assert {"models/r0/model.pt", "scores/r0/clean.txt", "metrics/eval/r0.json", "plots/det/r0/clean.csv"} <= set(snap)
    return snap


# ------------------------------------------------------------------------------------ (a) and (e)
def test_same_params_twice_is_byte_identical_and_every_planned_step_is_taken(lab, reference):
    lab.clean()
    proc = lab.train(lab.cache("again"))
    assert "resuming" not in proc.stderr  # a fresh store: really trained twice
    lab.evaluate(lab.cache("again"))
    assert_identical(lab.snapshot(), reference)

    # (e) the step count equals the plan, computed here from the manifest: no lost batch or epoch.
    manifest = pd.read_csv(lab.root / "data/prepared/manifest.csv")
    n_train = int((manifest["split"] == "train").sum())
    per_epoch = math.ceil(n_train / CLEAN["train"]["batch_size"])
    assert per_epoch == STEPS_PER_EPOCH
    m = json.loads((lab.root / "metrics/train/r0.json").read_text())["train_r0"]
    assert (m["steps"], m["epochs"], m["steps_per_epoch"]) == (EPOCHS * per_epoch, EPOCHS, per_epoch)
    curve = pd.read_csv(lab.root / "plots/train/r0.csv")
    assert curve["epoch"].tolist() == [1, 2] and curve["step"].tolist() == [per_epoch, 2 * per_epoch]


def test_a_silently_lost_epoch_is_refused(lab, reference):
    """A checkpoint whose cursor claims an epoch that was never trained (epoch 2 at step 4) must not
    produce a model: the final step count does not match the plan."""
    cache = lab.cache("lost-epoch")
    src = store_dirs(lab.cache("reference"))[0]
    shutil.copytree(src, cache / "checkpoints" / src.name)
    for step in (6, 8):
        (cache / "checkpoints" / src.name / f"step-{step:08d}.ckpt").unlink()
    path = cache / "checkpoints" / src.name / "step-00000004.ckpt"
    state = load_checkpoint(path)
    state["epoch"] = state["cursor"]["epoch"] = EPOCHS
    save_checkpoint(path, state)  # a valid file (checksum ok): only the plan check can catch it
    lab.clean()
    proc = lab.stage("train", "--replicate", "0", cache=cache, check=False)
    assert proc.returncode != 0
    assert "resuming from checkpoint at step 4" in proc.stderr
    assert "4 optimisation steps" in proc.stderr and "planned 8" in proc.stderr and "refusing to save" in proc.stderr
    assert not (lab.root / "models/r0/model.pt").exists()


# -------------------------------------------------------------------------------------------- (b)
@pytest.mark.parametrize("kill_at, resumes_from", [
    ("6:before", 4),  # mid-epoch, before step 6's checkpoint: steps 5 and 6 are trained again
    ("4:before", 3),  # last step of epoch 1, before dev evaluation and the epoch-end checkpoint
    ("4", 4),         # epoch boundary, right after the epoch-end checkpoint
], ids=["mid-epoch", "epoch-end-before-checkpoint", "epoch-boundary"])
def test_sigkill_then_rerun_is_byte_identical(lab, reference, kill_at, resumes_from):
    cache = lab.cache(f"kill-{kill_at.replace(':', '-')}")
    lab.clean()
    lab.train(cache, kill_at=kill_at)
    assert max(ckpt_steps(cache)) == resumes_from
    proc = lab.train(cache)
    assert f"resuming from checkpoint at step {resumes_from} " in proc.stderr
    # Scores are a function of model.pt (evaluate is deterministic: the same-params test, verify): the
    # scenarios below also re-evaluate after their kills and compare the score files.
    assert_identical(lab.snapshot(), reference, only=TRAIN_FILES)


def test_two_successive_kills_then_rerun_is_byte_identical(lab, reference):
    cache = lab.cache("two-kills")
    lab.clean()
    lab.train(cache, kill_at="3")  # mid-epoch, right after a checkpoint
    assert ckpt_steps(cache) == [3]
    proc = lab.train(cache, kill_at="7")  # mid-epoch, no checkpoint at step 7
    assert "resuming from checkpoint at step 3 " in proc.stderr
    assert ckpt_steps(cache) == [3, 4, 6]
    proc = lab.train(cache)
    assert "resuming from checkpoint at step 6 " in proc.stderr
    lab.evaluate(cache)
    assert_identical(lab.snapshot(), reference)


def test_corrupt_newest_checkpoint_falls_back_and_changed_params_never_resume(lab, reference):
    cache = lab.cache("corrupt")
    lab.clean()
    lab.train(cache, kill_at="7")
    assert ckpt_steps(cache) == [3, 4, 6]
    (store,) = store_dirs(cache)
    files_before = {p.name: p.read_bytes() for p in store.iterdir()}

    # A changed learning rate is another run: new fingerprint, new store, trains from step 0.
    proc = lab.train(cache, params=lab.params_file("params-lr.yaml", train={**CLEAN["train"], "lr": 0.001}),
                     kill_at="1:before")
    assert "resuming" not in proc.stderr and "corrupt" not in proc.stderr
    assert len(store_dirs(cache)) == 2
    assert {p.name: p.read_bytes() for p in store.iterdir()} == files_before  # the old run is untouched

    newest = store / "step-00000006.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    proc = lab.train(cache)
    assert str(newest) in proc.stderr and "truncated" in proc.stderr  # the warning names the file
    assert "resuming from checkpoint at step 4 " in proc.stderr
    lab.evaluate(cache)
    assert_identical(lab.snapshot(), reference)


# -------------------------------------------------------------------------------------------- (c)
@pytest.mark.parametrize("persistent", [True, False], ids=["persistent-workers", "fresh-workers"])
def test_two_loader_workers_give_the_same_bytes_as_none(lab, reference, persistent):
    params = lab.params_file(f"params-workers-{persistent}.yaml",
                             runtime={"num_workers": 2, "device": "cpu", "persistent_workers": persistent})
    lab.clean()
    lab.train(lab.cache(f"workers-{persistent}"), params=params)
    assert_identical(lab.snapshot(), reference, only=TRAIN_FILES)


# -------------------------------------------------------------------------------------------- (d)
def test_a_different_seed_gives_different_weights(lab, reference):
    lab.clean()
    lab.train(lab.cache("seed-43"), params=lab.params_file("params-seed.yaml", seed=43))
    new = torch.load(lab.root / "models/r0/model.pt", weights_only=True)
    ref_path = lab.base / "ref-model.pt"
    ref_path.write_bytes(reference["models/r0/model.pt"])
    ref = torch.load(ref_path, weights_only=True)
    assert set(new) == set(ref)
    learned = [k for k in ref if k.endswith(("weight", "bias"))]
    same = [k for k in learned if torch.equal(new[k], ref[k])]
    assert learned and not same, f"identical under seeds 42 and 43: {same}"
    assert json.loads((lab.root / "metrics/train/r0.json").read_text())["train_r0"]["effective_seed"] == 43


# ----------------------------------------------------------------------------------------- verify
def test_verify_passes_on_the_recorded_results(lab, reference):
    lab.restore(reference)
    cache = lab.cache("reference")
    (store,) = store_dirs(cache)
    before = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    proc = lab.stage("verify", "--replicate", "0", "--from-step", "4", "--steps", "4", cache=cache)
    rows = table(proc.stdout)
    assert "verify r0: PASS" in proc.stdout and all(result == "PASS" for result, _ in rows.values()), proc.stdout
    assert {"scores/r0/clean.txt", "models/r0/model.pt = checkpoint step 8", "train 4->6: weights", "train 4->6: RNG states",
            "train 4->8: weights", "train 4->8: optimizer", "train 4->8: cursor, history"} <= set(rows), proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()} == before  # verify writes nothing there


def test_verify_fails_on_a_tampered_score_file_and_a_tampered_checkpoint(lab, reference):
    lab.restore(reference)
    scores = lab.root / "scores/r0/clean.txt"
    lines = scores.read_text().splitlines(keepends=True)
    utt, value = lines[0].split()
    lines[0] = f"{utt} {float(value) + 1e-9!r}\n"  # a tiny change, still a valid score file
    scores.write_text("".join(lines))
    # A recorded checkpoint whose weights were altered by one ulp (valid checksum): re-training exposes it.
    cache = lab.cache("tampered-ckpt")
    src = store_dirs(lab.cache("reference"))[0]
    shutil.copytree(src, cache / "checkpoints" / src.name)
    path = cache / "checkpoints" / src.name / "step-00000006.ckpt"
    state = load_checkpoint(path)
    w = state["model"]["head.weight"].view(-1)
    w[0] = torch.nextafter(w[0], torch.tensor(float("inf")))
    save_checkpoint(path, state)

    proc = lab.stage("verify", "--replicate", "0", "--from-step", "4", "--steps", "2", cache=cache, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verify r0: FAIL" in proc.stdout
    rows = table(proc.stdout)
    result, detail = rows["scores/r0/clean.txt"]
    assert result == "FAIL" and detail.startswith("1 of") and utt in detail
    assert rows["train 4->6: weights"][0] == "FAIL" and "head.weight" in rows["train 4->6: weights"][1]
    assert rows["train 4->6: optimizer"][0] == "PASS" and rows["train 4->6: RNG states"][0] == "PASS"
    assert rows["models/r0/model.pt = checkpoint step 8"][0] == "PASS"


# ---------------------------------------------------- DVC: repro --force twice; codec augmentation
@pytest.fixture(scope="module")
def dvc_lab(tmp_path_factory, bytecode_cache):
    """The full pipeline (codec variants drawn per sample: augment.prob 0.5) through `dvc repro --force`.
    Returns (project, dvc.lock bytes, replicate 0's train outputs)."""
    base = tmp_path_factory.mktemp("dvc_repro")
    project = make_project(base, tiny_params(replicates=[0]))
    project.env.update(bytecode_cache)
    project.env["ANTISPOOF_CACHE_DIR"] = str(base / "cache-1")
    project.dvc("repro", "--force")
    lock = (project.root / "dvc.lock").read_bytes()
    return project, lock, {f: (project.root / f).read_bytes() for f in TRAIN_FILES}


def test_dvc_repro_force_twice_leaves_dvc_lock_unchanged(dvc_lab):
    project, lock, _ = dvc_lab
    # A fresh cache: codec variants are encoded again and training cannot resume a finished run.
    env = {**project.env, "ANTISPOOF_CACHE_DIR": str(project.root.parent / "cache-2")}
    out = run([str(BIN / "dvc"), "repro", "--force"], project.root, env).stdout
    assert "Running stage 'augment-cache'" in out and "Running stage 'train@0'" in out
    assert (project.root / "dvc.lock").read_bytes() == lock
    assert b"models/r0" in lock and b"scores/r0" in lock and b"md5" in lock


def test_codec_augmented_training_with_workers_and_a_kill_is_byte_identical(dvc_lab):
    """augment.prob 0.5 (variants drawn per sample), 2 non-persistent loader workers, SIGKILL mid-epoch and
    re-run: the same bytes as dvc repro's uninterrupted num_workers 0 run."""
    project, _, ref = dvc_lab
    from antispoof.data import TrainingSet, load_split, read_manifest
    from antispoof.shards import AugmentedStore

    params = project.params()
    _, clips = load_split(read_manifest(project.root / "data/prepared/manifest.csv"), "train",
                          project.root / params["data"]["root"], params["data"]["sample_rate"])
    ds = TrainingSet(clips, AugmentedStore(project.root / "data/augmented"), params["seed"],
                     params["augment"]["prob"], 8000)
    drawn = [ds.draw(e, i)[0] for e in range(params["train"]["epochs"]) for i in range(len(ds))]
    assert 0 < sum(c != "clean" for c in drawn) < len(drawn)  # the run really mixes codec variants in

    lab = Lab(project, project.root.parent)
    workers = lab.params_file("params-codec-workers.yaml", base=params,
                              runtime={"num_workers": 2, "device": "cpu", "persistent_workers": False})
    cache = project.root.parent / "cache-workers"
    for f in TRAIN_FILES:
        (project.root / f).unlink()
    lab.train(cache, params=workers, kill_at="6:before")
    proc = lab.train(cache, params=workers)
    assert "resuming from checkpoint at step 4 " in proc.stderr
    assert {f: (project.root / f).read_bytes() for f in TRAIN_FILES} == ref

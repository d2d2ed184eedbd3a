"""Parallel experiments (issue 14, item 4): two `dvc queue` workers sharing one $ANTISPOOF_CACHE_DIR.

One real git + DVC repository. The baseline commit holds a sequential `dvc repro` (its own cache
directory). Then, with a fresh shared cache, three experiments are queued and run by `dvc queue start
-j 2`: twins with the baseline's params (`-f`, so every stage really runs: both twins decode into the
same audio store, encode into the same variant cache and train the same run fingerprint at once) and one
with another seed. Checked: every experiment succeeds; the twins' dvc.lock (the md5 of every output of
every stage) is byte-identical to each other's and to the sequential run's; the twins' run was trained
once (one twin trained, the other waited on the run lock and then reused the final checkpoint); the
shared caches hold exactly the entries, and the bytes, that the sequential run's cache holds, each one
verifies, and no temp file is left behind.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import make_project, tiny_params
from hostile_project import stray_temps

from antispoof.audio_store import AudioStore
from antispoof.repro.checkpoint import verify_checkpoint
from antispoof.variant_cache import VariantCache

# The tiny project with fewer utterances: the queue runs the pipeline three times on two cores.
PARAMS = tiny_params(replicates=[0], data={"synthetic": {"speakers": 4, "utterances_per_speaker": 8}})
# train@0 and what it depends on (prepare, augment-cache): every stage that writes to the shared cache.
# evaluate only reads it (a clip missing from the store would be put as prepare puts it).
TARGET = "train@0"
TWINS = ("twin-a", "twin-b")
OTHER = "seed-7"


def exp_ref(project, name: str) -> str | None:
    refs = project.run("git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    found = [r for r in refs if r.rsplit("/", 1)[-1] == name]
    return found[0] if found else None


def queue_status(project) -> dict[str, str]:
    """{experiment name: status} from `dvc queue status`."""
    rows = (re.match(r"^\S+\s+(\S+)\s+.*\s(Queued|Running|Success|Failed)\s*$", line)
            for line in project.dvc("queue", "status").stdout.splitlines())
    return {m.group(1): m.group(2) for m in rows if m}


def wait_for_queue(project, names: tuple[str, ...], timeout: float = 600) -> dict[str, str]:
    """Poll cheaply (git refs appear when an experiment succeeds), asking DVC only now and then, so the
    polling does not compete with the two workers for the CPU."""
    deadline, last_dvc = time.monotonic() + timeout, time.monotonic()
    while time.monotonic() < deadline:
        if all(exp_ref(project, n) for n in names):
            return queue_status(project)
        if time.monotonic() - last_dvc > 15:
            last_dvc = time.monotonic()
            status = queue_status(project)
            if any(status.get(n) == "Failed" for n in names):
                return status
        time.sleep(0.5)
    raise AssertionError(f"queue not done after {timeout} s: {queue_status(project)}")


def cache_files(root: Path) -> dict[str, bytes]:
    """Every cache entry (decoded audio, codec variants) by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted([*root.glob("audio/v1/*/*.pcm"), *root.glob("variants/v1/*/*.var")])}


@pytest.fixture
def queued(tmp_path: Path, bytecode_cache):
    """The repository after the queue has run; yields (project, shared cache, sequential cache, status)."""
    project = make_project(tmp_path, PARAMS)
    project.env.update(bytecode_cache)
    sequential, shared = tmp_path / "cache-sequential", tmp_path / "cache-shared"
    project.env["ANTISPOOF_CACHE_DIR"] = str(sequential)
    project.dvc("repro", TARGET)
    project.commit("sequential run")

    project.env["ANTISPOOF_CACHE_DIR"] = str(shared)  # the queue workers inherit it
    for name in TWINS:
        project.dvc("exp", "run", "--queue", "-f", "-n", name, TARGET)
    project.dvc("exp", "run", "--queue", "-n", OTHER, "-S", "seed=7", TARGET)
    project.dvc("queue", "start", "-j", "2")
    done = False
    try:
        status = wait_for_queue(project, (*TWINS, OTHER))
        done = True
    finally:  # this repository's workers only (idle ones would linger for up to 10 s)
        project.dvc("queue", "stop", *([] if done else ["--kill"]), check=False)
    yield project, shared, sequential, status
    shutil.rmtree(project.root, ignore_errors=True)


def test_two_queue_workers_share_caches_and_a_run_without_corruption_or_double_training(queued):
    project, shared, sequential, status = queued
    assert {n: status.get(n) for n in (*TWINS, OTHER)} == dict.fromkeys((*TWINS, OTHER), "Success"), status

    # Every output of every stage, byte for byte: twins = sequential run.
    baseline = project.run("git", "show", "HEAD:dvc.lock").stdout
    locks = {n: project.run("git", "show", f"{exp_ref(project, n)}:dvc.lock").stdout for n in (*TWINS, OTHER)}
    assert locks["twin-a"] == locks["twin-b"] == baseline
    assert locks[OTHER] != baseline  # another seed really trained another model ...
    other = project.run("git", "show", f"{exp_ref(project, OTHER)}:metrics/train/r0.json").stdout
    assert json.loads(other)["train_r0"]["effective_seed"] == 7

    # ... in its own resume store; the twins' run was trained once: one twin trained it, the other
    # found it complete (after waiting for the lock, or after the first had finished) and wrote outputs.
    steps = json.loads((project.root / "metrics/train/r0.json").read_text())["train_r0"]["steps"]
    logs = {n: project.dvc("queue", "logs", n).stdout for n in TWINS}
    resumed = [n for n in TWINS if f"train r0: resuming from checkpoint at step {steps} " in logs[n]]
    assert len(resumed) == 1, logs
    assert all("resuming" not in logs[n] for n in TWINS if n not in resumed), logs
    waited = any("waiting for it to finish" in logs[n] for n in resumed)
    print(f"queue: {resumed[0]} reused the twins' run ({'waited on the lock' if waited else 'after it finished'})")
    stores = sorted(d for d in (shared / "checkpoints").iterdir() if d.is_dir())
    assert len(stores) == 2
    for store in stores:
        ckpts = sorted(store.glob("step-*.ckpt"))
        assert ckpts and ckpts[-1].name == f"step-{steps:08d}.ckpt"
        for c in ckpts:
            verify_checkpoint(c)

    # Caches filled by two processes at once: the same entries and bytes as the sequential fill, each
    # entry verifies, and no temp file is left behind.
    got, want = cache_files(shared), cache_files(sequential)
    assert want and sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    audio, variants = AudioStore(shared / "audio/v1"), VariantCache(shared / "variants/v1")
    assert all(audio.view(Path(k).stem, verify=True) is not None for k in got if k.endswith(".pcm"))
    assert all(variants.get(Path(k).stem) is not None for k in got if k.endswith(".var"))
    assert variants.corrupt == 0
    assert stray_temps(shared) == []
    assert [p for p in shared.iterdir() if p.name not in ("audio", "variants", "checkpoints")] == []

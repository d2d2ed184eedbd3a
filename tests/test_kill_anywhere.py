"""Kill anywhere: every stage is SIGKILLed (with its worker processes) at random times drawn from a fixed
seed over its measured run time, re-run, and must then give byte-identical outputs to an uninterrupted
run, with no stray temp files (in the project, the caches, or codec scratch directories).

Points per stage: 3 by default (CI); `ANTISPOOF_KILL_POINTS=20 uv run pytest tests/test_kill_anywhere.py -s`
runs the full harness and prints per stage how many kills landed, and in which phase (before any output,
while writing cache entries / checkpoints / outputs).

Kill times alternate between anywhere in the first 90 % of the run (start-up, imports and data loading
included) and its 60-95 % part, where the stage writes its cache entries, checkpoints and outputs. A
run that finishes before its kill time is re-run and compared too, but does not count as a kill point.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import Project
from hostile_project import STAGES, cache_of, copy_project, file_hashes, reference, stray_temps

from antispoof.repro.atomic import owner_is_gone
from antispoof.repro.checkpoint import verify_checkpoint

POINTS = int(os.environ.get("ANTISPOOF_KILL_POINTS", "3"))
SEED = 20261207
FRESH_CACHE = ("augment-cache", "train")  # stages whose work lives in the cache: start each point empty


def outputs(p: Project, stage: str) -> dict[str, str]:
    return {os.path.relpath(k, p.root): v for k, v in file_hashes(*(p.root / o for o in STAGES[stage][2])).items()}


def variant_entries(cache: Path) -> dict[str, str]:
    return {os.path.relpath(k, cache): v for k, v in file_hashes(cache / "variants").items()}


def reset(p: Project, stage: str) -> None:
    for o in STAGES[stage][2]:
        target = p.root / o
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if stage in FRESH_CACHE:
        shutil.rmtree(cache_of(p), ignore_errors=True)
        cache_of(p).mkdir()


def phase(p: Project, stage: str) -> str:
    """What the killed run had got to: the files it had left."""
    cache = cache_of(p)
    written = sum(len(file_hashes(p.root / o)) for o in STAGES[stage][2])
    temps = len(stray_temps(p.root, cache))
    extra = {"augment-cache": len(list(cache.glob("variants/*/*/*.var"))),
             "train": len(list(cache.glob("checkpoints/*/step-*.ckpt")))}.get(stage, 0)
    if not (written or temps or extra):
        return "before any output"
    return f"outputs={written} cache={extra} temps={temps}"


def scratch_dirs() -> set[str]:
    """Codec scratch directories (antispoof-codec-<owner>-*) present now."""
    return {os.path.join(root, name) for root in ("/dev/shm", "/tmp") if os.path.isdir(root)
            for name in os.listdir(root) if name.startswith("antispoof-codec-")}


def process_group(pgid: int) -> set[int]:
    """Pids of the live processes in group `pgid` (a killed stage and its workers)."""
    pids = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid:
                    pids.add(int(name))
            except ProcessLookupError:
                pass
    return pids


def dead(dirs: set[str]) -> list[str]:
    """Those of `dirs` whose owner process is gone (what a killed run left and its re-run must remove)."""
    return sorted(d for d in dirs if owner_is_gone(os.path.basename(d)[len("antispoof-codec-"):].rsplit("-", 1)[0]))


def owner_pid(scratch: str) -> int | None:
    """The pid in a scratch directory's name (antispoof-codec-<host>-<pid>-<random>)."""
    parts = os.path.basename(scratch)[len("antispoof-codec-"):].split("-")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


def kill_fractions(stage: str):
    """Where in the run to kill, as fractions of its run time (fixed seed per stage), alternately anywhere
    in its first 90 % and in 60-95 % (the busy part: cache entries, checkpoints, outputs)."""
    rng = np.random.default_rng([SEED, list(STAGES).index(stage)])
    while True:
        yield float(rng.uniform(0.02, 0.9))
        yield float(rng.uniform(0.6, 0.95))


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_anywhere_then_rerun_is_byte_identical(stage, tmp_path, tmp_path_factory, bytecode_cache):
    ref, times = reference(tmp_path_factory, bytecode_cache)
    want = outputs(ref, stage)
    want_entries = variant_entries(cache_of(ref)) if stage == "augment-cache" else None
    p = copy_project(ref, tmp_path)
    p.env.update(bytecode_cache)
    module, args, _ = STAGES[stage]
    cmd = [sys.executable, "-m", f"antispoof.{module}", *args]
    # The run time to spread the points over: that of the latest uninterrupted run (the reference run
    # first, then each re-run), so a busier or idler machine moves the points with it.
    seconds = times[stage]
    report = []
    fractions = kill_fractions(stage)
    # A run may finish before its kill time on a suddenly idler machine: draw until POINTS kills landed.
    while sum(r[2] != "finished before the kill" for r in report) < POINTS and len(report) < 3 * POINTS:
        t = next(fractions) * seconds
        reset(p, stage)
        scratch_before = scratch_dirs()  # other processes' (e.g. other tests running at the same time)
        killed_pids: set[int] = set()
        proc = subprocess.Popen(cmd, cwd=p.root, env=p.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            assert proc.wait(timeout=t) == 0, f"the run to be killed at {t:.2f} s failed on its own"
            report.append((t, seconds, "finished before the kill"))
        except subprocess.TimeoutExpired:
            killed_pids = process_group(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)  # the stage and its workers, like a power cut
            proc.wait()
            report.append((t, seconds, phase(p, stage)))
        start = time.monotonic()
        rerun = p.stage(module, *args, check=False)
        seconds = time.monotonic() - start
        assert rerun.returncode == 0, f"re-run after a kill at {t:.2f} s failed:\n{rerun.stderr[-3000:]}"
        assert outputs(p, stage) == want, f"not byte-identical after a kill at {t:.2f} s"
        if want_entries is not None:
            assert variant_entries(cache_of(p)) == want_entries, f"variant cache differs after a kill at {t:.2f} s"
        for ckpt in cache_of(p).glob("checkpoints/*/step-*.ckpt"):
            verify_checkpoint(ckpt)
        assert not stray_temps(p.root, cache_of(p)), f"stray temp files after a kill at {t:.2f} s"
        # only what the killed processes made: other test runs on the machine make and kill their own
        left = [d for d in dead(scratch_dirs() - scratch_before) if owner_pid(d) in killed_pids]
        assert not left, f"codec scratch left after a kill at {t:.2f} s: {left}"
    killed = [r for r in report if r[2] != "finished before the kill"]
    print(f"\n{stage}: {len(report)} points, {len(killed)} killed, "
          f"{sum(r[2] != 'before any output' for r in killed)} of them after the first file was written")
    for t, of, what in report:
        print(f"  kill at {t:6.2f} s of {of:6.2f} s: {what}")
    assert len(killed) == POINTS, report

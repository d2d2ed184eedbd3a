"""Real corpora at full size, end to end through the stage CLIs in subprocesses:

- train's and evaluate's peak RSS does not grow with the corpus (a larger corpus whose train and eval
  splits each hold almost 3 times more float32 audio than the allowed growth);
- killing train or evaluate while they fill the decoded-audio store, then re-running, gives the same
  bytes as an undisturbed run; a corrupt store entry is reported once, re-decoded, never used.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from conftest import make_project, run, tiny_params

SR = 16000
NO_CODECS = {"augment": {"prob": 0.0, "train": [], "dev": [], "eval": []}}


def write_corpus(root: Path, counts: dict[str, int], seconds: float) -> int:
    """Noise clips (16-bit WAV) and a csv protocol; returns the bytes of their float32 audio."""
    rng = np.random.default_rng(len(counts) * 1000 + sum(counts.values()))
    rows = []
    for split, n in counts.items():
        for i in range(n):
            path = f"{split}/{split}{i:04d}.wav"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            x = (rng.standard_normal(int(seconds * SR)) * (2000 if i % 2 else 500)).astype(np.int16)
            sf.write(root / path, x, SR, subtype="PCM_16")
            rows.append({"path": path, "label": "bonafide" if i % 2 else "spoof", "split": split,
                         "speaker": f"{split}{i % 3}", "attack": "-" if i % 2 else "A01"})
    pd.DataFrame(rows).to_csv(root / "protocol.csv", index=False)
    return 4 * int(seconds * SR) * sum(counts.values())


def peak_rss_mb(project, env: dict, module: str, *args: str) -> float:
    """Run one stage in its own subprocess; its peak RSS (MB) from wait4."""
    proc = subprocess.Popen([sys.executable, "-m", f"antispoof.{module}", *args], cwd=project.root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err[-3000:]
    return usage.ru_maxrss / 1024


def test_train_and_evaluate_memory_does_not_grow_with_the_corpus(tmp_path, bytecode_cache):
    """A corpus of few long clips: float32 audio far above the allowed growth, cheap to train on (one
    crop per clip) and to score (evaluate.crop_seconds; the dev pass, always full length, stays small)."""
    params = tiny_params(replicates=[0], **NO_CODECS,
                         data={"source": "csv", "root": "data/corpus", "manifest": "data/corpus/protocol.csv"},
                         train={"epochs": 1, "batch_size": 8, "crop_seconds": 0.5},
                         evaluate={"crop_seconds": 1.0, "batch_size": 16})
    rss, audio = {}, {}
    for name, n in (("small", 4), ("large", 120)):
        counts = {"train": n, "dev": 4, "eval": n}
        project = make_project(tmp_path / name, params, git=False)
        env = {**project.env, **bytecode_cache}
        audio[name] = write_corpus(project.root / "data/corpus", counts, seconds=20.0) * n / sum(counts.values())
        project.stage("prepare")
        rss[name] = {"train": peak_rss_mb(project, env, "train", "--replicate", "0"),
                     "evaluate": peak_rss_mb(project, env, "evaluate", "--replicate", "0")}
        assert len(pd.read_csv(project.root / "scores/r0/clean.txt", sep=" ", header=None)) == n
    slack = 50.0  # MB: run-to-run noise of a stage's peak RSS here is ~20 MB
    # Holding the large train (or eval) split's float32 audio in RAM, as before the store, would break the bound.
    assert (audio["large"] - audio["small"]) / 2**20 > 2 * slack, audio
    for stage in ("train", "evaluate"):
        assert rss["large"][stage] <= rss["small"][stage] + slack, (stage, rss)


def killed_stage(project, puts: int, *args: str) -> subprocess.CompletedProcess:
    """Run a stage that SIGKILLs itself in the middle of writing its `puts`-th store entry."""
    return run([sys.executable, "-m", f"antispoof.{args[0]}", *args[1:]], project.root,
               {**project.env, "ANTISPOOF_TEST_KILL_AFTER_PUTS": str(puts)}, check=False)


OUTPUTS = ["models/r0/model.pt", "metrics/train/r0.json", "plots/train/r0.csv", "scores/r0/clean.txt",
           "metrics/eval/r0.json"]


def test_kills_while_filling_the_store_and_a_corrupt_entry_change_no_output(tmp_path, bytecode_cache):
    project = make_project(tmp_path, tiny_params(replicates=[0], **NO_CODECS, train={"epochs": 1}), git=False)
    project.env.update(bytecode_cache)
    project.stage("prepare")  # fills the store under cache A
    project.stage("train", "--replicate", "0")
    project.stage("evaluate", "--replicate", "0")
    reference = {f: (project.root / f).read_bytes() for f in OUTPUTS}

    # Cache B: an empty store (and no checkpoints), so train and evaluate decode and store every clip.
    fresh = tmp_path / "cache-b"
    project.env["ANTISPOOF_CACHE_DIR"] = str(fresh)
    for f in OUTPUTS:
        (project.root / f).unlink()
    killed = killed_stage(project, 10, "train", "--replicate", "0")
    assert killed.returncode == -9
    assert len(list(fresh.glob("audio/v1/*/*.pcm"))) == 9 and list(fresh.glob("audio/v1/*/.*.tmp"))
    project.stage("train", "--replicate", "0")
    killed = killed_stage(project, 5, "evaluate", "--replicate", "0")
    assert killed.returncode == -9
    project.stage("evaluate", "--replicate", "0")
    assert {f: (project.root / f).read_bytes() for f in OUTPUTS} == reference

    # One flipped payload bit in an eval clip's entry: detected by its checksum, reported, re-decoded.
    entries = {p.stat().st_mtime_ns: p for p in fresh.glob("audio/v1/*/*.pcm")}
    victim = entries[max(entries)]  # written last: an eval clip
    blob = bytearray(victim.read_bytes())
    blob[-3] ^= 0x10
    victim.write_bytes(bytes(blob))
    err = project.stage("evaluate", "--replicate", "0").stderr
    assert err.count("is corrupt (checksum mismatch)") == 1 and victim.name in err, err[-2000:]
    assert {f: (project.root / f).read_bytes() for f in OUTPUTS} == reference

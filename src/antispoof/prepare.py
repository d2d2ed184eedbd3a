"""Stage `prepare`: the dataset manifest and its splits.

With `data.source: synthetic` (the default) the built-in corpus is first generated into `data.root`
(data/raw) from `data.seed`. Then the dataset's protocol is read (see antispoof.datasets for every
source), validated, and written as data/prepared/manifest.csv: one row per utterance with utt_id,
path (relative to data.root), label, split, speaker, attack, codec, duration, sample rate and a hash of
the decoded audio. metrics/prepare.json counts utterances per split x label, hours of audio, and a
dataset fingerprint (a hash of the manifest, audio hashes included) that changes when any audio does,
plus what antispoof.manifest_checks finds (duplicate audio, speakers in several splits, short clips)
and the bad audio files skipped under data.on_bad_audio: skip.
Each decoded clip also goes, at data.sample_rate, into the decoded-audio store (audio_store.py) that
the later stages read, so no stage decodes the corpus again.
For a corpus outside the repository, the protocol files are what DVC tracks: the stage warns, with the
lines to add, when dvc.yaml does not list them as its deps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from antispoof import datasets, synthetic
from antispoof.audio import mono_at
from antispoof.audio_store import AudioStore, audio_key
from antispoof.cli import run_stage
from antispoof.errors import DataError
from antispoof.manifest_checks import check_manifest
from antispoof.params import pool_workers
from antispoof.repro import atomic_write_json, atomic_write_text, sha256_bytes

COLUMNS = ["utt_id", "path", "label", "split", "speaker", "attack", "codec", "duration", "sample_rate", "channels", "sha256"]


def summarise(manifest: pd.DataFrame) -> dict:
    """The numbers of metrics/prepare.json (keys are unique across the project's metric files)."""
    counts = {f"{split}_{label}": int(n) for (split, label), n in manifest.groupby(["split", "label"]).size().items()}
    fp_text = manifest[["utt_id", "label", "split", "sha256"]].to_csv(index=False, lineterminator="\n")
    return {"prepare": {
        "utterances": int(len(manifest)),
        "counts": counts,
        "hours": round(float(manifest["duration"].sum()) / 3600, 4),
        "speakers": int(manifest["speaker"].nunique()),
        "dataset_fingerprint": sha256_bytes(fp_text.encode())[:16],
    }}


def undeclared_protocol_files(data: dict, repo_root: Path, dvc_yaml: Path = Path("dvc.yaml")) -> list[Path]:
    """Protocol files the reader uses that dvc.yaml does not declare as deps of `prepare`.

    A corpus outside the repository is tracked by its protocol files (not by hashing every audio
    file), so DVC re-runs prepare when a protocol changes only if they are declared deps.
    """
    if data["source"] == "synthetic" or not dvc_yaml.exists():
        return []
    stage = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}).get("prepare", {})
    declared = [(repo_root / str(d)).resolve() for d in stage.get("deps", []) if isinstance(d, str)]
    return [f for f in datasets.protocol_files(data, repo_root)
            if not any(f.resolve() == d or f.resolve().is_relative_to(d) for d in declared)]


def body(args: argparse.Namespace, params: dict) -> None:
    data = params["data"]
    if data["source"] == "synthetic":
        synthetic.generate(data["root"], data["seed"], data["synthetic"], data["split_ratios"])
    else:  # data/raw is this stage's output either way; for a real corpus it only says where audio lives
        atomic_write_text(Path("data/raw/README.txt"),
                          f"data.source is {data['source']!r}: audio is read from data.root (see params.yaml).\n")
    missing = undeclared_protocol_files(data, Path.cwd())
    if missing:
        lines = "".join(f"\n      - {f}" for f in missing)
        print(f"prepare: warning: dvc.yaml does not list the protocol files of data.source {data['source']!r} as "
              f"deps of stage prepare, so DVC will not re-run it when they change. Add under stages.prepare.deps:"
              f"{lines}", file=sys.stderr)
    store = AudioStore()
    store.sweep_temp()

    def fill_store(samples, native_rate: int, digest: str) -> None:
        """Decoded anyway to hash it: keep the clip, at the experiment's rate, for the later stages."""
        key = audio_key(digest, native_rate, data["sample_rate"])
        if key not in store:
            store.put(key, mono_at(samples, native_rate, data["sample_rate"]))

    built = datasets.build_manifest(data, Path.cwd(), workers=pool_workers(params), on_audio=fill_store)
    manifest = built[COLUMNS]
    if not len(manifest):
        raise DataError(f"{data['root']}: no usable audio ({len(built.attrs['bad_audio'])} bad file(s) skipped)")
    findings = check_manifest(manifest, data)  # raises on a fatal problem, before anything is written
    bad = built.attrs["bad_audio"]
    if bad:
        print(f"prepare: warning: skipped {len(bad)} bad audio file(s) (data.on_bad_audio: skip), listed in "
              f"metrics/prepare.json: {bad[0]['error']}{' ...' if len(bad) > 1 else ''}", file=sys.stderr)
    atomic_write_text(datasets.MANIFEST, manifest.to_csv(index=False, lineterminator="\n"))
    summary = summarise(manifest)
    summary["prepare"].update(findings, bad_audio={"count": len(bad), "skipped": bad})
    atomic_write_json("metrics/prepare.json", summary)
    print(f"prepare: {len(manifest)} utterances -> {datasets.MANIFEST}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("prepare", __doc__, body, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage `prepare`: the dataset manifest and its splits.

With `data.source: synthetic` (the default) the built-in corpus is first generated into `data.root`
(data/raw) from `data.seed`. Then the dataset's protocol is read (see antispoof.datasets for every
source), validated, and written as data/prepared/manifest.csv: one row per utterance with utt_id,
path (relative to data.root), label, split, speaker, attack, codec, duration, sample rate and a hash of
the decoded audio. metrics/prepare.json counts utterances per split x label, hours of audio, and a
dataset fingerprint (a hash of the manifest, audio hashes included) that changes when any audio does.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from antispoof import datasets, synthetic
from antispoof.cli import run_stage
from antispoof.data import MANIFEST
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


def body(args: argparse.Namespace, params: dict) -> None:
    data = params["data"]
    if data["source"] == "synthetic":
        synthetic.generate(data["root"], data["seed"], data["synthetic"], data["split_ratios"])
    else:  # data/raw is this stage's output either way; for a real corpus it only says where audio lives
        atomic_write_text(Path("data/raw/README.txt"),
                          f"data.source is {data['source']!r}: audio is read from data.root (see params.yaml).\n")
    manifest = datasets.build_manifest(data, Path.cwd())[COLUMNS]
    atomic_write_text(MANIFEST, manifest.to_csv(index=False, lineterminator="\n"))
    atomic_write_json("metrics/prepare.json", summarise(manifest))
    print(f"prepare: {len(manifest)} utterances -> {MANIFEST}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("prepare", __doc__, body, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())

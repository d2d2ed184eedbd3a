"""The prepare stage on a corpus outside the built-in one: manifest, metrics, and the DVC dependency
check that keeps an external corpus tracked through its protocol files."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from conftest import REPO, default_params, deep_update


def make_csv_corpus(root):
    (root / "corpus").mkdir()
    rows = []
    for i, (label, split, speaker) in enumerate([("bonafide", "train", "a"), ("spoof", "train", "a"),
                                                  ("bonafide", "dev", "b"), ("spoof", "dev", "b"),
                                                  ("bonafide", "eval", "c"), ("spoof", "eval", "c")]):
        path = f"{label}/{speaker}/utt{i}.wav"
        (root / "corpus" / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / "corpus" / path, np.random.default_rng(i).uniform(-0.3, 0.3, 8000).astype(np.float32), 16000)
        rows.append({"path": path, "label": label, "split": split, "speaker": speaker})
    pd.DataFrame(rows).to_csv(root / "corpus" / "meta.csv", index=False)


def run_prepare(root):
    return subprocess.run([sys.executable, "-m", "antispoof.prepare"], cwd=root, capture_output=True, text=True)


def test_csv_corpus_and_the_undeclared_protocol_warning(tmp_path):
    make_csv_corpus(tmp_path)
    params = deep_update(default_params(), {"data": {"source": "csv", "root": "corpus", "manifest": "corpus/meta.csv"}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")

    proc = run_prepare(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "does not list the protocol files" in proc.stderr and "corpus/meta.csv" in proc.stderr
    manifest = pd.read_csv(tmp_path / "data/prepared/manifest.csv")
    assert len(manifest) == 6 and set(manifest["split"]) == {"train", "dev", "eval"}
    counts = json.loads((tmp_path / "metrics/prepare.json").read_text())["prepare"]["counts"]
    assert counts == {f"{s}_{l}": 1 for s in ("train", "dev", "eval") for l in ("bonafide", "spoof")}
    assert (tmp_path / "data/raw/README.txt").exists()  # the stage's data/raw output exists for DVC

    dvc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    dvc["stages"]["prepare"]["deps"].append("corpus/meta.csv")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    proc = run_prepare(tmp_path)
    assert proc.returncode == 0 and "does not list the protocol files" not in proc.stderr

"""params.yaml validation: bad values stop a stage before any work, with one line naming the key."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from antispoof.errors import ParamError
from antispoof.params import load_params
from conftest import REPO, default_params, deep_update


def write(tmp_path, params) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def test_committed_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params["replicates"] == [0, 1, 2]


@pytest.mark.parametrize("overrides, key, words", [
    ({"seed": "42"}, "seed", "expected integer"),
    ({"seed": -1}, "seed", "below the minimum"),
    ({"deterministic": 1}, "deterministic", "expected true/false"),
    ({"replicates": 3}, "replicates", "expected list"),
    ({"replicates": [0, 0]}, "replicates", "duplicates"),
    ({"train": {"epochs": 0}}, "train.epochs", "below the minimum"),
    ({"train": {"lr": True}}, "train.lr", "expected integer or number, got true/false"),
    ({"augment": {"prob": 1.5}}, "augment.prob", "above the maximum"),
    ({"data": {"source": "asvspoof2020"}}, "data.source", "did you mean 'asvspoof2021'"),
    ({"data": {"split_ratios": {"train": 0.5, "dev": 0.2, "eval": 0.2}}}, "data.split_ratios", "sum to 1"),
    ({"evaluate": {"on_fingerprint_mismatch": "ignore"}}, "evaluate.on_fingerprint_mismatch", "not one of"),
    ({"augment": {"eval": ["mp3:24k", "mp4"]}}, "augment.eval[1]", "mp4"),
    ({"data": {"source": "csv", "root": "data/raw/mine", "manifest": "m.csv"}}, "data.root", "put your dataset elsewhere"),
])
def test_bad_values_name_the_key(tmp_path, overrides, key, words):
    path = write(tmp_path, deep_update(default_params(), overrides))
    with pytest.raises(ParamError) as err:
        load_params(path)
    assert err.value.key == key
    assert words in str(err.value) and path in str(err.value)


def test_unknown_key_suggests_the_closest(tmp_path):
    params = default_params()
    params["train"]["epoch"] = params["train"].pop("epochs")
    with pytest.raises(ParamError) as err:
        load_params(write(tmp_path, params))
    assert err.value.key == "train.epoch" and "did you mean 'epochs'" in str(err.value)


def test_missing_key(tmp_path):
    params = default_params()
    del params["model"]["lcnn"]["dropout"]
    with pytest.raises(ParamError, match="model.lcnn.dropout: missing"):
        load_params(write(tmp_path, params))


@pytest.mark.parametrize("stage", ["prepare", "augment_cache", "train", "evaluate", "aggregate", "registry"])
def test_stage_exits_2_before_any_work(tmp_path, stage):
    write(tmp_path, deep_update(default_params(), {"train": {"batch_size": "big"}}))
    args = [sys.executable, "-m", f"antispoof.{stage}"] + (["--replicate", "0"] if stage in ("train", "evaluate") else [])
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.batch_size" in lines[0] and "expected integer" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


@pytest.mark.parametrize("stage", ["prepare", "augment_cache", "train", "evaluate", "aggregate", "registry", "plots", "metrics", "verify"])
def test_every_module_has_help(stage):
    proc = subprocess.run([sys.executable, "-m", f"antispoof.{stage}", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout and len(proc.stdout) > 200

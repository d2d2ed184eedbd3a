"""Load and validate params.yaml before any work is done.

Every key is declared in SCHEMA with its type and range. A wrong type, an unknown key (with the closest
valid one suggested) or an out-of-range value raises ParamError naming the dotted key; stages turn that
into one line on stderr and exit status 2.

    uv run python -m antispoof.params            # validate params.yaml
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from antispoof import models
from antispoof.errors import ParamError
from antispoof.schema import INT, NUM, Field, closest as _closest

SYNTHETIC_DIR = Path("data/raw")  # output of the prepare stage (dvc.yaml)


def _unique_list(value: list, key: str) -> None:
    if len(set(map(repr, value))) != len(value):
        raise ParamError(key, f"contains duplicates: {value!r}")
    if not value:
        raise ParamError(key, "must list at least one entry")


def _ratios(value: dict, key: str) -> None:
    if abs(sum(value.values()) - 1.0) > 1e-6:
        raise ParamError(key, f"must sum to 1, got {sum(value.values())!r}")


def _duration_order(section: dict, key: str) -> None:
    if section["min_seconds"] > section["max_seconds"]:
        raise ParamError(f"{key}.min_seconds", "must not exceed max_seconds")


def _check_selected_model(model: dict) -> None:
    check = models.REGISTRY[model["name"]].schema.get("__check__")
    if check is not None:
        check(model[model["name"]], f"model.{model['name']}")


def _amp(value, key: str) -> None:
    # YAML (and `dvc exp run -S`) read a bare `off` as false
    if value not in (False, "off", "bf16", "fp16"):
        raise ParamError(key, f"{value!r} is not one of off, bf16, fp16")


def _pair(value: list, key: str) -> None:
    if len(value) != 2:
        raise ParamError(key, f"must be [bonafide weight, spoof weight], got {len(value)} entries")


SCHEMA: dict[str, Any] = {
    "seed": Field(INT, min=0, max=2**31 - 1),
    "replicates": Field((list,), items=Field(INT, min=0, max=9999), check=_unique_list),
    "deterministic": Field((bool,)),
    "num_threads": Field(INT, min=1, max=256),
    "data": {
        "source": Field((str,), choices=("synthetic", "csv", "folder", "asvspoof2019", "asvspoof2021", "asvspoof5", "in_the_wild")),
        "root": Field((str,)),
        "manifest": Field((str,), nullable=True),
        "track": Field((str,), nullable=True, choices=("LA", "DF")),
        "subset": Field((str,), choices=("eval", "progress", "hidden", "all")),
        "seed": Field(INT, min=0, max=2**31 - 1),
        "resplit": Field((bool,)),
        "sample_rate": Field(INT, min=4000, max=192000),
        "on_bad_audio": Field((str,), choices=("fail", "skip")),
        "min_seconds_warn": Field(NUM, min=0, max=3600),
        "allow_conflicting_duplicates": Field((bool,)),
        "split_ratios": {
            "train": Field(NUM, min=0, max=1),
            "dev": Field(NUM, min=0, max=1),
            "eval": Field(NUM, min=0, max=1),
            "__check__": _ratios,
        },
        "synthetic": {
            "speakers": Field(INT, min=3, max=1000),
            "attacks": Field(INT, min=1, max=4),
            "utterances_per_speaker": Field(INT, min=2, max=100000),
            "spoof_fraction": Field(NUM, min=0.05, max=0.95),
            "min_seconds": Field(NUM, min=0.1, max=60),
            "max_seconds": Field(NUM, min=0.1, max=60),
            "__check__": _duration_order,
        },
    },
    "augment": {
        "prob": Field(NUM, min=0, max=1),
        "train": Field((list,), items=Field((str,))),
        "dev": Field((list,), items=Field((str,))),
        "eval": Field((list,), items=Field((str,))),
        "on_error": Field((str,), choices=("fail", "skip")),
        "num_shards": Field(INT, min=1, max=4096),
    },
    "model": {
        "name": Field((str,), choices=tuple(models.REGISTRY)),
        # every section is type- and range-checked; cross-key checks only for the model that trains
        **{name: {k: v for k, v in spec.schema.items() if k != "__check__"} for name, spec in models.REGISTRY.items()},
        "__check__": lambda section, where: _check_selected_model(section),
    },
    "train": {
        "objective": Field((str,), choices=("erm", "dann")),
        "dann": {
            "gamma": Field(NUM, min=0, max=1000),
            "lambda": Field(NUM, min=0, max=100, nullable=True),
            "weight": Field(NUM, min=0, max=100),
            "hidden": Field(INT, min=1, max=65536),
        },
        "epochs": Field(INT, min=1, max=10000),
        "batch_size": Field(INT, min=1, max=65536),
        "grad_accum": Field(INT, min=1, max=4096),
        "optimizer": Field((str,), choices=("adam", "adamw", "sgd")),
        "lr": Field(NUM, min=0, max=10),
        "momentum": Field(NUM, min=0, max=0.999),
        "weight_decay": Field(NUM, min=0, max=1),
        "schedule": Field((str,), choices=("constant", "cosine", "step", "aasist_cosine")),
        "warmup_steps": Field(INT, min=0, max=10**9),
        "min_lr": Field(NUM, min=0, max=10),
        "step_epochs": Field(INT, min=1, max=10000),
        "step_gamma": Field(NUM, min=0, max=1),
        "grad_clip": Field(NUM, min=1e-6, max=1e6, nullable=True),
        "amp": Field((str, bool), check=_amp),
        "crop_seconds": Field(NUM, min=0.01, max=60, nullable=True),
        "class_weighting": Field((str,), choices=("balanced", "none", "explicit")),
        "class_weights": Field((list,), nullable=True, items=Field(NUM, min=0, max=1e6),
                               check=lambda v, k: _pair(v, k)),
        "checkpoint_every": Field(INT, min=1, max=10**9),
        "patience": Field(INT, min=0, max=10000),
        "min_delta": Field(NUM, min=0, max=1),
        "train_loss_threshold": Field(NUM, min=0, max=100, nullable=True),
        "plateau_patience": Field(INT, min=1, max=10000),
        "dev_max_utterances": Field(INT, min=2, max=10**9, nullable=True),
        "dev_every": Field(INT, min=1, max=10000),
    },
    "evaluate": {
        "crop_seconds": Field(NUM, min=0.1, max=600, nullable=True),
        "on_fingerprint_mismatch": Field((str,), choices=("warn", "fail")),
        "det_points": Field(INT, min=10, max=100000),
        "batch_size": Field(INT, min=1, max=65536),
        "calibration": Field((str,), choices=("none", "logistic")),
    },
    "aggregate": {
        "confidence": Field(NUM, min=0.5, max=0.999),
    },
    "runtime": {
        "num_workers": Field(INT, min=0, max=256),
        "device": Field((str,), choices=("cpu", "cuda")),
        "persistent_workers": Field((bool,)),
    },
}


def validate(params: Any, schema: dict = SCHEMA, prefix: str = "") -> None:
    """Check `params` against `schema`: every key present, known, typed and in range."""
    where = prefix.rstrip(".") or "params.yaml"
    if not isinstance(params, dict):
        raise ParamError(where, f"expected a mapping, got {type(params).__name__}")
    known = [k for k in schema if k != "__check__"]
    for key in params:
        if key not in schema or key == "__check__":
            raise ParamError(f"{prefix}{key}", f"unknown key{_closest(str(key), known)}")
    for key in known:
        if key not in params:
            raise ParamError(f"{prefix}{key}", "missing")
        spec = schema[key]
        if isinstance(spec, dict):
            validate(params[key], spec, f"{prefix}{key}.")
        else:
            spec.validate(params[key], f"{prefix}{key}")
    if "__check__" in schema:
        schema["__check__"](params, where)


def _validate_domain(params: dict) -> None:
    """Checks that need other modules (codec names, dataset-specific keys)."""
    from antispoof import codecs, datasets

    codecs.validate_augment_params(params["augment"])
    datasets.validate_data_params(params["data"])
    data = params["data"]
    if data["source"] != "synthetic" and Path(data["root"]).resolve().is_relative_to(SYNTHETIC_DIR.resolve()):
        raise ParamError("data.root", f"{SYNTHETIC_DIR} holds the built-in corpus and is replaced on every prepare "
                         "run: put your dataset elsewhere (e.g. data/corpus or a path outside the repository)")
    tp = params["train"]
    if tp["amp"] not in (False, "off") and params["runtime"]["device"] != "cuda":
        raise ParamError("train.amp", f"is {tp['amp']!r}, but mixed precision runs on CUDA only and runtime.device is "
                         f"{params['runtime']['device']!r}: set train.amp to off")
    if tp["class_weighting"] == "explicit" and tp["class_weights"] is None:
        raise ParamError("train.class_weights", "is null but train.class_weighting is explicit: give [bonafide, spoof]")
    if tp["batch_size"] * tp["grad_accum"] < 2 and tp["objective"] == "dann":
        raise ParamError("train.batch_size", "DANN needs at least 2 samples per optimiser step")
    if params["augment"]["prob"] > 0 and not params["augment"]["train"]:
        raise ParamError("augment.train", "is empty but augment.prob > 0: list codec variants or set prob to 0")


def pool_workers(params: dict) -> int:
    """Workers for the codec pool and manifest decoding: runtime.num_workers, or 0 = the usable cores."""
    n = int(params.get("runtime", {}).get("num_workers", 0) or 0)
    return n if n > 0 else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and fully validate a params file; raise ParamError on the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamError("-", "file not found (run from the project root or pass --params)", file=str(path)) from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamError("-", f"not valid YAML: {e}", file=str(path)) from None
    try:
        validate(params)
        _validate_domain(params)
    except ParamError as e:
        raise e.in_file(str(path)) from None
    return params


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m antispoof.params", description="Validate a params file.")
    parser.add_argument("params", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        load_params(args.params)
    except ParamError as e:
        print(f"antispoof params: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.params}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Detector models, selected by `model.name`; each family lives in its own module and registers a
`ModelSpec` here, so the trainer and evaluator never branch on a model's name.

Every model maps a batch of waveforms (B, samples) to two logits (bona fide, spoof) and splits into
`embed(wave) -> (B, embedding_dim)` and `classify(embedding) -> logits` (`forward` is their
composition), so objectives such as DANN can attach heads to the embedding. The detection score is
`logit_bonafide - logit_spoof`, a log-likelihood-ratio-like value (higher = more bona fide), as
ASVspoof's actDCF and Cllr expect.

params.yaml holds one section per model (`model.<name>`); only the section of `model.name` is used,
and only it enters run fingerprints and model cards (`selected`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

BONAFIDE, SPOOF = 0, 1  # class indices


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the registry: its params schema (params.Field leaves), a builder, and a description
    for --help and README."""

    name: str
    schema: dict[str, Any]
    build: Callable[[dict, int], nn.Module]  # (its params section, sample rate) -> model
    description: str
    # Files outside params that the build reads (e.g. pretrained weights), as {name: path}: their bytes
    # enter the run fingerprint, so a checkpoint never resumes onto other weights.
    input_files: Callable[[dict], dict[str, Path]] = lambda section: {}


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    REGISTRY[spec.name] = spec
    return spec


def selected(model_params: dict) -> dict:
    """`{"name": n, n: section}`: the part of params' `model` that determines the model."""
    name = model_params["name"]
    return {"name": name, name: model_params[name]}


def build_model(model_params: dict, sample_rate: int) -> nn.Module:
    """The model named by `model_params["name"]`, built from its section (draws its initial weights
    from torch's global RNG, which the stage has seeded)."""
    name = model_params["name"]
    return REGISTRY[name].build(model_params[name], sample_rate)


def input_file_digests(model_params: dict) -> dict[str, str]:
    """sha256 of each file outside params that the selected model reads ({} for most models)."""
    from antispoof.repro import sha256_file

    name = model_params["name"]
    files = REGISTRY[name].input_files(model_params[name])
    return {key: sha256_file(path) for key, path in sorted(files.items())}


def crop_samples(model_params: dict) -> int:
    """The model's default training input length in samples (`model.<name>.crop_samples`)."""
    return int(model_params[model_params["name"]]["crop_samples"])


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def select_device(name: str) -> torch.device:
    """`runtime.device` as a torch device; asking for CUDA on a machine without it is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        from antispoof.errors import ParamError

        raise ParamError("runtime.device", "is 'cuda' but torch sees no CUDA device here; use 'cpu'")
    return torch.device(name)


def repeat_to_length(wave: torch.Tensor, min_samples: int) -> torch.Tensor:
    """`wave` (B, samples), tiled from its start up to `min_samples` if shorter (the same policy as
    audio.fix_length's "repeat"): models whose pooling pyramid needs a minimum input length use it so
    that any utterance scores."""
    n = wave.shape[-1]
    if n >= min_samples:
        return wave
    return wave.repeat(1, -(-min_samples // n))[:, :min_samples]


def scores_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Bona fide logit minus spoof logit: the log-likelihood-ratio-like detection score."""
    return logits[:, BONAFIDE] - logits[:, SPOOF]


# Registration order is the order of params.yaml and README.
from antispoof.models import lcnn  # noqa: E402,F401
from antispoof.models import rawnet2  # noqa: E402,F401
from antispoof.models import aasist  # noqa: E402,F401
from antispoof.models import ssl  # noqa: E402,F401

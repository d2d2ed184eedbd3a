"""Reproducibility machinery used by every stage: atomic output, cache location, hashing, seeding,
counter-based randomness, checkpoints and provenance logs.

Seeding, checkpoint and provenance names are imported lazily (on first attribute access), so stages
that only need atomic output or hashing do not pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from antispoof.repro.atomic import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text, dumps_json
from antispoof.repro.cache import cache_dir
from antispoof.repro.hashing import audio_hash, fingerprint, sha256_bytes, sha256_file

_LAZY = {
    "replicate_seed": "seeding", "replicate_seeds": "seeding", "seed_everything": "seeding",
    "epoch_permutation": "rng", "sample_generator": "rng",
    "capture_rng_state": "checkpoint", "restore_rng_state": "checkpoint", "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint", "verify_checkpoint": "checkpoint", "validate_state": "checkpoint",
    "library_versions": "checkpoint", "CheckpointStore": "checkpoint", "CorruptCheckpoint": "checkpoint",
    "CheckpointWarning": "checkpoint", "REQUIRED_KEYS": "checkpoint",
    "write_provenance": "provenance",
}

__all__ = [
    "atomic_open", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "dumps_json",
    "cache_dir", "audio_hash", "fingerprint", "sha256_bytes", "sha256_file",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

"""Stable content hashes and fingerprints (sha256 over canonical bytes)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def audio_hash(samples: np.ndarray, sample_rate: int) -> str:
    """Hash of decoded audio content (not of the container), so re-encoding a FLAC as WAV or renaming
    a file keeps the hash."""
    a = np.ascontiguousarray(samples, dtype=np.float32)
    h = hashlib.sha256()
    h.update(f"sr={int(sample_rate)};n={a.shape[0]};".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (dict keys sorted)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


PACKAGE_DIR = Path(__file__).resolve().parent.parent


def file_digest(path: str | Path) -> str | None:
    """sha256 of a file's bytes, or None if it does not exist."""
    path = Path(path)
    return sha256_file(path) if path.exists() else None


def code_version(parts: list[str]) -> str:
    """Hash of the source of the named package modules/subpackages (relative to src/antispoof):
    the "code version" part of a run fingerprint, independent of git and of where the repo lives."""
    h = hashlib.sha256()
    for part in sorted(parts):
        target = PACKAGE_DIR / part
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()

"""Persistent, content-addressed cache of codec variants (outside DVC, shared by every experiment).

Key: sha256 of the canonical JSON of
    {audio: audio_hash(samples, rate), codec: CodecSpec.key_material(), ffmpeg: ffmpeg version string}
so it changes when the audio content, any encoder/decoder option, the pipeline version or the ffmpeg
binary changes, and does not change when a file is renamed or moved.

Layout: ``<cache>/variants/v1/<key[:2]>/<key>.var`` where <cache> is $ANTISPOOF_CACHE_DIR (default
~/.cache/antispoof). One entry = one variant:

    b"ASPVAR1\\n" | uint32 LE header length | header JSON | int16 LE samples

The header holds the key, the sample count and rate, the condition name and the sha256 of the samples;
`get` verifies all of them and treats a bad entry as missing (it is deleted and re-made). Entries are
written to a temp file in the same directory, fsynced and renamed into place, so a reader (or a second
process filling the same cache, or a run after SIGKILL) only ever sees complete entries. Two processes
writing the same key write identical bytes, so the last rename wins harmlessly.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from antispoof.repro import atomic_write_bytes, cache_dir, fingerprint, sha256_bytes
from antispoof.repro.atomic import sweep_dead_temps

__all__ = ["VariantCache", "variant_key", "CACHE_LAYOUT_VERSION"]

CACHE_LAYOUT_VERSION = "v1"
MAGIC = b"ASPVAR1\n"


def variant_key(audio_hash: str, spec, ffmpeg_version: str | None = None) -> str:
    """Content address of one variant (see module docstring)."""
    if ffmpeg_version is None:
        from antispoof.codecs import ffmpeg_version as _version

        ffmpeg_version = _version(spec.info.build)
    return fingerprint({"kind": "antispoof-codec-variant", "audio": audio_hash,
                        "codec": spec.key_material(), "ffmpeg": ffmpeg_version})


class VariantCache:
    """Directory of verified variant entries; safe for concurrent use by several processes."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir("variants", CACHE_LAYOUT_VERSION)
        self.root.mkdir(parents=True, exist_ok=True)
        self.corrupt = 0  # entries found damaged (and removed) by this instance

    def path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a variant key: {key!r}")
        return self.root / key[:2] / f"{key}.var"

    def __contains__(self, key: str) -> bool:
        """Cheap existence test (no verification)."""
        return self.path(key).is_file()

    @staticmethod
    def encode_entry(key: str, samples: np.ndarray, meta: dict | None = None) -> bytes:
        data = np.ascontiguousarray(samples, dtype="<i2")
        if data.ndim != 1:
            raise ValueError(f"variant samples must be 1-D, got shape {data.shape}")
        payload = data.tobytes()
        header = dict(meta or {})
        header.update({"key": key, "length": int(data.shape[0]), "dtype": "<i2", "sha256": sha256_bytes(payload)})
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return MAGIC + struct.pack("<I", len(head)) + head + payload

    @staticmethod
    def decode_entry(key: str, blob: bytes) -> tuple[np.ndarray, dict]:
        """Parse and verify an entry; raises ValueError saying what is wrong."""
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
            raise ValueError("bad magic")
        (n,) = struct.unpack_from("<I", blob, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            header = json.loads(blob[start:start + n])
        except ValueError:
            raise ValueError("unreadable header") from None
        payload = blob[start + n:]
        if not isinstance(header, dict) or header.get("key") != key:
            raise ValueError("entry belongs to another key")
        if header.get("dtype") != "<i2" or len(payload) != 2 * int(header.get("length", -1)):
            raise ValueError("truncated or wrong length")
        if sha256_bytes(payload) != header.get("sha256"):
            raise ValueError("checksum mismatch")
        return np.frombuffer(payload, dtype="<i2"), header

    def get(self, key: str) -> np.ndarray | None:
        """The verified int16 samples of `key`, or None if absent or damaged (a damaged entry is removed)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            samples, _ = self.decode_entry(key, blob)
        except ValueError:
            self.corrupt += 1
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            return None
        return samples

    def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Remove temp files left by writers that were killed mid-write (older than `older_than` s,
        so a live writer's temp file is never touched). Returns how many were removed."""
        import time

        limit, removed = time.time() - older_than, 0
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            removed += sweep_dead_temps(sub)  # a writer known to be gone (same host): no need to wait
            for p in sub.glob(".*.tmp"):
                try:
                    if p.stat().st_mtime < limit:
                        p.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def put(self, key: str, samples: np.ndarray, meta: dict | None = None) -> Path:
        """Store int16 `samples` under `key` atomically; returns the entry path."""
        path = self.path(key)
        atomic_write_bytes(path, self.encode_entry(key, samples, meta))
        return path

"""Persistent store of decoded audio: every clip is decoded once per corpus, then read by memory map.

FLAC/WAV decoding, channel mixing and resampling happen once per clip and sample rate, in whichever
stage needs the clip first (normally `prepare`, which decodes every file anyway to hash it); train,
evaluate and augment-cache then memory-map the stored samples. Like the codec-variant cache, the store
lives outside DVC under $ANTISPOOF_CACHE_DIR (default ~/.cache/antispoof) and is shared by every
experiment: it is a cache, never the only copy of anything, so deleting it costs time, never a result.

Key: `audio_key` = sha256 of the canonical JSON of {the manifest's sha256 of the clip (its decoded
native samples, see antispoof.repro.audio_hash), the target sample rate, DECODER_VERSION, and, when
the clip is resampled, torchaudio's version and the pinned resampler settings}. So one entry serves
every experiment and every stage that reads the same audio at the same rate, whatever the file is called.

Layout: ``<cache>/audio/v1/<key[:2]>/<key>.pcm`` (256-way fan-out: ASVspoof 5's ~1M clips make ~4k
entries per directory). One entry:

    96-byte header: b"ASPAUD1\\n" | dtype (8 bytes, b"<i2" or b"<f4") | samples (uint64) | sample rate
                    (uint32) | reserved (uint32) | key (32 bytes) | sha256 of the payload (32 bytes)
    payload:        little-endian samples

The payload is int16 when the float32 samples are exactly int16 / 32768 (a 16-bit PCM source at its
own rate: half the disk; reading converts back exactly), float32 otherwise. The header's length and the
file size are checked on every open; the payload checksum is verified on a clip's first read in each
process (sha256 runs at ~1.8 GB/s here: 0.14 ms for a 4-s clip, against ~1.5 ms to decode its FLAC), and
a bad entry is reported once on stderr, removed and re-decoded: never silently used.

Entries are written to a temp file in their directory and renamed into place, so readers, concurrent
fillers and a re-run after SIGKILL only ever see complete entries (two writers of one key write the
same bytes). Not fsynced: a torn entry after a power cut fails its checksum and is re-decoded.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import struct
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

from antispoof.audio import _RESAMPLE_KW, mono_at, read_native
from antispoof.errors import DataError
from antispoof.repro import atomic_open, audio_hash, cache_dir, fingerprint
from antispoof.variant_cache import VariantCache

__all__ = ["AudioStore", "CorruptEntry", "DECODER_VERSION", "as_float32", "as_float32_into", "audio_key", "decode_clip"]

LAYOUT_VERSION = "v1"
DECODER_VERSION = 1  # bump when audio.mono_at changes what it returns
MAGIC = b"ASPAUD1\n"
_HEADER = struct.Struct("<8s8sQII32s32s")
HEADER_SIZE = _HEADER.size  # 96: keeps the payload aligned for the memory map
_DTYPES = {b"<i2": np.dtype("<i2"), b"<f4": np.dtype("<f4")}
INT16_SCALE = np.float32(32768.0)
_KEY_RE = re.compile(r"[0-9a-f]{64}")


# TEST-ONLY hook (tests/test_scale.py), to crash a stage while it fills the store: with
# ANTISPOOF_TEST_KILL_AFTER_PUTS="<n>" the process SIGKILLs itself in the middle of writing its n-th
# new entry. Never set it outside tests.
_TEST_KILL_AFTER_PUTS = int(os.environ.get("ANTISPOOF_TEST_KILL_AFTER_PUTS", "0") or 0)
_puts = 0


class CorruptEntry(Exception):
    """A store entry that fails a check (says which)."""


def _count_put(f) -> None:
    global _puts
    _puts += 1
    if _TEST_KILL_AFTER_PUTS and _puts >= _TEST_KILL_AFTER_PUTS:
        f.flush()  # a half-written temp file is left behind, as after a real crash mid-write
        os.kill(os.getpid(), signal.SIGKILL)


def audio_key(audio_sha256: str, native_rate: int, sample_rate: int) -> str:
    """Content address of a clip decoded to mono at `sample_rate` (see the module docstring)."""
    material = {"kind": "antispoof-decoded-audio", "audio": str(audio_sha256), "sample_rate": int(sample_rate),
                "decoder": DECODER_VERSION}
    if int(native_rate) != int(sample_rate):  # resampled samples depend on the resampler's code
        material["resampler"] = {"torchaudio": version("torchaudio"), **_RESAMPLE_KW}
    return fingerprint(material)


def decode_clip(path: str | os.PathLike, audio_sha256: str, sample_rate: int) -> np.ndarray:
    """Decode `path` as `audio.load_audio` does, checking it is still the audio the manifest hashed."""
    samples, sr = read_native(path)
    if audio_hash(samples, sr) != audio_sha256:
        raise DataError(f"{path}: audio differs from the manifest's sha256 (the file changed after prepare): "
                        "re-run the prepare stage")
    return mono_at(samples, sr, sample_rate)


def as_float32(samples: np.ndarray) -> np.ndarray:
    """A stored payload (or a slice of one) as a float32 array (a copy), exactly the decoded samples."""
    if samples.dtype == np.float32:
        return np.array(samples, dtype=np.float32)
    return samples.astype(np.float32) / INT16_SCALE


def as_float32_into(samples: np.ndarray, out: np.ndarray) -> None:
    """Write `as_float32(samples)` into the float32 array `out` (same shape) without a temporary: the
    same values (int16 / 32768 is exact in float32). Any float array is converted as astype does."""
    if samples.dtype.kind in "iu":
        np.divide(samples, INT16_SCALE, out=out)
    else:
        out[...] = samples


def _checked(key: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"not an audio store key: {key!r}")
    return key


class AudioStore:
    """Directory of decoded clips; safe for concurrent use by several processes (and loader workers)."""

    sweep_temp = VariantCache.sweep_temp  # temp files of killed writers: the same rule as the variant cache

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir("audio", LAYOUT_VERSION)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{_checked(key)}.pcm"

    def __contains__(self, key: str) -> bool:
        """Cheap existence test (no verification)."""
        return self.path(key).is_file()

    def put(self, key: str, samples: np.ndarray) -> Path:
        """Store 1-D float32 `samples` under `key` (temp file + rename); returns the entry path."""
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"clip samples must be 1-D, got shape {x.shape}")
        as_int = np.clip(np.rint(x * INT16_SCALE), -32768, 32767).astype("<i2")
        payload = as_int if np.array_equal(as_float32(as_int), x) else x.astype("<f4")
        data = memoryview(payload).cast("B")
        header = _HEADER.pack(MAGIC, payload.dtype.str.encode(), payload.shape[0], 0, 0, bytes.fromhex(key),
                              hashlib.sha256(data).digest())
        path = self.path(key)
        with atomic_open(path, "wb", fsync=False) as f:  # fsync would cost ~5 ms a clip here, 20x the write
            f.write(header)
            _count_put(f)
            f.write(data)
        return path

    def view(self, key: str, verify: bool) -> np.ndarray | None:
        """The entry's samples as a read-only memory map (int16 or float32: see `as_float32`), or None
        if absent. Raises CorruptEntry (after removing the entry) when a check fails; `verify` adds the
        payload checksum to the always-run header and size checks."""
        path = self.path(key)
        try:
            mm = np.memmap(path, dtype=np.uint8, mode="r")
        except FileNotFoundError:
            return None
        except ValueError:  # an empty file cannot be mapped
            mm = np.zeros(0, dtype=np.uint8)
        try:
            dt, _, digest = self._check_header(key, mm[:HEADER_SIZE].tobytes(), mm.shape[0])
            payload = mm[HEADER_SIZE:]
            if verify and hashlib.sha256(memoryview(payload)).digest() != digest:
                raise CorruptEntry("checksum mismatch")
        except CorruptEntry:
            del mm
            self.discard(key)
            raise
        return payload.view(dt)

    def read(self, key: str, verify: bool, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int] | None:
        """Samples [start:stop] of the entry (a copy, int16 or float32) and the entry's length, or None
        if absent: positioned reads of just those bytes (the whole payload when `verify`), no memory
        map, so reading a crop of a long clip costs the crop. Checks and CorruptEntry as `view`."""
        try:  # a str path: pathlib's joins would cost as much as the read of a crop
            fd = os.open(os.path.join(self._root, key[:2], _checked(key) + ".pcm"), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                dt, n, digest = self._check_header(key, os.pread(fd, HEADER_SIZE, 0), os.fstat(fd).st_size)
                start = min(start, n)  # slicing semantics: the caller checks the length against its own
                stop = max(start, min(n if stop is None else stop, n))
                first, count = (0, n) if verify else (start, stop - start)
                out = np.empty(count, dtype=dt)
                if os.preadv(fd, [out], HEADER_SIZE + first * dt.itemsize) != out.nbytes:
                    raise CorruptEntry("shorter than its header says")  # truncated since fstat
                if verify and hashlib.sha256(memoryview(out).cast("B")).digest() != digest:
                    raise CorruptEntry("checksum mismatch")
            finally:
                os.close(fd)
        except CorruptEntry:
            self.discard(key)
            raise
        return (out[start:stop] if verify else out), n

    def _check_header(self, key: str, header: bytes, size: int) -> tuple[np.dtype, int, bytes]:
        """(dtype, samples, payload sha256) of an entry of `size` bytes starting with `header`."""
        if size < HEADER_SIZE or len(header) < HEADER_SIZE:
            raise CorruptEntry("shorter than its header")
        magic, dtype, n, _, _, entry_key, digest = _HEADER.unpack(header)
        dt = _DTYPES.get(dtype.rstrip(b"\0"))
        if magic != MAGIC or dt is None:
            raise CorruptEntry("bad header")
        if entry_key.hex() != key:
            raise CorruptEntry("belongs to another key")
        if size != HEADER_SIZE + n * dt.itemsize or n == 0:
            raise CorruptEntry(f"size {size} bytes does not match its header ({n} samples)")
        return dt, n, digest

    def discard(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass

    def clip(self, key: str, source: str | os.PathLike, audio_sha256: str, sample_rate: int,
             verify: bool) -> np.ndarray:
        """The clip's samples: from the store (memory map), else decoded from `source` and stored.
        A corrupt entry is reported on stderr, re-decoded and replaced."""
        found = self._found(key, source, lambda: self.view(key, verify))
        return found if found is not None else self._decode_and_put(key, source, audio_sha256, sample_rate)

    def clip_window(self, key: str, source: str | os.PathLike, audio_sha256: str, sample_rate: int,
                    verify: bool, start: int, stop: int) -> tuple[np.ndarray, int]:
        """Samples [start, stop) of the clip (a copy, by `read`) and its length; a missing or corrupt
        entry is decoded and stored as in `clip`."""
        found = self._found(key, source, lambda: self.read(key, verify, start, stop))
        if found is not None:
            return found
        samples = self._decode_and_put(key, source, audio_sha256, sample_rate)
        return samples[start:stop], samples.shape[0]

    def _found(self, key: str, source, reader):
        try:
            return reader()
        except CorruptEntry as e:
            print(f"antispoof: audio store entry {self.path(key)} is corrupt ({e}): re-decoded from {source}",
                  file=sys.stderr, flush=True)
            return None

    def _decode_and_put(self, key: str, source, audio_sha256: str, sample_rate: int) -> np.ndarray:
        samples = decode_clip(source, audio_sha256, sample_rate)
        self.put(key, samples)
        return samples

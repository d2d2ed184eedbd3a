"""Audio reading and fixed-length cropping.

Everything here is deterministic: the same file and arguments give the same samples, bit for bit.

- `load_audio` decodes with soundfile (WAV, FLAC, OGG, ... whatever libsndfile reads), scales integer
  PCM to [-1, 1), mixes several channels to mono by their mean and resamples with
  `torchaudio.functional.resample` (windowed-sinc, parameters pinned below, computed in float64).
- `fix_length` is the evaluation policy: a clip longer than `n` is cropped around its centre; a shorter
  one is tiled (repeated from its start, as many times as needed, then cut at `n`), like the
  RawNet2/AASIST evaluation code. `mode="zero"` zero-pads at the end instead of tiling.
- `random_crop` is the training helper: the caller draws the offset (from its own counter-based
  generator) so the crop itself holds no random state.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from antispoof.errors import DataError

__all__ = ["PAD_MODES", "audio_info", "check_finite", "fix_length", "load_audio", "max_offset", "mono_at", "output_length",
           "random_crop", "read_native"]

PAD_MODES = ("repeat", "zero")

# Pinned so that a change of torchaudio's defaults cannot silently change the samples we feed models.
_RESAMPLE_KW = dict(lowpass_filter_width=6, rolloff=0.99, resampling_method="sinc_interp_hann")


def _open_error(path: Path, exc: Exception) -> DataError:
    if not os.path.exists(path):
        return DataError(f"{path}: audio file not found")
    return DataError(f"{path}: cannot decode audio ({exc})")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, n_frames, channels) from the file header, without decoding the samples."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/OSError depending on cause
        raise _open_error(path, e) from None
    return int(info.samplerate), int(info.frames), int(info.channels)


def read_native(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode every channel at the native rate: (float32 array of shape (frames, channels), rate).

    Integer PCM is scaled to [-1, 1) by soundfile (int16 divides by 32768). An empty file (zero
    frames) raises DataError naming the file.
    """
    path = Path(path)
    try:
        samples, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise _open_error(path, e) from None
    if samples.shape[0] == 0:
        raise DataError(f"{path}: audio file is empty (0 samples)")
    return np.ascontiguousarray(samples), int(sr)


def check_finite(samples: np.ndarray, sr: int, path: str | os.PathLike) -> None:
    """DataError naming the file and its first NaN/Inf sample (float WAV/FLAC can hold them).

    `samples` as `read_native` returns them: shape (frames, channels)."""
    bad = ~np.isfinite(samples)
    if bad.any():
        frame, channel = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{path}: sample {frame} (t = {frame / sr:.6f} s, channel {channel}) is "
                        f"{float(samples[frame, channel])}, {int(bad.sum())} non-finite sample(s) in all: fix or "
                        f"remove the file (or set data.on_bad_audio: skip)")


def _resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    t = torch.from_numpy(x.astype(np.float64, copy=False))
    y = AF.resample(t, int(orig_sr), int(target_sr), **_RESAMPLE_KW)
    return y.numpy().astype(np.float32)


def load_audio(path: str | os.PathLike, target_sr: int | None = None) -> np.ndarray:
    """Decode `path` to a 1-D float32 mono array at `target_sr` (native rate if None).

    Multichannel audio is mixed by the mean of its channels. Resampling is deterministic and yields
    `ceil(n * target_sr / native_sr)` samples. Missing, unreadable or empty files raise DataError.
    """
    if target_sr is not None and (isinstance(target_sr, bool) or int(target_sr) != target_sr or target_sr <= 0):
        raise ValueError(f"target_sr must be a positive integer, got {target_sr!r}")
    samples, sr = read_native(path)
    return mono_at(samples, sr, target_sr)


def mono_at(samples: np.ndarray, sr: int, target_sr: int | None) -> np.ndarray:
    """`read_native`'s (frames, channels) output as `load_audio` returns it: mono (mean of channels),
    resampled to `target_sr` (kept at `sr` if None). The decoded-audio store applies it once per clip."""
    mono = samples[:, 0].copy() if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float64).astype(np.float32)
    if target_sr is not None and int(target_sr) != sr:
        mono = _resample(mono, sr, int(target_sr))
    return np.ascontiguousarray(mono, dtype=np.float32)


def output_length(frames: int, sr: int, target_sr: int | None) -> int:
    """Samples `load_audio` returns for a file of `frames` frames at `sr` (torchaudio's resampler keeps
    ceil(frames * target / sr)); exact integer arithmetic."""
    if target_sr is None or int(target_sr) == int(sr):
        return int(frames)
    return -(-int(frames) * int(target_sr) // int(sr))


def _check_1d(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D (mono) array, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("cannot crop or pad an empty array")
    if isinstance(n, bool) or int(n) != n or n <= 0:
        raise ValueError(f"target length must be a positive integer, got {n!r}")
    return x


def _pad(x: np.ndarray, n: int, mode: str) -> np.ndarray:
    if mode == "repeat":
        reps = -(-n // x.shape[0])
        return np.tile(x, reps)[:n].copy()
    if mode == "zero":
        out = np.zeros(n, dtype=x.dtype)
        out[: x.shape[0]] = x
        return out
    raise ValueError(f"unknown pad mode {mode!r}; expected one of {', '.join(PAD_MODES)}")


def fix_length(x: np.ndarray, n: int, mode: str = "repeat") -> np.ndarray:
    """Return exactly `n` samples of `x`, deterministically (the evaluation policy).

    - len(x) > n: centre crop, x[(len - n) // 2 : (len - n) // 2 + n].
    - len(x) < n: mode "repeat" tiles the whole clip from its start (x, x, x, ... cut at n);
      mode "zero" appends zeros.
    - len(x) == n: a copy of x.
    """
    x = _check_1d(x, n)
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {mode!r}; expected one of {', '.join(PAD_MODES)}")
    length = x.shape[0]
    if length > n:
        start = (length - n) // 2
        return x[start : start + n].copy()
    if length < n:
        return _pad(x, n, mode)
    return x.copy()


def max_offset(length: int, n: int) -> int:
    """Largest valid `offset` for `random_crop` of a clip of `length` samples (0 if it is not longer)."""
    return max(0, int(length) - int(n))


def random_crop(x: np.ndarray, n: int, offset: int, mode: str = "repeat") -> np.ndarray:
    """x[offset : offset + n] for a clip longer than `n`; `offset` must be in [0, max_offset(len(x), n)].

    The caller draws `offset` (e.g. uniformly in that range from a generator keyed by seed, epoch and
    sample index). Clips not longer than `n` are padded as in `fix_length` and `offset` must be 0.
    """
    x = _check_1d(x, n)
    if isinstance(offset, bool) or int(offset) != offset:
        raise ValueError(f"offset must be an integer, got {offset!r}")
    offset = int(offset)
    hi = max_offset(x.shape[0], n)
    if not 0 <= offset <= hi:
        raise ValueError(f"offset {offset} out of range [0, {hi}] for a clip of {x.shape[0]} samples and n={n}")
    if x.shape[0] <= n:
        return fix_length(x, n, mode)
    return x[offset : offset + n].copy()

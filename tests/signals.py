"""Test signals shared by the codec and augment-stage tests (importable because pytest puts tests/ on
sys.path)."""
from __future__ import annotations

import numpy as np

SR = 16000


def speechlike(n: int, seed: int, sr: int = SR) -> np.ndarray:
    """Glottal-like pulse train (jittered 100-160 Hz) through three formant resonances, plus unvoiced
    noise bursts and a syllable envelope: the kind of signal speech codecs are built for."""
    rng = np.random.default_rng(seed)
    exc = np.zeros(n)
    pos = int(rng.integers(0, 50))
    while pos < n:
        exc[pos] = 1.0
        pos += int(sr / (100 + 60 * rng.random()))
    f = np.fft.rfftfreq(n, 1 / sr)
    voiced = sum(1.0 / (1 + ((f - fc) / bw) ** 2) for fc, bw in ((600, 90), (1300, 110), (2600, 160)))
    unvoiced = 1.0 / (1 + ((f - 3000) / 500) ** 2)
    y = np.fft.irfft(np.fft.rfft(exc) * voiced + 0.1 * np.fft.rfft(rng.standard_normal(n)) * unvoiced, n)
    t = np.arange(n) / sr
    y *= 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2.3 * t + rng.random()))
    return (0.4 * y / np.max(np.abs(y))).astype(np.float32)

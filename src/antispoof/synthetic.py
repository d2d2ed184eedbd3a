"""The built-in synthetic corpus: speech-like bona fide and spoofed utterances at 16 kHz.

Bona fide "speech" is a source-filter signal: a harmonic voice source following a speaker-specific pitch
contour with natural jitter and shimmer, shaped frame by frame by moving formants, with fricative noise
segments, breath noise and a room-noise floor. Each spoofing "attack" imitates one artifact family of
real vocoders/TTS, applied with a random strength so that some spoofs are hard:

- A01 over-smoothing: no jitter or shimmer, a smoothed pitch contour, little breath noise, broad formants.
- A02 band-limited vocoder: the band above a random 4.5-6.5 kHz cut-off is replaced by a weak noise floor.
- A03 phase vocoder: random STFT phase above ~1.5 kHz (harmonic fine structure smeared).
- A04 coarse spectral envelope: the envelope is held constant over 500-Hz bands (a low-resolution vocoder).

Loudness is drawn from the same distribution for both classes, so energy alone does not separate them.
Several cues live above 4 kHz, so telephone codecs hide them: a model trained without codec augmentation
degrades under 8-kHz conditions, which is what the pipeline's codec evaluation is meant to show.

Everything is a pure function of `data.seed` (one Philox stream per utterance).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from antispoof.repro import atomic_open, atomic_write_text

SAMPLE_RATE = 16000
N_FFT, HOP = 512, 128
ATTACKS = ("A01", "A02", "A03", "A04")
# Rough vowel formant targets (Hz) of an adult voice; scaled per speaker.
VOWELS = np.array([[730, 1090, 2440, 3400], [270, 2290, 3010, 3700], [300, 870, 2240, 3300],
                   [530, 1840, 2480, 3500], [570, 840, 2410, 3300], [440, 1020, 2240, 3200]], dtype=np.float64)
BANDWIDTHS = np.array([90.0, 110.0, 170.0, 250.0])


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(key))))


def speaker_traits(seed: int, speaker: int) -> dict:
    r = _rng(seed, 1, speaker)
    return {
        "f0": float(r.uniform(95, 230)),
        "formant_scale": float(r.uniform(0.88, 1.15)),
        "jitter": float(r.uniform(0.012, 0.025)),
        "shimmer": float(r.uniform(0.08, 0.18)),
        "breath": float(r.uniform(0.02, 0.06)),
        "tilt_db_per_khz": float(r.uniform(-3.0, -1.5)),
    }


def _segments(r: np.random.Generator, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame formant targets (n_frames x 4) and voicing (0..1), from a random phone sequence."""
    formants = np.empty((n_frames, 4))
    voiced = np.empty(n_frames)
    t = 0
    while t < n_frames:
        length = int(r.integers(8, 22))  # 64-176 ms
        kind = r.choice(3, p=[0.72, 0.18, 0.10])  # vowel, fricative, pause
        formants[t:t + length] = VOWELS[r.integers(len(VOWELS))] * r.uniform(0.95, 1.05, size=4)
        voiced[t:t + length] = (1.0, 0.0, 0.02)[kind]
        t += length
    # Coarticulation: smooth the targets over ~40 ms.
    kernel = np.hanning(7)[1:-1]
    kernel /= kernel.sum()
    for i in range(4):
        formants[:, i] = np.convolve(np.pad(formants[:, i], 2, mode="edge"), kernel, mode="valid")
    voiced = np.convolve(np.pad(voiced, 2, mode="edge"), kernel, mode="valid")
    return formants, voiced


def _pitch(r: np.random.Generator, n: int, f0: float, jitter: float, smooth: bool) -> np.ndarray:
    """Per-sample F0 (Hz): declination + slow intonation + (unless smooth) per-period jitter."""
    n_ctrl = max(4, n // 80)  # control points every 5 ms
    walk = np.cumsum(r.normal(0, 0.02, n_ctrl))
    walk -= np.linspace(walk[0], walk[-1], n_ctrl) * 0.5
    if smooth:
        walk = np.convolve(np.pad(walk, 10, mode="edge"), np.ones(21) / 21, mode="valid")
    log_f0 = np.log(f0) + np.linspace(0.08, -0.08, n_ctrl) + walk
    if not smooth:
        log_f0 = log_f0 + r.normal(0, jitter, n_ctrl)
    return np.exp(np.interp(np.arange(n), np.linspace(0, n - 1, n_ctrl), log_f0))


def _harmonic_source(r: np.random.Generator, f0: np.ndarray, shimmer: float) -> np.ndarray:
    phase = np.cumsum(f0) / SAMPLE_RATE
    n_harm = int(7800 / f0.min())
    k = np.arange(1, n_harm + 1, dtype=np.float64)[:, None]
    amp = (1.0 / k) * ((k * f0[None, :]) < 7800)  # band-limited: no harmonic above 7.8 kHz
    offsets = r.uniform(0, 2 * np.pi, (n_harm, 1))
    arg = torch.from_numpy(2 * np.pi * k * phase[None, :] + offsets)
    src = (torch.from_numpy(amp) * torch.sin(arg)).sum(0).numpy()
    if shimmer > 0:  # amplitude varies from period to period
        period_index = np.floor(phase).astype(int)
        gains = 1.0 + r.normal(0, shimmer, period_index.max() + 1)
        src *= gains[period_index]
    return src


def _envelope(formants: np.ndarray, voiced: np.ndarray, tilt_db_per_khz: float, widen: float = 1.0) -> np.ndarray:
    """Magnitude envelope (frames x bins): formant resonances for voiced frames, a high-pass
    fricative shape for unvoiced ones, and a speaker-specific spectral tilt."""
    freqs = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)[None, None, :]
    resonances = 1.0 / (1.0 + ((freqs - formants[:, :, None]) / (widen * BANDWIDTHS[None, :, None] / 2)) ** 2)
    vowel = (resonances * np.array([1.0, 0.7, 0.35, 0.2])[None, :, None]).sum(1)
    fricative = 0.25 / (1.0 + np.exp(-(freqs[0] - 3800) / 500))
    env = voiced[:, None] * vowel + (1 - voiced[:, None]) * fricative + 0.003
    return env * 10 ** (tilt_db_per_khz * freqs[0] / 1000 / 20)


def _stft(x: np.ndarray) -> torch.Tensor:
    return torch.stft(torch.from_numpy(x), N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=torch.float64),
                      return_complex=True).T  # frames x bins


def _istft(spec: torch.Tensor, length: int) -> np.ndarray:
    return torch.istft(spec.T, N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=torch.float64),
                       length=length).numpy()


def synthesize(seed: int, speaker: int, index: int, seconds: float, attack: str | None) -> np.ndarray:
    """One utterance as float32 samples in [-1, 1]; `attack` None means bona fide."""
    traits = speaker_traits(seed, speaker)
    r = _rng(seed, 2, speaker, index)
    n = int(round(seconds * SAMPLE_RATE))
    strength = float(r.uniform(0.6, 1.0)) if attack else 0.0
    smooth = attack == "A01"
    f0 = _pitch(r, n, traits["f0"], traits["jitter"] * (1 - strength if smooth else 1), smooth)
    shimmer = traits["shimmer"] * ((1 - strength) if smooth else 1)
    breath = traits["breath"] * ((1 - 0.8 * strength) if smooth else 1)
    voice = _harmonic_source(r, f0, shimmer)
    noise = r.normal(0, 1, n)
    spec_v, spec_n = _stft(voice), _stft(noise)
    frames = spec_v.shape[0]
    formants, voiced = _segments(r, frames)
    formants *= traits["formant_scale"]
    # A01's over-smoothed acoustics: broad, low-contrast formants.
    env = torch.from_numpy(_envelope(formants, voiced, traits["tilt_db_per_khz"], 1 + 2 * strength if smooth else 1.0))
    voicing = torch.from_numpy(voiced)[:, None]
    spec = env * (voicing * spec_v / np.sqrt(f0.mean()) * 4 + (1 - voicing) * spec_n * 0.5 + breath * spec_n)
    freqs = torch.from_numpy(np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE))
    if attack == "A02":
        cutoff = r.uniform(4500, 6500)
        keep = 1 / (1 + torch.exp((freqs - cutoff) / 80))
        floor = 10 ** (-(20 + 25 * strength) / 20)
        spec = spec * (keep + (1 - keep) * floor) + (1 - keep) * spec_n * floor * 0.02
    elif attack == "A03":
        phase = torch.from_numpy(r.uniform(0, 2 * np.pi, tuple(spec.shape)))
        mix = strength * (freqs > 1500).to(torch.float64) * voicing
        spec = torch.polar(spec.abs(), torch.angle(spec) * (1 - mix) + phase * mix)
    elif attack == "A04":
        band = (freqs // 500).long()
        coarse = torch.zeros(frames, int(band.max()) + 1, dtype=torch.float64).index_add_(1, band, env)
        coarse = coarse / torch.bincount(band).to(torch.float64)
        coarse_env = coarse[:, band]
        spec = spec * (1 - strength + strength * coarse_env / env)
    x = _istft(spec, n)
    # Room noise floor and loudness drawn identically for both classes: energy is no cue.
    x = x / (np.sqrt(np.mean(x**2)) + 1e-12)
    x = x + r.normal(0, 10 ** (-r.uniform(18, 40) / 20), n)
    x = x * 10 ** (r.uniform(-32, -16) / 20) / np.sqrt(np.mean(x**2))
    return np.clip(x, -1, 1).astype(np.float32)


def plan(seed: int, cfg: dict, split_ratios: dict) -> pd.DataFrame:
    """The list of utterances to generate: speaker-disjoint splits, labels, attacks, durations."""
    r = _rng(seed, 0)
    speakers = r.permutation(cfg["speakers"])
    n_spk = len(speakers)
    n_dev = max(1, int(round(split_ratios["dev"] * n_spk)))
    n_eval = max(1, int(round(split_ratios["eval"] * n_spk)))
    n_train = n_spk - n_dev - n_eval
    if n_train < 1:
        n_train, n_dev = 1, n_spk - 1 - n_eval
    split_of = {int(s): ("train" if i < n_train else "dev" if i < n_train + n_dev else "eval") for i, s in enumerate(speakers)}
    rows = []
    attacks = ATTACKS[: cfg["attacks"]]
    for spk in range(cfg["speakers"]):
        for i in range(cfg["utterances_per_speaker"]):
            ur = _rng(seed, 3, spk, i)
            spoof = ur.random() < cfg["spoof_fraction"]
            rows.append({
                "path": f"{'spoof' if spoof else 'bonafide'}/spk{spk:03d}/utt{i:05d}.wav",
                "label": "spoof" if spoof else "bonafide",
                "split": split_of[spk],
                "speaker": f"spk{spk:03d}",
                "attack": attacks[int(ur.integers(len(attacks)))] if spoof else "-",
                "seconds": round(float(ur.uniform(cfg["min_seconds"], cfg["max_seconds"])), 3),
                "speaker_index": spk,
                "index": i,
            })
    return pd.DataFrame(rows)


def generate(root: str | Path, seed: int, cfg: dict, split_ratios: dict, progress: bool = True) -> pd.DataFrame:
    """Write the corpus under `root` (16-bit PCM WAV) plus `root/protocol.csv`; return the protocol.

    Generation is cheap, so every file is rewritten (atomically): nothing stale survives a change of
    `data.seed` or of the synthetic settings.
    """
    from tqdm import tqdm

    root = Path(root)
    table = plan(seed, cfg, split_ratios)
    for row in tqdm(table.itertuples(), total=len(table), desc="synthetic corpus", unit="utt", disable=not progress):
        path = root / row.path
        audio = synthesize(seed, row.speaker_index, row.index, row.seconds, None if row.attack == "-" else row.attack)
        with atomic_open(path, "wb") as f:
            sf.write(f, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    protocol = table[["path", "label", "split", "speaker", "attack"]]
    atomic_write_text(root / "protocol.csv", protocol.to_csv(index=False, lineterminator="\n"))
    return protocol

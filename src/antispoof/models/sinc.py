"""The raw-waveform front-end shared by `rawnet2` and `aasist`: a bank of fixed band-pass filters.

Both reference implementations (the ASVspoof 2021 RawNet2 baseline and clovaai/aasist) use windowed
ideal band-pass filters (difference of two sincs, Hamming window) whose band edges are equally spaced
on the mel scale from 0 Hz to Nyquist, and do not train them. The filters are a pure function of
(count, length, sample rate), so they are a non-persistent buffer: rebuilt, never stored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_band_pass_filters(n_filters: int, length: int, sample_rate: int) -> torch.Tensor:
    """(n_filters, length) Hamming-windowed band-pass impulse responses; `length` must be odd (symmetric)."""
    nyquist = float(sample_rate // 2)
    edges = mel_to_hz(torch.linspace(0.0, float(hz_to_mel(torch.tensor(nyquist, dtype=torch.float64))),
                                     n_filters + 1, dtype=torch.float64))
    n = torch.arange(length, dtype=torch.float64) - (length - 1) / 2  # centred support

    def low_pass(cutoff: torch.Tensor) -> torch.Tensor:  # ideal low-pass at `cutoff` Hz, per filter row
        c = (2.0 * cutoff / sample_rate)[:, None]
        return c * torch.sinc(c * n[None, :])

    window = torch.hamming_window(length, periodic=False, dtype=torch.float64)
    return ((low_pass(edges[1:]) - low_pass(edges[:-1])) * window).to(torch.float32)


class SincFilterbank(nn.Module):
    """(B, samples) -> (B, n_filters, samples - length + 1): fixed mel-spaced band-pass convolution."""

    def __init__(self, n_filters: int, length: int, sample_rate: int):
        super().__init__()
        length += 1 - length % 2  # an even length becomes the next odd one, as in the references
        self.length = length
        self.register_buffer("filters", mel_band_pass_filters(n_filters, length, sample_rate)[:, None, :],
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return F.conv1d(wave.unsqueeze(1), self.filters)

"""`lcnn` (the default): LFCC front-end (torchaudio) + a light CNN with Max-Feature-Map activations
(LCNN-style, after the ASVspoof 2021 LFCC-LCNN baseline, slimmed for CPU training).
"""
from __future__ import annotations

import torch
from torch import nn
import torchaudio

from antispoof.models import ModelSpec, register
from antispoof.schema import INT, NUM, Field, length_between


class LFCC(nn.Module):
    """Linear-frequency cepstral coefficients with deltas and delta-deltas (3 x n_lfcc dims).

    20-ms Hamming frames with a 10-ms hop and pre-emphasis 0.97, as the ASVspoof baseline
    (../shared/reference/asvspoof.md, "Baseline front-end facts").
    """

    def __init__(self, sample_rate: int, n_lfcc: int, n_filter: int):
        super().__init__()
        win = int(0.02 * sample_rate)
        self.lfcc = torchaudio.transforms.LFCC(
            sample_rate=sample_rate, n_filter=n_filter, n_lfcc=n_lfcc, f_min=0.0, f_max=sample_rate / 2,
            speckwargs={"n_fft": 512 if sample_rate <= 16000 else 1024, "win_length": win, "hop_length": win // 2,
                        "window_fn": torch.hamming_window, "center": True},
        )
        self.deltas = torchaudio.transforms.ComputeDeltas(win_length=3)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # (B, samples) -> (B, 3*n_lfcc, frames)
        wave = torch.cat([wave[:, :1], wave[:, 1:] - 0.97 * wave[:, :-1]], dim=1)
        c = self.lfcc(wave) if self.training else self.lfcc_per_clip(wave)
        d = self.deltas(c)
        return torch.cat([c, d, self.deltas(d)], dim=1)

    def lfcc_per_clip(self, wave: torch.Tensor) -> torch.Tensor:
        """`self.lfcc(wave)` computed clip by clip where torchaudio mixes a batch, and faster; for one
        clip the same ops on the same values, so the same bits (tests/test_models.py).

        torchaudio floors the dB filterbank energies 80 dB below the loudest value of the whole
        (batch, filter, frame) input, so a clip's features would depend on the clips batched with it;
        here each clip has its own floor (amplitude_to_DB of a (batch, 1, frame, filter) input).
        Training keeps torchaudio's batch-wide floor, which every model so far was trained with.
        The magnitude is taken in the STFT's own (frame, bin) memory order (half the time of
        torchaudio's transposed view) as torch.hypot of the real and imaginary parts. On the interleaved
        parts hypot runs element by element through the C library's hypotf, which is what complex abs
        computes on CPU: the same bits, in ~60 % of the time. A batch (whose scores are only within
        float32 rounding of one-clip scores anyway: conv and matmul block by batch) gives hypot
        contiguous parts, which take its vectorised kernel (SLEEF, within 1 ULP of hypotf, 2x faster:
        ~9 % of a batched forward pass)."""
        t = self.lfcc
        spec = torchaudio.functional.spectrogram(
            wave, t.Spectrogram.pad, t.Spectrogram.window, t.Spectrogram.n_fft, t.Spectrogram.hop_length,
            t.Spectrogram.win_length, None, t.Spectrogram.normalized, t.Spectrogram.center,
            t.Spectrogram.pad_mode, t.Spectrogram.onesided)  # complex (B, bin, frame), stored (B, frame, bin)
        re_im = torch.view_as_real(spec.transpose(-1, -2))  # (B, frame, bin, 2), contiguous
        re, im = re_im[..., 0], re_im[..., 1]
        if wave.shape[0] > 1:
            re, im = re.contiguous(), im.contiguous()
        power = torch.hypot(re, im).pow_(t.Spectrogram.power)  # (B, frame, bin)
        energies = torch.matmul(power, t.filter_mat)  # (B, frame, filter)
        db = t.amplitude_to_DB(energies.unsqueeze(1)).squeeze(1)
        return torch.matmul(db, t.dct_mat).transpose(-1, -2)  # (B, n_lfcc, frame)


class MaxFeatureMap(nn.Module):
    """Splits channels in two halves and keeps the element-wise maximum (LCNN's activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.maximum(a, b)


class MaxPool2x2(nn.MaxPool2d):
    """nn.MaxPool2d(2); in eval mode the maximum of the four strided quarter views: the same values
    (a maximum is exact) in a third of the time of max_pool2d's CPU kernel, which computes indices too."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class LCNN(nn.Module):
    def __init__(self, sample_rate: int, n_lfcc: int, n_filter: int, channels: list[int], dropout: float):
        super().__init__()
        self.frontend = LFCC(sample_rate, n_lfcc, n_filter)
        self.input_norm = nn.BatchNorm1d(3 * n_lfcc)  # LFCCs are in dB: bring them to unit scale
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(channels):
            k, stride = (5, 2) if i == 0 else (3, 1)  # a strided first conv keeps CPU training fast
            layers += [nn.Conv2d(c_in, 2 * c, k, stride=stride, padding=k // 2), MaxFeatureMap(), nn.BatchNorm2d(c)]
            if i < len(channels) - 1:
                layers.append(MaxPool2x2())
            c_in = c
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c_in, 2)
        self.embedding_dim = 2 * c_in

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        feats = self.input_norm(self.frontend(wave))
        h = self.body(feats.unsqueeze(1))  # (B, C, F', T')
        h = h.mean(dim=2)  # pool frequency
        return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)  # pool time: any length scores

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(embedding))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(wave))


SCHEMA = {
    "crop_samples": Field(INT, min=160, max=10**7),  # training crop at data.sample_rate (train.crop_seconds: null)
    "n_lfcc": Field(INT, min=4, max=128),
    "n_filter": Field(INT, min=4, max=256),
    "channels": Field((list,), items=Field(INT, min=1, max=1024), check=length_between(1, 6)),
    "dropout": Field(NUM, min=0, max=0.95),
}

SPEC = register(ModelSpec(
    "lcnn", SCHEMA,
    lambda p, sr: LCNN(sr, p["n_lfcc"], p["n_filter"], p["channels"], p["dropout"]),
    "LFCC + light CNN (Max-Feature-Map), the ASVspoof 2021 baseline family, slimmed for CPU",
))

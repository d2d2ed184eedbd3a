"""`rawnet2`: RawNet2 on the raw waveform, after the ASVspoof 2021 LA/DF baseline (Tak et al., "End-to-end
anti-spoofing with RawNet2", ICASSP 2021; code: asvspoof-challenge/2021 LA/Baseline-RawNet2 and
eurecom-asp/rawnet2-antispoofing).

sinc filterbank (fixed, mel-spaced) -> |.| -> max-pool 3 -> BN -> SELU -> residual blocks, each followed
by filter-wise feature map scaling (FMS) -> BN -> SELU -> GRU -> last step -> FC (the embedding) -> FC.
The params.yaml defaults are the 2021 baseline configuration (20 filters of 1025 taps; blocks 2 x 20
and 4 x 128 channels; GRU 3 x 1024; FC 1024).

As in the baseline code, each block's first convolution reads the block input itself: the baseline's
pre-activation BN+LeakyReLU of blocks 2.. is computed and then discarded, so it is left out here (it
changes no output; it would add 2 x input channels parameters per block).
"""
from __future__ import annotations

import torch
from torch import nn

from antispoof.models import ModelSpec, register, repeat_to_length
from antispoof.models.sinc import SincFilterbank
from antispoof.schema import INT, Field, length_between


class FMSResidualBlock(nn.Module):
    """1-D residual block (conv-BN-LeakyReLU-conv + skip, max-pool 3), then FMS: every channel is scaled
    and shifted by a sigmoid gate computed from its time average (x * s + s)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm1d(c_out)
        self.act = nn.LeakyReLU(0.3)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.pool = nn.MaxPool1d(3)
        self.fms = nn.Linear(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.conv2(self.act(self.bn(self.conv1(x)))) + self.skip(x))
        gate = torch.sigmoid(self.fms(h.mean(dim=2))).unsqueeze(2)
        return h * gate + gate


class RawNet2(nn.Module):
    def __init__(self, sample_rate: int, sinc_filters: int, sinc_length: int, block_channels: list[int],
                 gru_hidden: int, gru_layers: int, fc_hidden: int):
        super().__init__()
        self.sinc = SincFilterbank(sinc_filters, sinc_length, sample_rate)
        self.sinc_bn = nn.BatchNorm1d(sinc_filters)
        channels = [sinc_filters, *block_channels]
        self.blocks = nn.Sequential(*(FMSResidualBlock(a, b) for a, b in zip(channels, channels[1:])))
        self.gru_bn = nn.BatchNorm1d(channels[-1])
        self.gru = nn.GRU(channels[-1], gru_hidden, num_layers=gru_layers, batch_first=True)
        self.fc = nn.Linear(gru_hidden, fc_hidden)
        self.head = nn.Linear(fc_hidden, 2)
        self.embedding_dim = fc_hidden
        # Shortest input that leaves one frame after the sinc filters and 1 + len(blocks) poolings by 3.
        self.min_samples = 3 ** (1 + len(block_channels)) + self.sinc.length - 1

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.sinc(repeat_to_length(wave, self.min_samples))
        x = torch.selu(self.sinc_bn(nn.functional.max_pool1d(x.abs(), 3)))
        x = torch.selu(self.gru_bn(self.blocks(x)))
        out, _ = self.gru(x.transpose(1, 2))  # (B, frames, hidden)
        return self.fc(out[:, -1])

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(wave))


SCHEMA = {
    "crop_samples": Field(INT, min=160, max=10**7),
    "sinc_filters": Field(INT, min=1, max=1024),
    "sinc_length": Field(INT, min=3, max=8192),
    "block_channels": Field((list,), items=Field(INT, min=1, max=2048), check=length_between(1, 8)),
    "gru_hidden": Field(INT, min=1, max=8192),
    "gru_layers": Field(INT, min=1, max=16),
    "fc_hidden": Field(INT, min=1, max=8192),
}

SPEC = register(ModelSpec(
    "rawnet2", SCHEMA,
    lambda p, sr: RawNet2(sr, p["sinc_filters"], p["sinc_length"], p["block_channels"], p["gru_hidden"],
                          p["gru_layers"], p["fc_hidden"]),
    "RawNet2 (fixed sinc filters, residual blocks with FMS, GRU), the ASVspoof 2021 raw-waveform baseline",
))

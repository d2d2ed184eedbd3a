"""`aasist` and `aasist_light`: AASIST (Jung et al., "AASIST: Audio anti-spoofing using integrated
spectro-temporal graph attention networks", ICASSP 2022; code: clovaai/aasist), one architecture under
two registry names whose params.yaml defaults differ (published size / small CPU size).

    sinc filterbank (fixed) -> |.| -> max-pool 3x3 -> BN -> SELU -> RawNet-style 2-D residual encoder
    -> GraphBackend: spectral GAT and temporal GAT, each with graph pooling -> two heterogeneous
    stacking graph attention branches (HS-GAL) with a learned master node -> max of the branches ->
    readout (max|.| and mean of both node types, plus the master node) = embedding -> dropout -> linear.

`GraphBackend` takes any (B, C, F, T) feature map, so the `ssl` model reuses it on SSL features.

Differences from the published code, none of which changes the published computation: the residual
blocks' pre-activation BN+SELU, whose output that code discards, is left out (it holds 512 parameters
at the published size: 297,866 there, 297,354 here); the published configs list a 4th pool ratio and
temperature that their code never reads, so there are three of each here; the frequency masking
option (`Freq_aug`, off in the published configs and drawn from Python's global RNG) is not offered.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from antispoof.models import ModelSpec, register, repeat_to_length
from antispoof.models.sinc import SincFilterbank
from antispoof.schema import INT, NUM, Field, length_between

# Dropout rates of the published code (fixed there too).
GRAPH_INPUT_DROPOUT, GRAPH_POOL_DROPOUT, BRANCH_DROPOUT, READOUT_DROPOUT = 0.2, 0.3, 0.2, 0.5


def _attention_vector(dim: int) -> nn.Parameter:
    w = nn.Parameter(torch.empty(dim, 1))
    nn.init.xavier_normal_(w)
    return w


def _node_batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over every node of every graph: (B, N, D) treated as B*N samples of D features."""
    return bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _pairwise_products(x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N, D): element-wise product of every node pair (the attention input)."""
    return x.unsqueeze(2) * x.unsqueeze(1)


class GraphAttention(nn.Module):
    """Graph attention over a fully connected graph of nodes (B, N, in_dim) -> (B, N, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float):
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.drop = nn.Dropout(GRAPH_INPUT_DROPOUT)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        scores = torch.tanh(self.att_proj(_pairwise_products(x))) @ self.att_weight  # (B, N, N, 1)
        att = F.softmax(scores.squeeze(-1) / self.temperature, dim=-1)  # over neighbours j of node i
        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return F.selu(_node_batch_norm(self.bn, x))


class HeterogeneousGraphAttention(nn.Module):
    """HS-GAL: attention over the union of two node types (e.g. temporal and spectral), with one
    attention vector per type pair (the two cross-type directions share one), plus a master node that
    attends to all nodes. Returns the updated nodes of each type and the updated master node."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float):
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_proj_master = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _attention_vector(out_dim)
        self.att_weight22 = _attention_vector(out_dim)
        self.att_weight12 = _attention_vector(out_dim)
        self.att_weight_master = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_att_master = nn.Linear(in_dim, out_dim)
        self.proj_without_att_master = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.drop = nn.Dropout(GRAPH_INPUT_DROPOUT)
        self.temperature = temperature

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, master: torch.Tensor):
        n1 = x1.shape[1]
        x = self.drop(torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1))
        # Master node: attention over all nodes, from their products with the master.
        m_scores = torch.tanh(self.att_proj_master(x * master)) @ self.att_weight_master  # (B, N, 1)
        m_att = F.softmax(m_scores / self.temperature, dim=-2)
        master = self.proj_with_att_master(m_att.transpose(1, 2) @ x) + self.proj_without_att_master(master)
        # Nodes: type-pair-specific attention scores, assembled block-wise.
        h = torch.tanh(self.att_proj(_pairwise_products(x)))  # (B, N, N, out)
        top = torch.cat([h[:, :n1, :n1] @ self.att_weight11, h[:, :n1, n1:] @ self.att_weight12], dim=2)
        bottom = torch.cat([h[:, n1:, :n1] @ self.att_weight12, h[:, n1:, n1:] @ self.att_weight22], dim=2)
        att = F.softmax(torch.cat([top, bottom], dim=1).squeeze(-1) / self.temperature, dim=-1)
        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        x = F.selu(_node_batch_norm(self.bn, x))
        return x[:, :n1], x[:, n1:], master


class GraphPool(nn.Module):
    """Keeps the top `ratio` of nodes (at least one) by a learned sigmoid score, scaled by that score."""

    def __init__(self, ratio: float, dim: int):
        super().__init__()
        self.ratio = ratio
        self.drop = nn.Dropout(GRAPH_POOL_DROPOUT)
        self.score = nn.Linear(dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.score(self.drop(h)))  # (B, N, 1)
        keep = max(int(h.shape[1] * self.ratio), 1)
        idx = torch.topk(scores, keep, dim=1).indices.expand(-1, -1, h.shape[2])
        return torch.gather(h * scores, 1, idx)


class GraphBackend(nn.Module):
    """The AASIST graph part: (B, C, F, T) feature map -> (B, 5 * gat_dims[1]) embedding.

    Spectral nodes: max |.| over time (F nodes of C dims, plus a learned positional embedding, hence
    the fixed `n_freq`); temporal nodes: max |.| over frequency (T nodes, any T)."""

    def __init__(self, channels: int, n_freq: int, gat_dims: list[int], pool_ratios: list[float],
                 temperatures: list[float]):
        super().__init__()
        g0, g1 = gat_dims
        self.pos_spectral = nn.Parameter(torch.randn(1, n_freq, channels))
        self.master1 = nn.Parameter(torch.randn(1, 1, g0))
        self.master2 = nn.Parameter(torch.randn(1, 1, g0))
        self.gat_spectral = GraphAttention(channels, g0, temperatures[0])
        self.gat_temporal = GraphAttention(channels, g0, temperatures[1])
        self.pool_spectral = GraphPool(pool_ratios[0], g0)
        self.pool_temporal = GraphPool(pool_ratios[1], g0)
        # Two HS-GAL branches (each: a layer, pooling, a second layer added residually).
        self.hs_gal = nn.ModuleList(nn.ModuleDict({
            "first": HeterogeneousGraphAttention(g0, g1, temperatures[2]),
            "second": HeterogeneousGraphAttention(g1, g1, temperatures[2]),
            "pool_temporal": GraphPool(pool_ratios[2], g1),
            "pool_spectral": GraphPool(pool_ratios[2], g1),
        }) for _ in range(2))
        self.branch_drop = nn.Dropout(BRANCH_DROPOUT)
        self.embedding_dim = 5 * g1

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        spectral = e.abs().amax(dim=3).transpose(1, 2) + self.pos_spectral  # (B, F, C)
        temporal = e.abs().amax(dim=2).transpose(1, 2)  # (B, T, C)
        spectral = self.pool_spectral(self.gat_spectral(spectral))
        temporal = self.pool_temporal(self.gat_temporal(temporal))
        branches = []
        for branch, master in zip(self.hs_gal, (self.master1, self.master2)):
            t, s, m = branch["first"](temporal, spectral, master)
            t, s = branch["pool_temporal"](t), branch["pool_spectral"](s)
            t_aug, s_aug, m_aug = branch["second"](t, s, m)
            branches.append([self.branch_drop(v) for v in (t + t_aug, s + s_aug, m + m_aug)])
        t, s, m = (torch.maximum(a, b) for a, b in zip(*branches))
        return torch.cat([t.abs().amax(dim=1), t.mean(dim=1), s.abs().amax(dim=1), s.mean(dim=1), m.squeeze(1)],
                         dim=1)


class ResidualBlock2d(nn.Module):
    """conv(2x3) -> BN -> SELU -> conv(2x3), plus a (1x3) projection skip when channels change, then max
    pooling over time by `time_pool` (the frequency axis keeps its size)."""

    def __init__(self, c_in: int, c_out: int, time_pool: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, (2, 3), padding=(1, 1))
        self.bn = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, (2, 3), padding=(0, 1))
        self.skip = nn.Conv2d(c_in, c_out, (1, 3), padding=(0, 1)) if c_in != c_out else nn.Identity()
        self.pool = nn.MaxPool2d((1, time_pool)) if time_pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv2(F.selu(self.bn(self.conv1(x)))) + self.skip(x))


class SpectroTemporalEncoder(nn.Module):
    """(B, F, T) 'image' -> (B, C, F // 3, T') feature map: max-pool 3x3 (of |x| when `magnitude`), BN,
    SELU, then residual blocks with channels `channels`, each pooling time by `time_pool`."""

    def __init__(self, channels: list[int], time_pool: int, magnitude: bool):
        super().__init__()
        self.magnitude = magnitude
        self.bn = nn.BatchNorm2d(1)
        widths = [1, *channels]
        self.blocks = nn.Sequential(*(ResidualBlock2d(a, b, time_pool) for a, b in zip(widths, widths[1:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        x = F.max_pool2d(x.abs() if self.magnitude else x, (3, 3))
        return self.blocks(F.selu(self.bn(x)))


class AASIST(nn.Module):
    def __init__(self, sample_rate: int, sinc_filters: int, sinc_length: int, encoder_channels: list[int],
                 gat_dims: list[int], pool_ratios: list[float], temperatures: list[float]):
        super().__init__()
        self.sinc = SincFilterbank(sinc_filters, sinc_length, sample_rate)
        self.encoder = SpectroTemporalEncoder(encoder_channels, time_pool=3, magnitude=True)
        self.backend = GraphBackend(encoder_channels[-1], sinc_filters // 3, gat_dims, pool_ratios, temperatures)
        self.drop = nn.Dropout(READOUT_DROPOUT)
        self.head = nn.Linear(self.backend.embedding_dim, 2)
        self.embedding_dim = self.backend.embedding_dim
        # Shortest input leaving one frame after the sinc filters, the 3x3 pooling and every block's pooling.
        self.min_samples = 3 ** (1 + len(encoder_channels)) + self.sinc.length - 1

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        return self.backend(self.encoder(self.sinc(repeat_to_length(wave, self.min_samples))))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(embedding))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(wave))


# The graph back-end's keys, shared with the `ssl` model's AASIST back-end section.
GRAPH_SCHEMA = {
    "gat_dims": Field((list,), items=Field(INT, min=1, max=4096), check=length_between(2, 2)),
    "pool_ratios": Field((list,), items=Field(NUM, min=0.01, max=1), check=length_between(3, 3)),
    "temperatures": Field((list,), items=Field(NUM, min=0.01, max=1000), check=length_between(3, 3)),
}

SCHEMA = {
    "crop_samples": Field(INT, min=160, max=10**7),
    "sinc_filters": Field(INT, min=3, max=1024),  # the spectral graph has sinc_filters // 3 nodes
    "sinc_length": Field(INT, min=3, max=8192),
    "encoder_channels": Field((list,), items=Field(INT, min=1, max=1024), check=length_between(1, 8)),
    **GRAPH_SCHEMA,
}


def build(p: dict, sample_rate: int) -> AASIST:
    return AASIST(sample_rate, p["sinc_filters"], p["sinc_length"], p["encoder_channels"], p["gat_dims"],
                  p["pool_ratios"], p["temperatures"])


SPEC = register(ModelSpec(
    "aasist", SCHEMA, build,
    "AASIST (sinc front-end, residual encoder, spectro-temporal graph attention), published size",
))
SPEC_LIGHT = register(ModelSpec(
    "aasist_light", SCHEMA, build,
    "AASIST with small sizes for CPU training",
))

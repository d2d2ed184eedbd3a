"""Scores of utterances under a trained detector: the evaluate stage's, and training's dev pass.

A clip's model input is the full utterance or, with `crop`, its centre crop of `crop` samples (a
shorter clip tiled: audio.fix_length). `batch_size` 1 scores one clip per forward pass: the reference,
so a score never depends on its neighbours. Larger batches stack clips of equal input length
(data.ScoringBatches); in eval mode a model computes each clip's output from that clip alone (tested
per model), so a batched score differs from the reference only by float32 rounding (< 1e-5).

Built for throughput (benchmarks/scale.py, README "Real corpora at full size"): a batch is one float32
array filled in place by one loader call (ScoringInputs): each clip's window is cut from the memory-
mapped store entry before it is converted, so only the crop is read and converted, with no tensor per
clip and no collate step; the forward pass runs under torch.inference_mode. The evaluate stage also
keeps freed memory for reuse (allocator.py), so a batch does not page-fault its working set anew.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from antispoof.audio_store import as_float32_into
from antispoof.data import ScoringBatches, eval_window
from antispoof.models import scores_from_logits

__all__ = ["ScoringInputs", "score_utterances"]


class ScoringInputs(Dataset):
    """Indexed by a batch (a list of clip positions): their model inputs as one (batch, samples) float32
    tensor. `clips` is data.SplitClips or data.VariantClips (whose `window(i, crop)` reads just the
    input's samples, int16 or float32: see audio_store.as_float32), or a sequence of 1-D arrays."""

    def __init__(self, clips, lengths: np.ndarray, crop: int | None):
        self.clips, self.lengths, self.crop = clips, lengths, crop

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, positions: list[int]) -> torch.Tensor:
        width = self.crop if self.crop is not None else int(self.lengths[positions[0]])
        out = np.empty((len(positions), width), dtype=np.float32)
        read = getattr(self.clips, "window", None)
        for row, i in zip(out, positions):
            window = read(i, self.crop) if read is not None else eval_window(np.asarray(self.clips[i]), self.crop)
            if window.shape[0] != width:  # only equal lengths share a batch (ScoringBatches)
                raise ValueError(f"clip {i} has {window.shape[0]} samples in a batch of {width}")
            as_float32_into(window, row)
        return torch.from_numpy(out)


@contextmanager
def fast_inference():
    """torch.inference_mode, with deterministic mode's filling of every new tensor (torch.utils.
    deterministic.fill_uninitialized_memory) off: the fill only makes a read of uninitialized memory
    visible, no op of a forward pass reads its output before writing it (the bit-identity tests would
    see it), and it costs ~25 % of a batched LCNN forward pass here. Deterministic algorithms stay on."""
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill


def score_utterances(model: torch.nn.Module, clips, crop: int | None = None, batch_size: int = 1,
                     num_workers: int = 0) -> np.ndarray:
    """Scores of `clips` (data.SplitClips / VariantClips: read on access, so memory stays O(batch); or
    a list of 1-D arrays), in their order, as float64. Full length, or a centre crop of `crop` samples.
    `batch_size` clips of equal input length per forward pass; `num_workers` loader processes read
    them (results do not depend on it)."""
    model.eval()
    device = next(model.parameters()).device
    lengths = getattr(clips, "lengths", None)
    if lengths is None:  # a plain list of arrays
        lengths = np.array([len(x) for x in clips], dtype=np.int64)
    batches = ScoringBatches(lengths, crop, batch_size)
    # batch_size=None: the sampler's lists go to ScoringInputs whole, which returns the batch tensor.
    # A private generator: a loader iterator must not draw from torch's global RNG (training's dropout).
    loader = DataLoader(ScoringInputs(clips, lengths, crop), sampler=batches, batch_size=None,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    out = np.empty(len(lengths), dtype=np.float64)
    with fast_inference():
        for positions, x in zip(batches, loader):
            out[positions] = scores_from_logits(model(x.to(device))).double().cpu().numpy()
    return out

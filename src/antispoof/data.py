"""Audio as the train and evaluate stages see it.

`TrainingSet` makes every random choice of a training sample (codec variant or clean, crop offset) a
pure function of (seed, epoch, sample index) through a counter-based generator, so which worker loads a
sample, how many workers there are, and where a run was resumed cannot change the result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from antispoof.audio import fix_length, load_audio, max_offset, random_crop
from antispoof.datasets import MANIFEST, read_manifest  # noqa: F401  (re-exported for the stages)
from antispoof.models import BONAFIDE, SPOOF
from antispoof.repro.rng import epoch_permutation, sample_generator

AUGMENTED = Path("data/augmented")


def load_split(manifest: pd.DataFrame, split: str, root: str | Path, sample_rate: int) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Rows of one split (manifest order) and their clean audio, resampled to `sample_rate`."""
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    root = Path(root)
    return rows, [load_audio(root / p, sample_rate) for p in rows["path"]]


def labels_of(rows: pd.DataFrame) -> np.ndarray:
    return np.where(rows["label"].to_numpy() == "bonafide", BONAFIDE, SPOOF).astype(np.int64)


class TrainingSet(Dataset):
    """Index with (epoch, i): returns (crop of sample i as drawn for that epoch, label)."""

    def __init__(self, rows: pd.DataFrame, audio: list[np.ndarray], variants, seed: int, prob: float, crop: int):
        self.rows, self.audio, self.variants = rows, audio, variants
        self.labels = labels_of(rows)
        self.seed, self.prob, self.crop = seed, prob, crop
        # Codec variants available per sample, in a fixed (sorted) order.
        self.choices = [sorted(variants.variants_of(u)) if variants is not None else [] for u in rows["utt_id"]]

    def __len__(self) -> int:
        return len(self.audio)

    def draw(self, epoch: int, i: int) -> tuple[str, int]:
        """The random choices for sample i in `epoch`: condition ('clean' or a variant) and crop offset."""
        g = sample_generator(self.seed, epoch, i)
        use_variant, which, offset_u = g.random(), g.random(), g.random()  # always three draws
        options = self.choices[i]
        condition = options[int(which * len(options))] if options and use_variant < self.prob else "clean"
        # Variants have their source's length (codecs.py aligns and trims them), so one offset fits all.
        return condition, int(offset_u * (max_offset(len(self.audio[i]), self.crop) + 1))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = key
        condition, offset = self.draw(epoch, i)
        x = self.audio[i] if condition == "clean" else self.variants.get(self.rows["utt_id"].iat[i], condition)
        return torch.from_numpy(random_crop(np.asarray(x, dtype=np.float32), self.crop, offset)), int(self.labels[i])


class EpochBatches(Sampler):
    """Batches of (epoch, index) keys for one epoch, in the order epoch_permutation(seed, epoch) gives,
    starting at batch `start` (the resume cursor). Set `epoch`/`start` before iterating."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size) - self.start

    def __iter__(self):
        order = epoch_permutation(self.seed, self.epoch, self.n)
        for b in range(self.start, -(-self.n // self.batch_size)):
            yield [(self.epoch, int(i)) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in batch]), torch.tensor([y for _, y in batch], dtype=torch.int64)


def eval_view(x: np.ndarray, crop: int | None) -> np.ndarray:
    """The deterministic evaluation input: the full utterance, or a centre crop (short clips tiled)."""
    return x if crop is None else fix_length(x, crop)

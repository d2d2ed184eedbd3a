"""Audio as the train and evaluate stages see it.

`TrainingSet` makes every random choice of a training sample (codec variant or clean, crop offset) a
pure function of (seed, epoch, sample index) through a counter-based generator, so which worker loads a
sample, how many workers there are, and where a run was resumed cannot change the result.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from antispoof.audio import fix_length, max_offset, output_length, random_crop
from antispoof.audio_store import AudioStore, as_float32, audio_key
from antispoof.datasets import MANIFEST, read_manifest  # noqa: F401  (re-exported for the stages)
from antispoof.errors import DataError
from antispoof.models import BONAFIDE, SPOOF
from antispoof.repro.rng import epoch_permutation, sample_generator

AUGMENTED = Path("data/augmented")


class SplitClips:
    """The clean clips of one split, read on access from the decoded-audio store (audio_store.py).

    Holds only small numpy arrays (ids, store keys, paths, hashes, lengths, labels): no audio, and no
    Python list of per-utterance objects, whose refcounts DataLoader workers would touch and so copy
    page by page. `clip(i)` memory-maps the stored entry (decoding and storing it first if it is missing
    or corrupt); the map is released with the returned view. Each process verifies an entry's checksum
    on its first read of that entry.
    """

    def __init__(self, rows: pd.DataFrame, root: str | Path, sample_rate: int, store: AudioStore | None = None):
        self.root, self.sample_rate = Path(root), int(sample_rate)
        self.store = store if store is not None else AudioStore()
        self.utt_ids = rows["utt_id"].to_numpy(dtype=str)
        self.paths = np.char.encode(rows["path"].to_numpy(dtype=str), "utf-8")
        self.shas = rows["sha256"].to_numpy(dtype="S64")
        native = rows["sample_rate"].to_numpy(dtype=np.int64)
        frames = np.rint(rows["duration"].to_numpy(dtype=np.float64) * native).astype(np.int64)
        # Clip lengths at `sample_rate`, known before reading (the manifest's duration has 1-us
        # resolution, finer than any sample period); checked against the store on every read.
        self.lengths = np.array([output_length(f, r, sample_rate) for f, r in zip(frames, native)], dtype=np.int64)
        self.keys = np.array([audio_key(h.decode(), r, sample_rate) for h, r in zip(self.shas, native)], dtype="S64")
        self.labels = labels_of(rows)
        self.verified = np.zeros(len(self.keys), dtype=bool)

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, positions: np.ndarray) -> "SplitClips":
        """The clips at `positions` (in that order), sharing the store."""
        out = object.__new__(SplitClips)
        out.root, out.sample_rate, out.store = self.root, self.sample_rate, self.store
        for name in ("utt_ids", "paths", "shas", "lengths", "keys", "labels", "verified"):
            setattr(out, name, getattr(self, name)[positions])
        return out

    def view(self, i: int) -> np.ndarray:
        """Clip i's stored samples (memory map; int16 or float32, see audio_store.as_float32)."""
        source = self.root / self.paths[i].decode("utf-8")
        x = self.store.clip(self.keys[i].decode(), source, self.shas[i].decode(), self.sample_rate,
                            verify=not self.verified[i])
        self.verified[i] = True
        if x.shape[0] != self.lengths[i]:
            raise DataError(f"{source}: {x.shape[0]} samples at {self.sample_rate} Hz, but the manifest's "
                            f"duration says {self.lengths[i]}: re-run the prepare stage")
        return x

    def __getitem__(self, i: int) -> np.ndarray:
        """Clip i as float32 (a copy), exactly what `audio.load_audio` decodes."""
        return as_float32(self.view(i))

    def window(self, i: int, crop: int | None) -> np.ndarray:
        """Clip i's evaluation input (`eval_window`) in its stored dtype, reading only the samples it
        uses (positioned reads, no memory map; the whole entry on its first, checksummed read)."""
        n = int(self.lengths[i])
        start, stop = eval_span(n, crop)
        source = os.path.join(self.root, self.paths[i].decode("utf-8"))  # str: a Path costs more than the read
        x, stored = self.store.clip_window(self.keys[i].decode(), source, self.shas[i].decode(), self.sample_rate,
                                           not self.verified[i], start, stop)
        self.verified[i] = True
        if stored != n:
            raise DataError(f"{source}: {stored} samples at {self.sample_rate} Hz, but the manifest's "
                            f"duration says {n}: re-run the prepare stage")
        return x if crop is None or n >= crop else fix_length(x, crop)


def load_split(manifest: pd.DataFrame, split: str, root: str | Path, sample_rate: int) -> tuple[pd.DataFrame, SplitClips]:
    """Rows of one split (manifest order) and their clean clips at `sample_rate` (read on access)."""
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    return rows, SplitClips(rows, root, sample_rate)


def labels_of(rows: pd.DataFrame) -> np.ndarray:
    return np.where(rows["label"].to_numpy() == "bonafide", BONAFIDE, SPOOF).astype(np.int64)


def dev_subset(utt_ids: np.ndarray, labels: np.ndarray, max_n: int | None) -> np.ndarray:
    """Positions (ascending) of a deterministic subset of at most `max_n` utterances, stratified by label:
    each label keeps its share of `max_n` (largest remainders; at least one per label present when
    max_n allows), filled by the utterances with the smallest sha256(utt_id). Independent of the seed,
    so every replicate and experiment early-stops on the same utterances. None = all."""
    n = len(utt_ids)
    if max_n is None or max_n >= n:
        return np.arange(n)
    present, counts = np.unique(labels, return_counts=True)
    quota = max_n * counts / n
    take = np.floor(quota).astype(np.int64)
    for j in np.argsort(-(quota - take), kind="stable")[: max_n - int(take.sum())]:
        take[j] += 1
    if max_n >= len(present):  # every class present, so the EER stays defined
        while (take == 0).any():
            take[np.argmax(take)] -= 1
            take[np.argmin(take)] += 1
    rank = np.array([int(hashlib.sha256(str(u).encode("utf-8")).hexdigest()[:16], 16) for u in utt_ids], dtype=np.uint64)
    keep = []
    for label, k in zip(present, take):
        pos = np.flatnonzero(labels == label)
        keep.append(pos[np.argsort(rank[pos], kind="stable")[:k]])
    return np.sort(np.concatenate(keep))


class TrainingSet(Dataset):
    """Index with (epoch, i): returns (crop of sample i as drawn for that epoch, label, domain), where
    domain is 0 for clean audio and `domain_of[condition]` for a codec variant (DANN's domain label)."""

    def __init__(self, clips: SplitClips, variants, seed: int, prob: float, crop: int,
                 domain_of: dict[str, int] | None = None):
        self.clips, self.variants = clips, variants
        self.labels = clips.labels
        self.seed, self.prob, self.crop = seed, prob, crop
        self.domain_of = domain_of or {}

    def __len__(self) -> int:
        return len(self.clips)

    def draw(self, epoch: int, i: int) -> tuple[str, int]:
        """The random choices for sample i in `epoch`: condition ('clean' or a variant) and crop offset."""
        g = sample_generator(self.seed, epoch, i)
        use_variant, which, offset_u = g.random(), g.random(), g.random()  # always three draws
        # Codec variants available for the sample, in a fixed (sorted) order.
        options = sorted(self.variants.variants_of(self.clips.utt_ids[i])) if self.variants is not None else []
        condition = options[int(which * len(options))] if options and use_variant < self.prob else "clean"
        # Variants have their source's length (codecs.py aligns and trims them), so one offset fits all.
        return condition, int(offset_u * (max_offset(int(self.clips.lengths[i]), self.crop) + 1))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        epoch, i = key
        condition, offset = self.draw(epoch, i)
        if condition == "clean":  # crop the memory map, then convert only the crop
            x = as_float32(random_crop(self.clips.view(i), self.crop, offset))
        else:
            x = random_crop(self.variants.get(self.clips.utt_ids[i], condition), self.crop, offset)
        return torch.from_numpy(x), int(self.labels[i]), self.domain_of.get(condition, 0)


class EpochBatches(Sampler):
    """Batches of (epoch, index) keys for one epoch, in the order epoch_permutation(seed, epoch) gives,
    starting at batch `start` (the resume cursor). Set `epoch`/`start` before iterating.

    With `world` > 1 processes (torchrun), each global batch of `batch_size` keys is cut into `world`
    contiguous slices and this sampler yields slice `rank`: which process draws a sample changes
    nothing about it (its randomness is keyed by (seed, epoch, index))."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size) - self.start

    def global_batch(self, order: np.ndarray, b: int) -> np.ndarray:
        return order[b * self.batch_size:(b + 1) * self.batch_size]

    def __iter__(self):
        order = epoch_permutation(self.seed, self.epoch, self.n)
        for b in range(self.start, -(-self.n // self.batch_size)):
            batch = self.global_batch(order, b)
            if self.world > 1:
                batch = np.array_split(batch, self.world)[self.rank]
            yield [(self.epoch, int(i)) for i in batch]


def collate(batch: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, labels, domains) of a training batch."""
    return (torch.stack([x for x, _, _ in batch]), torch.tensor([y for _, y, _ in batch], dtype=torch.int64),
            torch.tensor([d for _, _, d in batch], dtype=torch.int64))


def eval_span(length: int, crop: int | None) -> tuple[int, int]:
    """Samples [start, stop) of a clip of `length` that its evaluation input uses: all of them, or the
    centre `crop` (where audio.fix_length cuts it)."""
    if crop is None or length <= crop:
        return 0, length
    start = (length - crop) // 2
    return start, start + crop


def eval_window(x: np.ndarray, crop: int | None) -> np.ndarray:
    """The deterministic evaluation input of clip `x`: the full utterance, or its centre crop (a view)
    of `crop` samples, a shorter clip tiled (audio.fix_length)."""
    start, stop = eval_span(x.shape[0], crop)
    return x[start:stop] if crop is None or x.shape[0] >= crop else fix_length(x, crop)


class VariantClips:
    """One codec condition's variants of some utterances, with the interface of SplitClips (read from
    the memory-mapped shards of data/augmented on access)."""

    def __init__(self, store, utt_ids: list[str], condition: str):
        self.store, self.condition = store, condition
        self.utt_ids = np.asarray(utt_ids, dtype=str)
        self.lengths = store.lengths(self.utt_ids, condition)
        for u in self.utt_ids[self.lengths < 0][:1]:
            store.length(u, condition)  # raises KeyError naming the missing variant

    def __len__(self) -> int:
        return len(self.utt_ids)

    def window(self, i: int, crop: int | None) -> np.ndarray:
        """Variant i's evaluation input (`eval_window`) as stored int16 (see audio_store.as_float32),
        reading only the samples it uses."""
        n = int(self.lengths[i])
        start, stop = eval_span(n, crop)
        x = self.store.get_int16(self.utt_ids[i], self.condition, start, stop)
        return x if crop is None or n >= crop else fix_length(x, crop)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.store.get(self.utt_ids[i], self.condition)


class ScoringBatches(Sampler):
    """Batches of clip positions to score together: only clips whose model input has the same length
    (all of them with a crop; equal durations in full-length mode), at most `batch_size` per batch,
    groups in order of first appearance, clips in manifest order. A pure function of the lengths, so
    scores cannot depend on the number of workers. Held as two int arrays (no list per batch)."""

    def __init__(self, lengths: np.ndarray, crop: int | None, batch_size: int):
        n = len(lengths)
        sizes = np.full(n, crop, dtype=np.int64) if crop is not None else np.asarray(lengths, dtype=np.int64)
        _, first, group = np.unique(sizes, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        keyed = rank[group.reshape(-1)]
        # stable: manifest order within a group; one clip per batch needs no grouping at all
        self.order = np.argsort(keyed, kind="stable") if batch_size > 1 else np.arange(n)
        ordered = keyed[self.order] if batch_size > 1 else np.zeros(n, dtype=np.int64)
        in_group = np.arange(n) - np.searchsorted(ordered, ordered, side="left")
        self.starts = np.flatnonzero(in_group % batch_size == 0)
        self.ends = np.r_[self.starts[1:], n].astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self):
        for a, b in zip(self.starts, self.ends):
            yield self.order[a:b].tolist()

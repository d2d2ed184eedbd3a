"""Counter-based randomness: every random draw is a pure function of its coordinates.

The batch order of epoch `e` depends only on (seed, e); the random draws made for sample `i` in epoch
`e` (augmentation, crop offsets, ...) depend only on (seed, e, i). No global or per-worker RNG state is
involved, so the data seen by the model does not depend on how many DataLoader workers there are, which
worker loads which sample, the order in which they run, or whether the run was resumed half-way.

Construction: the coordinates (each as a fixed-width 64-bit number), prefixed by a domain constant,
are hashed with numpy's `SeedSequence` into a 128-bit Philox key. Permutations and per-sample draws use
different domain constants, so they never share a stream, even for coincident numbers (e.g. epoch 3 /
index 3). SeedSequence and the raw Philox stream are covered by numpy's stream-compatibility
guarantee; `epoch_permutation` uses only the raw stream (not `Generator.permutation`, whose algorithm
numpy may change between versions), so batch order is stable across numpy versions. Distributions drawn
from `sample_generator` follow numpy's `Generator` policy (stable within a numpy version; the version is
recorded in checkpoints and provenance logs).
"""
from __future__ import annotations

import numpy as np

# Domain-separation constants (ASCII tags), first word of every SeedSequence entropy list.
DOMAIN_PERMUTATION = 0x5045524D  # "PERM"
DOMAIN_SAMPLE = 0x534D504C  # "SMPL"


def _coord(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return value


def _philox(domain: int, *coords: int) -> np.random.Philox:
    # Fixed-width encoding (two uint32 words per coordinate): SeedSequence splits a python int into
    # as many words as it needs, so ([a, b] with a >= 2**32) could otherwise equal ([a', b']).
    words = [domain]
    for c in coords:
        words += [c & 0xFFFFFFFF, c >> 32]
    key = np.random.SeedSequence(np.array(words, dtype=np.uint32)).generate_state(2, dtype=np.uint64)
    return np.random.Philox(key=key)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """Order (int64 indices 0..n-1) in which the n training samples are visited in `epoch`.

    Uniform random permutation: argsort of n raw 64-bit Philox outputs (ties, probability ~n^2/2^65,
    are broken by index through the stable sort, so the result stays a deterministic permutation).
    """
    seed, epoch, n = _coord("seed", seed), _coord("epoch", epoch), _coord("n", n)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    raw = _philox(DOMAIN_PERMUTATION, seed, epoch).random_raw(n)
    return np.argsort(raw, kind="stable").astype(np.int64, copy=False)


def sample_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Fresh numpy Generator for the random draws of sample `index` in `epoch` (index = position in
    the dataset, not in the batch order). Same coordinates -> same draws, always."""
    seed, epoch, index = _coord("seed", seed), _coord("epoch", epoch), _coord("index", index)
    return np.random.Generator(_philox(DOMAIN_SAMPLE, seed, epoch, index))

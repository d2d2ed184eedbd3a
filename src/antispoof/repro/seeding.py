"""Seeds: per-replicate seed derivation and process-wide seeding of every global RNG.

Replicate seeds
---------------
Replicate 0 of an experiment uses the configured seed unchanged, so a single-replicate run is exactly
the run that `seed: N` describes. Replicate r > 0 uses

    SeedSequence([seed, r]).generate_state(1, dtype=uint32)[0] & 0x7FFFFFFF

i.e. numpy's SeedSequence hash of the pair (seed, r), cut to 31 bits so the result is a valid seed for
every library (torch, python `random`, numpy, and 32-bit signed C APIs). SeedSequence's mixing
algorithm is fixed by numpy's stream-compatibility policy, so the value is the same on every machine,
process and numpy version. Two replicates of one experiment could in principle map to the same seed
(probability ~ k^2 / 2^32 for k replicates); `replicate_seeds` checks and refuses instead of silently
running a duplicate.

Process seeding
---------------
`seed_everything` seeds python `random`, numpy's global RNG (only for third-party code: antispoof's own
data randomness is counter-based, see `antispoof.repro.rng`) and torch (CPU and every CUDA device), and
switches torch to deterministic algorithms. It cannot set PYTHONHASHSEED (that must happen before the
interpreter starts); nothing in antispoof depends on str hashing order.
"""
from __future__ import annotations

import os
import random
import sys
import warnings

import numpy as np

SEED_MASK = 0x7FFFFFFF  # 31 bits: valid for every seeding API we call
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
_VALID_CUBLAS_CONFIGS = (":4096:8", ":16:8")

# set_num_interop_threads may be called once per process, and only before inter-op parallel work.
_interop_threads_set: int | None = None


def _check_int(name: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be in [{minimum}, {upper}], got {value}")
    return value


def replicate_seed(seed: int, replicate: int) -> int:
    """Seed of replicate `replicate` of an experiment seeded with `seed` (see module docstring).

    Both must be in [0, 2**32): a seed is a 32-bit number for numpy's global RNG anyway, and the
    bound keeps the SeedSequence input an unambiguous pair of words."""
    seed = _check_int("seed", seed, maximum=0xFFFFFFFF)
    replicate = _check_int("replicate", replicate, maximum=0xFFFFFFFF)
    if replicate == 0:
        return seed
    state = np.random.SeedSequence([seed, replicate]).generate_state(1, dtype=np.uint32)
    return int(state[0]) & SEED_MASK


def replicate_seeds(seed: int, replicates: list[int]) -> dict[int, int]:
    """{replicate: seed} for every replicate; ValueError if two replicates would share a seed
    (or a replicate is listed twice)."""
    out: dict[int, int] = {}
    owner: dict[int, int] = {}
    for r in replicates:
        r = _check_int("replicate", r)
        if r in out:
            raise ValueError(f"replicate {r} listed twice")
        s = replicate_seed(seed, r)
        if s in owner:
            raise ValueError(
                f"replicates {owner[s]} and {r} of seed {seed} derive the same seed {s}; "
                "choose another base seed or other replicate numbers"
            )
        out[r] = s
        owner[s] = r
    return out


def seed_everything(seed: int, deterministic: bool, num_threads: int) -> None:
    """Seed python/numpy/torch global RNGs and configure torch for reproducible execution.

    - `deterministic=True`: cuDNN deterministic, cuDNN benchmark off, TF32 off for matmuls and cuDNN
      (TF32 rounds float32 products to a 10-bit mantissa on Ampere and later GPUs, so results would
      depend on the GPU generation), torch's deterministic algorithms on (an op without a deterministic
      implementation then raises instead of silently varying), and `CUBLAS_WORKSPACE_CONFIG=:4096:8` in
      the environment (needed by cuBLAS; it only takes effect if CUDA is not yet initialised, a warning
      says so otherwise).
    - `deterministic=False`: those switches are turned off again, TF32 goes back to torch's defaults
      (cuDNN yes, matmul no) and cuDNN may benchmark.
    - `num_threads` (>= 1): intra-op threads. CPU results can depend on it (reduction splitting), so it
      is a parameter, not left to the machine. Inter-op threads are set to the same number once per
      process if nobody set them yet; later calls leave them alone (torch forbids changing them).
    """
    seed = _check_int("seed", seed, maximum=0xFFFFFFFF)  # numpy's global RNG takes 32-bit seeds
    num_threads = _check_int("num_threads", num_threads, minimum=1)
    deterministic = bool(deterministic)

    import torch

    if deterministic and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in _VALID_CUBLAS_CONFIGS:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            warnings.warn(
                "CUDA was initialised before seed_everything set CUBLAS_WORKSPACE_CONFIG; "
                "cuBLAS results may not be deterministic",
                RuntimeWarning,
                stacklevel=2,
            )

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device (lazily if CUDA is not initialised yet)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = False  # torch's default; a deterministic run needs it
    torch.backends.cudnn.allow_tf32 = not deterministic
    _use_deterministic_algorithms(torch, deterministic)

    torch.set_num_threads(num_threads)
    _set_interop_threads_once(torch, num_threads)


def _use_deterministic_algorithms(torch, mode: bool) -> None:
    """`torch.use_deterministic_algorithms(mode)` without its import of torch._inductor (evaluate used
    ~3.5 s less CPU on this 2-core machine; train loads it anyway, through Adam's torch._dynamo). The
    inductor flag that it also sets only matters to torch.compile, which antispoof does not use; it is
    set too if inductor is already loaded."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # a torch without the private setter: the public call (and its import)
        torch.use_deterministic_algorithms(mode)
        return
    setter(mode, warn_only=False)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = mode


def _set_interop_threads_once(torch, n: int) -> None:
    global _interop_threads_set
    if _interop_threads_set is not None:
        return
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        # Already set, or inter-op parallel work already started: torch keeps its value. It does not
        # change numerical results (it only schedules independent ops), so this is not an error.
        pass
    _interop_threads_set = torch.get_num_interop_threads()

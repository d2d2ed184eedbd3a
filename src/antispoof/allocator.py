"""glibc malloc tuning for batched inference: reuse freed memory instead of handing it back to the OS.

torch's CPU allocator caches nothing: every tensor is a malloc, every release a free. glibc serves large
blocks with a fresh mmap (above a threshold that starts at 128 kB and never exceeds 32 MB) and returns
the free top of its heap to the OS (above a trim threshold), so a batched forward pass, whose
intermediates are megabytes each (a 64-clip LFCC spectrogram is 13 MB at a 1-s crop, 53 MB at 4 s),
page-faults and zeroes its whole working set again on every batch. Measured on the 8x corpus of
benchmarks/scale.py (LCNN, 1-s crop, batches of 64): ~160 page faults per clip scored and batched
scoring ~1.5x slower than with the settings below, under which nothing faults once the heap has grown
to the working set's size (after the first few batches; at 256 clips per batch too). One-clip scoring
does not fault either way.

The cost: memory once allocated stays in the process until it exits (its RSS stays at its peak instead
of falling back after it), and blocks of any size come from the heap. Where the C library is not glibc
this does nothing.
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (glibc's malloc.h)


def retain_freed_memory() -> bool:
    """Serve every block from the heap (no mmap) and never trim it (process-wide, idempotent). Never
    changes a computed value. True when glibc accepted both settings."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # Trim threshold -1 (SIZE_MAX once glibc casts it): the heap is never given back. Setting either
    # parameter also turns off glibc's dynamic mmap threshold.
    return bool(mallopt(M_MMAP_MAX, 0)) & bool(mallopt(M_TRIM_THRESHOLD, -1))

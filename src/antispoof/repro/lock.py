"""An exclusive lock per run directory, so two processes never work on the same run at once.

Two `dvc queue` workers (or two shells) training the same replicate with the same params share one
resume store ($ANTISPOOF_CACHE_DIR/checkpoints/<fingerprint>/). Without a lock, one could delete the
other's temp file while cleaning up, and both would write checkpoints of the same steps. With it the
second process waits for the first, then resumes from its final checkpoint, which makes it reuse the
finished run instead of repeating it, with byte-identical outputs.

`fcntl.flock` on `<directory>/run.lock`: the kernel releases it when the holder exits or is killed, so a
SIGKILLed run never leaves a stale lock behind. The lock file itself is left in place (deleting it
while another process waits on it would let a third lock a new file).
"""
from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = "run.lock"


@contextmanager
def run_lock(directory: str | os.PathLike, who: str = "antispoof") -> Iterator[Path]:
    """Hold the exclusive lock of `directory` for the body of the `with`; wait (saying so) if taken."""
    path = Path(directory) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{who}: another process is working on {path.parent}; waiting for it to finish",
                  file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock

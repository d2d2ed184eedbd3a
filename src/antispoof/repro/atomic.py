"""Atomic file output: write to a temp file in the same directory, fsync, then os.replace.

A reader (or a re-run after SIGKILL) sees either the old file or the complete new one, never a
half-written file that looks whole.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from antispoof.errors import disk_full


TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"  # temp files are ".<name>.<random>.tmp" next to their target


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", size: int | None = None) -> Iterator[Any]:
    """Open a temp file next to `path`; on clean exit it replaces `path` atomically.

    On any failure the temp file is removed. A full disk (ENOSPC/EDQUOT) becomes the UserError of
    `antispoof.errors.disk_full`, naming the directory (and `size`, the bytes to write, if given).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as e:
        _raise_translated(e, path, size)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            _raise_translated(e, path, size)
        raise


def _raise_translated(e: OSError, path: Path, size: int | None) -> None:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        raise disk_full(path.parent, size) from e
    raise e


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb", size=len(data)) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    data = text.encode("utf-8")  # written as bytes: the same bytes as text mode with newline="\n"
    with atomic_open(path, "wb", size=len(data)) as f:
        f.write(data)


def dumps_json(obj: Any) -> str:
    """Canonical JSON for tracked outputs: sorted keys, fixed indentation, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))

"""Atomic file output: write to a temp file in the same directory, fsync, then os.replace.

A reader (or a re-run after SIGKILL) sees either the old file or the complete new one, never a
half-written file that looks whole. Temp files are named `.<name>.<host>-<pid>.<random>.tmp`; the
first write of a process into a directory removes the temp files there whose writer (same host, that
pid) no longer runs, i.e. what a SIGKILLed run left behind, so a re-run leaves no stray files.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from antispoof.errors import disk_full


TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"  # temp files are ".<name>.<owner>.<random>.tmp" next to their target
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"^\..+\.([0-9a-f]{8})-(\d+)\.[^.]*\.tmp$")
_swept: set[str] = set()  # directories this process has already swept


def owner_tag() -> str:
    """`<host hash>-<pid>`: who writes a temp file (or scratch directory)."""
    return f"{_HOST}-{os.getpid()}"


def owner_is_gone(tag: str) -> bool:
    """True if `tag` (an `owner_tag`) names a process of this host that no longer exists."""
    host, _, pid = tag.partition("-")
    if host != _HOST or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def sweep_dead_temps(directory: str | os.PathLike) -> int:
    """Remove the temp files in `directory` whose writer is gone; returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m and owner_is_gone(f"{m.group(1)}-{m.group(2)}"):
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", size: int | None = None,
                fsync: bool = True) -> Iterator[Any]:
    """Open a temp file next to `path`; on clean exit it replaces `path` atomically.

    On any failure the temp file is removed. A full disk (ENOSPC/EDQUOT) becomes the UserError of
    `antispoof.errors.disk_full`, naming the directory (and `size`, the bytes to write, if given).
    `fsync=False` only for caches whose entries carry a checksum (a torn file after a power cut is then
    detected).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if str(path.parent) not in _swept:
            _swept.add(str(path.parent))
            sweep_dead_temps(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.{owner_tag()}.", suffix=TEMP_SUFFIX)
    except OSError as e:
        _raise_translated(e, path, size)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
            yield f
            f.flush()
            if fsync:
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

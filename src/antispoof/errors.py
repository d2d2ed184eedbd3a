"""User-facing errors. Stages catch these in main() and exit with one clear line.

`as_user_error` is the one place where expected failures that are not raised as UserError by our own
code (a full disk, a read-only or unwritable directory) become one: `antispoof.cli.run_stage` calls it
for every exception; what it does not recognise is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import os

DEBUG_ENV = "ANTISPOOF_DEBUG"  # =1: print the traceback of a user error too


class UserError(Exception):
    """Bad input that the user must fix (exit status 2). The message names the file and field."""

    exit_code = 2


class ParamError(UserError):
    """An invalid value in params.yaml. `key` is the dotted key at fault."""

    def __init__(self, key: str, message: str, file: str = "params.yaml"):
        self.key, self.file, self.message = key, file, message
        super().__init__(f"{file}: {key}: {message}")

    def __reduce__(self):  # picklable across process pools, like the other errors
        return (ParamError, (self.key, self.message, self.file))

    def in_file(self, file: str) -> "ParamError":
        """The same error, attributed to another params file."""
        return ParamError(self.key, self.message, file)


class DataError(UserError):
    """Bad input data (missing audio, malformed protocol line, ...)."""


_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(directory: str | os.PathLike, needed: int | None = None) -> UserError:
    """The error for a write that ran out of space (or quota) in `directory`."""
    free = _free_bytes(directory)
    parts = [f"{directory}: no space left on device"]
    if needed is not None:
        parts.append(f"writing {needed:,} bytes")
    if free is not None:
        parts.append(f"{free:,} bytes free")
    return UserError("; ".join(parts) + ": free some space (or point ANTISPOOF_CACHE_DIR / the output at "
                     "another disk) and re-run; complete outputs and cache entries are kept and reused")


def _free_bytes(directory: str | os.PathLike) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def as_user_error(exc: BaseException) -> UserError | None:
    """`exc` as the UserError a user should see, or None if it is a bug (keep its traceback)."""
    if isinstance(exc, UserError):
        return _unwrapped(exc)
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        where = os.path.dirname(exc.filename) if isinstance(exc.filename, str) else None
        return disk_full(where or exc.filename or "output directory")
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and exc.filename:
        return UserError(f"{exc.filename}: {exc.strerror}: check its permissions and its directory's")
    return None


def _unwrapped(exc: UserError) -> UserError:
    """A UserError raised in a DataLoader worker reaches the main process re-made from a message that
    holds the worker's whole traceback ("Caught DataError in DataLoader worker process 0. Original
    Traceback ..."): keep only the original one-line message."""
    text = str(exc)
    if "Original Traceback" not in text:
        return exc
    last = text.rstrip().splitlines()[-1]
    _, sep, message = last.partition(f"{type(exc).__name__}: ")
    return UserError(message if sep else last)

"""Resumable checkpoints: complete or not used.

File format (v1): one ASCII header line, then the `torch.save` payload::

    ANTISPOOF-CKPT v1 <sha256 of payload, 64 hex> <payload length in bytes>\\n<payload>

The file is written atomically (temp file, fsync, rename), so a crash leaves the previous file or the
new one; the header catches everything else (truncated copies, bit rot, a partial file from another
tool). Payloads are loaded with `torch.load(weights_only=True)` only, so a checkpoint holds tensors and
plain python types, never pickled objects; RNG states are stored in that form too.

A `CheckpointStore` is a directory of checkpoints of one run, keyed by a fingerprint of everything that
determines the run (outside DVC-tracked outputs; see docs on `persist: true`). `latest()` returns the
newest checkpoint that verifies and loads, warning about (and skipping) corrupt ones.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import random
import re
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from antispoof.repro.atomic import atomic_open, atomic_write_json, dumps_json

MAGIC = b"ANTISPOOF-CKPT"
FORMAT_VERSION = 1
_HEADER_MAX = 128  # bytes; the real header is 14 + 3 + 64 + length digits + separators
_HEADER_RE = re.compile(rb"^ANTISPOOF-CKPT v(\d+) ([0-9a-f]{64}) (\d{1,20})\n$")

REQUIRED_KEYS = (
    "model", "optimizer", "epoch", "global_step", "cursor", "rng", "fingerprint", "history", "versions",
)

RNG_STATE_FORMAT = 1


class CorruptCheckpoint(Exception):
    """A checkpoint file (or state dict) that must not be used. `path` may be None for an in-memory
    state; `reason` says what is wrong."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        super().__init__(path, reason)
        self.path = None if path is None else Path(path)
        self.reason = reason

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<checkpoint state>"
        return f"corrupt checkpoint {where}: {self.reason}"


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (corrupt, truncated or unloadable)."""


# --------------------------------------------------------------------------------------------- RNG
def capture_rng_state() -> dict:
    """Every global RNG state, as tensors and plain types only (survives weights_only loading)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    if np_state["bit_generator"] != "MT19937":  # pragma: no cover - numpy's global RNG is MT19937
        raise RuntimeError(f"unexpected numpy global bit generator {np_state['bit_generator']!r}")
    cuda: list[torch.Tensor] = []
    if torch.cuda.is_available():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "format": RNG_STATE_FORMAT,
        "python": {
            "version": int(py_version),
            # 624 words of MT state (< 2**32) + position (<= 624): exact in int64
            "state": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": None if py_gauss is None else float(py_gauss),
        },
        "numpy": {
            "bit_generator": "MT19937",
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
    }


def restore_rng_state(state: dict) -> None:
    """Restore what `capture_rng_state` captured. Raises ValueError on a malformed state.

    CUDA states are restored for the devices present; a count mismatch (e.g. a run checkpointed on a
    GPU and resumed on CPU) is warned about because the continuation cannot be bit-identical."""
    try:
        if state.get("format") != RNG_STATE_FORMAT:
            raise ValueError(f"unknown RNG state format {state.get('format')!r}")
        py = state["python"]
        internal = tuple(int(x) for x in py["state"].tolist())
        gauss = py["gauss_next"]
        npst = state["numpy"]
        key = npst["key"].numpy()
        if key.shape != (624,) or key.min() < 0 or key.max() > 0xFFFFFFFF:
            raise ValueError("numpy MT19937 key must be 624 words of 32 bits")
        np_tuple = (npst["bit_generator"], key.astype(np.uint32), int(npst["pos"]),
                    int(npst["has_gauss"]), float(npst["gauss"]))
        torch_state = state["torch"]
        if not isinstance(torch_state, torch.Tensor) or torch_state.numel() != torch.get_rng_state().numel():
            raise ValueError("torch CPU RNG state has the wrong type or size")
        cuda_states = list(state["cuda"])
    except (KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"malformed RNG state: {e!r}") from e
    # Validate everything above before touching any global state, then set all of it.
    random.setstate((int(py["version"]), internal, None if gauss is None else float(gauss)))
    np.random.set_state(np_tuple)
    torch.set_rng_state(torch_state.to(dtype=torch.uint8, device="cpu"))
    n_dev = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_states or n_dev:
        if len(cuda_states) != n_dev:
            warnings.warn(
                f"checkpoint has RNG states for {len(cuda_states)} CUDA device(s), this machine has "
                f"{n_dev}: the resumed run will not be bit-identical",
                CheckpointWarning,
                stacklevel=2,
            )
        for i, s in enumerate(cuda_states[:n_dev]):
            torch.cuda.set_rng_state(s.to(dtype=torch.uint8, device="cpu"), device=i)


def library_versions() -> dict:
    """Versions that determine numerics, for checkpoints (None when a library is not installed)."""

    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchaudio": dist("torchaudio"),
        "numpy": str(np.__version__),
    }


# ----------------------------------------------------------------------------------- single files
def _serialize(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _deserialize(payload: bytes, map_location: Any = "cpu") -> Any:
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)


def save_checkpoint(path: str | os.PathLike, state: dict, verify: bool = True) -> None:
    """Write `state` atomically with a checksummed header.

    With `verify` (default) the payload is first loaded back with weights_only=True, so a state that
    could never be resumed (a non-tensor object somewhere) fails here, at save time, with TypeError."""
    if not isinstance(state, dict):
        raise TypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
    try:
        payload = _serialize(state)
    except Exception as e:  # an object torch.save cannot pickle at all
        raise TypeError(f"checkpoint state for {path} cannot be serialised: {e}") from e
    if verify:
        try:
            _deserialize(payload)
        except Exception as e:
            raise TypeError(
                f"checkpoint state for {path} does not load with torch.load(weights_only=True): {e}"
            ) from e
    header = b"%s v%d %s %d\n" % (MAGIC, FORMAT_VERSION, hashlib.sha256(payload).hexdigest().encode(),
                                  len(payload))
    with atomic_open(path, "wb", size=len(header) + len(payload)) as f:
        f.write(header)
        f.write(payload)
    _fsync_dir(Path(path).parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform/filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_verified(path: Path) -> bytes:
    """Payload of a checkpoint file after header, length and checksum checks."""
    try:
        with open(path, "rb") as f:
            header = f.readline(_HEADER_MAX)
            payload = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CorruptCheckpoint(path, f"unreadable: {e}") from e
    if not header.startswith(MAGIC):
        raise CorruptCheckpoint(path, "missing ANTISPOOF-CKPT header (not a checkpoint, or overwritten)")
    m = _HEADER_RE.match(header)
    if not m:
        raise CorruptCheckpoint(path, f"malformed header {header[:_HEADER_MAX]!r}")
    version, digest, length = int(m.group(1)), m.group(2).decode(), int(m.group(3))
    if version != FORMAT_VERSION:
        raise CorruptCheckpoint(path, f"unsupported checkpoint format v{version}")
    if len(payload) != length:
        kind = "truncated" if len(payload) < length else "trailing data"
        raise CorruptCheckpoint(path, f"{kind}: header says {length} payload bytes, file has {len(payload)}")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != digest:
        raise CorruptCheckpoint(path, f"checksum mismatch (sha256 {actual[:12]}…, header {digest[:12]}…)")
    return payload


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Header/length/checksum check without unpickling; raises CorruptCheckpoint."""
    _read_verified(Path(path))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`, verified, with weights_only=True.

    Raises FileNotFoundError if it does not exist and CorruptCheckpoint if it is truncated, corrupt or
    does not load."""
    path = Path(path)
    payload = _read_verified(path)
    try:
        state = _deserialize(payload, map_location)
    except Exception as e:  # checksum was fine: written by something we cannot load safely
        raise CorruptCheckpoint(path, f"does not load with weights_only=True: {e}") from e
    if not isinstance(state, dict):
        raise CorruptCheckpoint(path, f"payload is a {type(state).__name__}, not a dict")
    return state


def validate_state(state: dict, required: Iterable[str] = REQUIRED_KEYS,
                   path: str | os.PathLike | None = None) -> None:
    """CorruptCheckpoint unless `state` is a dict holding every key in `required`."""
    if not isinstance(state, dict):
        raise CorruptCheckpoint(path, f"state is a {type(state).__name__}, not a dict")
    missing = [k for k in required if k not in state]
    if missing:
        raise CorruptCheckpoint(path, f"missing required key(s): {', '.join(missing)}")


# ---------------------------------------------------------------------------------------- store
_STEP_RE = re.compile(r"^step-(\d{8,})\.ckpt$")
DESCRIPTION_FILE = "fingerprint.json"


class CheckpointStore:
    """Checkpoints of one run in `root` (create it as `cache_dir("checkpoints", fingerprint)`).

    Files are `step-00000123.ckpt` (zero-padded global step, so names sort by step). After every
    successful `save`, only the newest `keep` valid checkpoints are kept.
    """

    def __init__(self, root: str | os.PathLike, keep: int = 3):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)
        # name -> (size, mtime_ns) of files known to verify, so pruning does not re-hash them
        self._verified: dict[str, tuple[int, int]] = {}

    # -- naming
    def path_for(self, step: int) -> Path:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        return self.root / f"step-{int(step):08d}.ckpt"

    def steps(self) -> list[int]:
        """Global steps of the checkpoint files present (valid or not), ascending."""
        return [step for step, _ in self._entries()]

    def _entries(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.root.iterdir():
            m = _STEP_RE.match(p.name)
            if m and p.is_file():
                out.append((int(m.group(1)), p))
        return sorted(out)

    # -- description of the run
    def describe(self, meta: dict) -> None:
        """Write `fingerprint.json` describing the run (what the fingerprint was computed from). An
        identical existing file is left untouched; a different one is replaced with a warning."""
        path = self.root / DESCRIPTION_FILE
        text = dumps_json(meta)
        if path.exists():
            try:
                old = path.read_text(encoding="utf-8")
            except OSError:
                old = None
            if old == text:
                return
            if old is not None:
                warnings.warn(f"{path} described a different run; replacing it", CheckpointWarning,
                              stacklevel=2)
        atomic_write_json(path, meta)

    def description(self) -> dict | None:
        path = self.root / DESCRIPTION_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # -- save / load
    def save(self, step: int, state: dict) -> Path:
        path = self.path_for(step)
        save_checkpoint(path, state)
        self._remember(path)
        self._prune()
        return path

    def latest(self, required: Iterable[str] = ()) -> tuple[int, dict] | None:
        """(step, state) of the newest checkpoint that verifies, loads and (if given) has the
        `required` keys; corrupt ones are reported (warning + stderr) and skipped. None if none."""
        self._clean_tmp()
        required = tuple(required)
        for step, path in reversed(self._entries()):
            try:
                state = load_checkpoint(path)
                validate_state(state, required, path)
                gs = state.get("global_step")
                if gs is not None and not isinstance(gs, bool) and isinstance(gs, int) and gs != step:
                    raise CorruptCheckpoint(path, f"file name says step {step}, state says {gs}")
            except FileNotFoundError:
                continue
            except CorruptCheckpoint as e:
                self._verified.pop(path.name, None)
                # One warning: stages print it as one line (antispoof.cli), tests can catch it.
                warnings.warn(f"{e}; falling back to an earlier checkpoint", CheckpointWarning, stacklevel=2)
                continue
            self._remember(path)
            return step, state
        return None

    def clear(self) -> None:
        """Delete every checkpoint, temp file and the run description (the directory stays)."""
        for p in list(self.root.iterdir()):
            if _STEP_RE.match(p.name) or p.name == DESCRIPTION_FILE or self._is_tmp(p.name):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        self._verified.clear()

    # -- internals
    @staticmethod
    def _is_tmp(name: str) -> bool:
        return name.startswith(".") and name.endswith(".tmp")

    def _clean_tmp(self) -> None:
        for p in self.root.iterdir():
            if self._is_tmp(p.name):
                try:
                    p.unlink()
                except OSError:
                    pass

    def _stat_key(self, path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_size, st.st_mtime_ns

    def _remember(self, path: Path) -> None:
        try:
            self._verified[path.name] = self._stat_key(path)
        except OSError:
            self._verified.pop(path.name, None)

    def _is_valid(self, path: Path) -> bool:
        try:
            key = self._stat_key(path)
        except OSError:
            return False
        if self._verified.get(path.name) == key:
            return True
        try:
            _read_verified(path)
        except (CorruptCheckpoint, OSError):
            return False
        self._verified[path.name] = key
        return True

    def _prune(self) -> None:
        """Keep the newest `keep` valid checkpoints; delete older ones and corrupt ones."""
        kept = 0
        for _, path in reversed(self._entries()):
            if kept < self.keep:
                if self._is_valid(path):
                    kept += 1
                    continue
                warnings.warn(f"deleting corrupt checkpoint {path}", CheckpointWarning, stacklevel=3)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            self._verified.pop(path.name, None)

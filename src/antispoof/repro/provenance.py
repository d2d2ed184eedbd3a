"""Provenance log of a stage run: where, with what code and which software, when.

`write_provenance` writes `logs/<stage>[-replicate<N>]-<UTC timestamp>.json` in the current directory.
The log is deliberately *not* a DVC output (it holds timestamps and host names, which would make every
run look changed); `logs/` is gitignored. It is written after a stage succeeded, so it never raises:
every probe is independent and failure-tolerant (a missing git, ffmpeg or GPU gives null fields, and
the reason is recorded under `probe_errors`).
"""
from __future__ import annotations

import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from antispoof.repro.atomic import atomic_write_text, dumps_json
from antispoof.repro.hashing import sha256_file

LOG_DIR = "logs"
DIFF_LIMIT = 200_000  # bytes of `git diff` kept in the log
KEY_ARGS = ("replicate",)  # args that distinguish parallel runs of one stage, put in the file name
VERSION_PACKAGES = ("antispoof", "torch", "torchaudio", "numpy", "pandas", "dvc", "dvclive", "soundfile",
                    "imageio-ffmpeg")
ENV_VARS = ("ANTISPOOF_CACHE_DIR", "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "PYTHONHASHSEED")
_GIT_TIMEOUT = 15


def _iso(ts: float) -> str | None:
    try:
        return datetime.fromtimestamp(float(ts), tz=timezone.utc).isoformat(timespec="milliseconds") \
            .replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _plain(obj: Any, depth: int = 0) -> Any:
    """JSON-safe copy: dict keys as str, tuples/sets as lists, paths/objects as str, NaN/inf as str."""
    if depth > 50:
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_plain(v, depth + 1) for v in obj), key=repr)
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(obj, "ndim", None) == 0:
        try:
            return _plain(item(), depth + 1)
        except Exception:
            pass
    return str(obj)


class _Probes:
    """Runs probes, turning any exception into a null value plus an entry in `errors`."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - a probe must never break the caller
            self.errors[name] = f"{type(e).__name__}: {e}"[:500]
            return None


def _git(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    return subprocess.run(["git", *args], capture_output=True, timeout=_GIT_TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)


def _git_info(probes: _Probes) -> dict:
    info: dict[str, Any] = {"root": None, "commit": None, "branch": None, "dirty": None, "status": None,
                            "diff": None, "diff_bytes": None, "diff_truncated": None}
    top = probes.run("git.root", lambda: _git("rev-parse", "--show-toplevel"))
    if top is None or top.returncode != 0:
        if top is not None:
            reason = top.stderr.decode("utf-8", "replace").strip()[:500]
            probes.errors["git"] = reason or "not a git repository"
        return info
    info["root"] = top.stdout.decode("utf-8", "replace").strip()

    head = probes.run("git.commit", lambda: _git("rev-parse", "--verify", "-q", "HEAD"))
    has_head = head is not None and head.returncode == 0
    if has_head:
        info["commit"] = head.stdout.decode().strip()
    branch = probes.run("git.branch", lambda: _git("symbolic-ref", "-q", "--short", "HEAD"))
    if branch is not None and branch.returncode == 0:
        info["branch"] = branch.stdout.decode("utf-8", "replace").strip()

    status = probes.run("git.status", lambda: _git("status", "--porcelain=v1"))
    if status is not None and status.returncode == 0:
        lines = status.stdout.decode("utf-8", "replace").splitlines()
        info["dirty"] = bool(lines)  # modified, staged or untracked (not ignored) files
        info["status"] = lines[:200]

    # Changes of tracked files against HEAD (staged and unstaged); before the first commit, the index.
    diff_args = ("diff", "--no-color", "--no-ext-diff", "HEAD") if has_head else \
        ("diff", "--no-color", "--no-ext-diff", "--cached")
    diff = probes.run("git.diff", lambda: _git(*diff_args))
    if diff is not None and diff.returncode == 0:
        raw = diff.stdout
        info["diff_bytes"] = len(raw)
        info["diff_truncated"] = len(raw) > DIFF_LIMIT
        info["diff"] = raw[:DIFF_LIMIT].decode("utf-8", "replace")
    return info


def _versions(probes: _Probes) -> dict:
    out: dict[str, Any] = {"python": platform.python_version(), "python_implementation":
                           platform.python_implementation()}
    for name in VERSION_PACKAGES:
        out[name] = probes.run(f"versions.{name}", lambda n=name: _dist_version(n))
    return out


def _dist_version(name: str) -> str | None:
    module = sys.modules.get(name.replace("-", "_"))
    version = getattr(module, "__version__", None) if module is not None else None
    if isinstance(version, str) or (version is not None and name == "torch"):
        return str(version)  # includes local build tags such as +cu130
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _ffmpeg(probes: _Probes) -> dict:
    def probe() -> dict:
        import imageio_ffmpeg

        from antispoof import codecs

        # every installed binary a codec may run in (AMR-WB has its own), as named in cache keys
        builds = {b: {"version": codecs.ffmpeg_version(b), "exe": codecs.ffmpeg_exe(b)}
                  for b in codecs.BUILDS if codecs.build_installed(b)}
        return {"version": imageio_ffmpeg.get_ffmpeg_version(), "exe": imageio_ffmpeg.get_ffmpeg_exe(),
                "builds": builds}

    return probes.run("ffmpeg", probe) or {"version": None, "exe": None, "builds": None}


def _torch_info(probes: _Probes) -> dict:
    out: dict[str, Any] = {"cuda_available": None, "cuda": None, "cudnn": None, "gpus": None,
                           "num_threads": None, "num_interop_threads": None,
                           "deterministic_algorithms": None, "cudnn_deterministic": None,
                           "cudnn_benchmark": None}

    def probe() -> None:
        # Only stages that used torch report its runtime state; importing it here would add seconds
        # to every torch-free stage (its version is recorded from package metadata either way).
        torch = sys.modules.get("torch")
        if torch is None:
            return
        out["cuda"] = torch.version.cuda
        out["num_threads"] = torch.get_num_threads()
        out["num_interop_threads"] = torch.get_num_interop_threads()
        out["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
        out["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
        out["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
        out["cuda_available"] = torch.cuda.is_available()
        if out["cuda_available"]:
            out["cudnn"] = torch.backends.cudnn.version()
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        else:
            out["gpus"] = []

    probes.run("torch", probe)
    return out


def _cpu(probes: _Probes) -> dict:
    def model() -> str | None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Hardware", "cpu model"):
                        return value.strip()
        except OSError:
            pass
        return platform.processor() or None

    def affinity() -> int | None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    return {
        "model": probes.run("cpu.model", model),
        "count": os.cpu_count(),
        "affinity": probes.run("cpu.affinity", affinity),
        "machine": platform.machine(),
    }


def _uv_lock(probes: _Probes, git_root: str | None) -> dict:
    def probe() -> dict:
        candidates = [Path.cwd() / "uv.lock"]
        if git_root:
            candidates.append(Path(git_root) / "uv.lock")
        for p in candidates:
            if p.is_file():
                return {"path": str(p), "sha256": sha256_file(p)}
        return {"path": None, "sha256": None}

    return probes.run("uv_lock", probe) or {"path": None, "sha256": None}


def _file_name(stage: str, args: dict, start: float) -> str:
    parts = [stage]
    for key in KEY_ARGS:
        if isinstance(args, dict) and args.get(key) is not None:
            parts.append(f"{key}{args[key]}")
    try:
        stamp = datetime.fromtimestamp(float(start), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = datetime.now(timezone.utc)
    parts.append(stamp.strftime("%Y%m%dT%H%M%S.%fZ"))
    name = re.sub(r"[^A-Za-z0-9._@=+-]", "_", "-".join(parts))[-200:]
    return name + ".json"


def write_provenance(stage: str, args: dict, start: float, end: float, extra: dict | None = None) -> Path:
    """Write the provenance log of a finished stage run; returns its path. Never raises: if even the
    write fails, a warning goes to stderr and the intended path is returned."""
    path = Path(LOG_DIR) / "provenance.json"
    try:
        probes = _Probes()
        path = Path.cwd() / LOG_DIR / _file_name(str(stage), args, start)
        git = _git_info(probes)
        record = {
            "schema": 1,
            "stage": str(stage),
            "args": args,
            "extra": extra,
            "argv": list(sys.argv),
            "executable": sys.executable,
            "cwd": probes.run("cwd", lambda: str(Path.cwd())),
            "hostname": probes.run("hostname", socket.gethostname),
            "pid": os.getpid(),
            "start": _iso(start),
            "end": _iso(end),
            "duration_s": probes.run("duration", lambda: round(float(end) - float(start), 3)),
            "written": _iso(time.time()),
            "git": git,
            "versions": _versions(probes),
            "ffmpeg": _ffmpeg(probes),
            "torch": _torch_info(probes),
            "cpu": _cpu(probes),
            "platform": probes.run("platform", platform.platform),
            "uv_lock": _uv_lock(probes, git["root"]),
            "env": {k: os.environ.get(k) for k in ENV_VARS},
            "probe_errors": probes.errors,
        }
        # never overwrite another run's log (two runs starting in the same microsecond)
        candidate, n = path, 1
        while candidate.exists():
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
            n += 1
        path = candidate
        atomic_write_text(path, dumps_json(_plain(record)))
    except Exception as e:  # noqa: BLE001 - called after a successful stage: must not fail it
        try:
            print(f"antispoof: warning: could not write provenance log {path}: {type(e).__name__}: {e}",
                  file=sys.stderr)
        except Exception:
            pass
    return path

"""Where side caches live (codec variants, resumable checkpoints).

`$ANTISPOOF_CACHE_DIR`, else `$XDG_CACHE_HOME/antispoof`, else `~/.cache/antispoof`. Everything under
it is content- or fingerprint-addressed, so experiments may share it safely.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("ANTISPOOF_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "antispoof")
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path

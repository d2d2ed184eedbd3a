"""Reading a trained replicate's model (models/r<r>/model.pt and model.json) for evaluation.

Every way these files can be wrong (missing, empty, truncated, not a state dict, a pickle of
arbitrary objects that weights_only=True refuses, tensors of the wrong shapes, NaN/Inf weights,
model.json that is not JSON or lacks its fingerprint) ends as one UserError naming the file, what
is wrong and what to run; nothing here unpickles code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from antispoof.errors import UserError

__all__ = ["load_state_dict_into", "model_paths", "read_model_info"]


def model_paths(r: int) -> tuple[Path, Path]:
    return Path(f"models/r{r}/model.pt"), Path(f"models/r{r}/model.json")


def _fix(r: int) -> str:
    return f"re-run the train stage for replicate {r} (uv run dvc repro train@{r})"


def read_model_info(r: int) -> dict:
    """model.json of replicate r as a dict holding `run_fingerprint`."""
    path = model_paths(r)[1]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: not found: {_fix(r)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e}): {_fix(r)}") from None
    try:
        info = json.loads(text)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}): {_fix(r)}") from None
    if not isinstance(info, dict) or not isinstance(info.get("run_fingerprint"), str):
        raise UserError(f"{path}: has no run_fingerprint (not written by the train stage?): {_fix(r)}")
    return info


def _read_state_dict(path: Path, r: int) -> dict:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UserError(f"{path}: not found: {_fix(r)}") from None
    if size == 0:
        raise UserError(f"{path}: empty file: {_fix(r)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, refused pickle, bad magic: all "cannot load"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot be loaded as model weights with weights_only=True "
                        f"({type(e).__name__}: {first[:200]}): {_fix(r)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors: {_fix(r)}")
    return state


def load_state_dict_into(model: torch.nn.Module, r: int) -> torch.nn.Module:
    """Load replicate r's weights into `model` (built from the current `model` params), checked."""
    path = model_paths(r)[0]
    state = _read_state_dict(path, r)
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in want.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} of the wrong shape (e.g. {wrong[0]})" if wrong else ""]
        raise UserError(f"{path}: does not fit the model of params.yaml (model.*): tensors "
                        f"{'; '.join(p for p in parts if p)}: {_fix(r)}")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            n = int((~torch.isfinite(tensor)).sum())
            raise UserError(f"{path}: parameter {name} holds {n} non-finite value(s) (NaN/Inf): the training "
                            f"diverged (lower train.lr?) or the file was damaged: {_fix(r)}")
    model.load_state_dict(state)
    return model

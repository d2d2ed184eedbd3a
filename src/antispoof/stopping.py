"""When `train` stops before its epoch budget, and which epoch's model it keeps.

Two rules, both off by default (a fixed budget of train.epochs, keeping the last model):
- early stopping: stop after `train.patience` dev passes in a row without a dev EER improvement of more
  than `train.min_delta` over the best so far;
- memorisation guard: stop after `train.plateau_patience` epochs in a row whose mean training loss is
  below `train.train_loss_threshold` (the model is memorising the training set).
With either rule on, the model kept is the one of the best dev epoch. Everything lives in the training
state dict (plain numbers), so a resumed run stops exactly where an uninterrupted one would.
"""
from __future__ import annotations

import math

BUDGET, EARLY_STOPPING, MEMORISATION = "epochs", "early_stopping", "memorisation_guard"


def new_stopping_state() -> dict:
    return {"best_dev_eer": None, "best_epoch": None, "bad_epochs": 0, "low_loss_epochs": 0,
            "stopped_early": False, "stop_reason": BUDGET}


def rules_enabled(tp: dict) -> bool:
    return tp["patience"] > 0 or tp["train_loss_threshold"] is not None


def end_of_epoch(state: dict, tp: dict, epoch: int, train_loss: float, dev_eer: float | None) -> bool:
    """Update `state` after epoch `epoch` (1-based) with its mean training loss and dev EER (None: no dev
    pass this epoch; NaN: dev split lacks a class). Returns True when this epoch is the new best on dev."""
    improved = False
    if dev_eer is not None and not math.isnan(dev_eer):
        best = state["best_dev_eer"]
        if best is None or dev_eer < best - tp["min_delta"]:
            state.update(best_dev_eer=dev_eer, best_epoch=epoch, bad_epochs=0)
            improved = True
        else:
            state["bad_epochs"] += 1
            if tp["patience"] > 0 and state["bad_epochs"] >= tp["patience"]:
                state.update(stopped_early=True, stop_reason=EARLY_STOPPING)
    threshold = tp["train_loss_threshold"]
    if threshold is not None:
        state["low_loss_epochs"] = state["low_loss_epochs"] + 1 if train_loss < threshold else 0
        if state["low_loss_epochs"] >= tp["plateau_patience"] and not state["stopped_early"]:
            state.update(stopped_early=True, stop_reason=MEMORISATION)
    return improved

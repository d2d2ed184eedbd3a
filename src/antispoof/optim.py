"""Optimisation choices of `train`: optimiser, learning-rate schedule and class weights.

The learning rate is a pure function of the optimiser step (`learning_rate`), set before every step,
so a resumed run continues the schedule exactly without any scheduler state to save.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def build_optimizer(parameters, tp: dict) -> torch.optim.Optimizer:
    """`train.optimizer` over `parameters`: adam (L2 weight decay), adamw (decoupled) or sgd (+ momentum)."""
    name = tp["optimizer"]
    if name == "adam":
        return torch.optim.Adam(parameters, lr=tp["lr"], weight_decay=tp["weight_decay"])
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=tp["lr"], weight_decay=tp["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=tp["lr"], momentum=tp["momentum"], weight_decay=tp["weight_decay"])
    raise ValueError(f"unknown optimizer {name!r}")  # params validation rejects this earlier


def learning_rate(tp: dict, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate of optimiser step `step` (0-based) out of `total_steps`.

    constant: train.lr. cosine: linear warm-up over train.warmup_steps (from lr/warmup_steps up to lr),
    then half a cosine from lr down to train.min_lr at the last step. step: lr x step_gamma^(epoch //
    step_epochs). aasist_cosine: AASIST's per-step cosine annealing from lr to min_lr over all steps,
    no warm-up (clovaai/aasist, `cosine_annealing`)."""
    lr, kind = tp["lr"], tp["schedule"]
    if kind == "constant":
        return lr
    if kind == "step":
        return lr * tp["step_gamma"] ** ((step // steps_per_epoch) // tp["step_epochs"])
    lo = tp["min_lr"]
    if kind == "aasist_cosine":
        return lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if kind == "cosine":
        warm = tp["warmup_steps"]
        if step < warm:
            return lr * (step + 1) / warm
        span = max(total_steps - warm - 1, 1)
        return lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * min(step - warm, span) / span))
    raise ValueError(f"unknown schedule {kind!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def class_weights(labels: np.ndarray, tp: dict) -> list[float]:
    """Cross-entropy weights [bona fide, spoof]: balanced (inverse class frequency), none, or
    explicit (train.class_weights)."""
    mode = tp["class_weighting"]
    if mode == "balanced":
        counts = np.bincount(labels, minlength=2)
        return (len(labels) / (2.0 * counts)).tolist()
    if mode == "explicit":
        return [float(w) for w in tp["class_weights"]]
    return [1.0, 1.0]

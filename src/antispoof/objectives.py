"""Training objectives (`train.objective`), applied to any model's embedding/classifier split.

erm: class-weighted cross-entropy. dann: domain-adversarial training (Ganin & Lempitsky, 2015) — a
domain classifier on the embedding, behind a gradient reversal layer, learns to tell the codec domain of
a training sample (clean, or the codec family of the variant it was drawn from), while the reversed
gradient pushes the embedding to hide it. λ follows 2/(1+exp(-γp))-1 with p the fraction of optimiser
steps done (or a constant), so it is a pure function of the step and resumes exactly.

An objective owns any extra trainable modules (`modules`: they join the optimiser and the checkpoint,
never the saved detector) and returns the loss of one micro-batch plus statistics to log.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

CLEAN = "clean"


def domains_of(train_conditions: dict[str, str]) -> list[str]:
    """Domain names: clean, then the codec families of the augmentation conditions (sorted).
    `train_conditions` maps a stored condition name (e.g. mp3_24k) to its codec family (mp3)."""
    return [CLEAN] + sorted(set(train_conditions.values()))


class ERM:
    """The network trained is the detector itself."""

    stats: tuple[str, ...] = ()
    extra: nn.Module | None = None

    def network(self, model: nn.Module) -> nn.Module:
        return model

    def loss(self, network: nn.Module, x, y, d, weight, progress: float) -> tuple[torch.Tensor, None, dict]:
        """(class loss: a class-weighted mean, extra loss: an unweighted mean or None, statistics) of
        one micro-batch; the loss minimised is their sum."""
        return F.cross_entropy(network(x), y, weight=weight), None, {}


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def reverse_gradient(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by -lam backward."""
    return _ReverseGradient.apply(x, lam)


def dann_lambda(dp: dict, progress: float) -> float:
    if dp["lambda"] is not None:
        return float(dp["lambda"])
    return 2.0 / (1.0 + math.exp(-dp["gamma"] * progress)) - 1.0


class DomainAdversarialNetwork(nn.Module):
    """Detector + domain classifier behind gradient reversal; one forward returns both logits (one
    module, so DistributedDataParallel sees every parameter through a single forward call)."""

    def __init__(self, detector: nn.Module, domain_classifier: nn.Module):
        super().__init__()
        self.detector, self.domain_classifier = detector, domain_classifier

    def forward(self, x: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.detector.embed(x)
        return self.detector.classify(embedding), self.domain_classifier(reverse_gradient(embedding, lam))


class DANN:
    stats = ("domain_loss", "domain_acc", "dann_lambda")

    def __init__(self, embedding_dim: int, n_domains: int, dp: dict):
        # Built after the model, from the same seeded RNG: its initial weights are part of the run.
        self.dp = dp
        self.extra = nn.Sequential(nn.Linear(embedding_dim, dp["hidden"]), nn.ReLU(),
                                   nn.Linear(dp["hidden"], n_domains))

    def network(self, model: nn.Module) -> nn.Module:
        return DomainAdversarialNetwork(model, self.extra)

    def loss(self, network: nn.Module, x, y, d, weight, progress: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
        lam = dann_lambda(self.dp, progress)
        logits, domain_logits = network(x, lam)
        class_loss = F.cross_entropy(logits, y, weight=weight)
        domain_loss = F.cross_entropy(domain_logits, d)
        correct = (domain_logits.argmax(dim=1) == d).sum().item()
        return class_loss, self.dp["weight"] * domain_loss, {
            "domain_loss": domain_loss.item(), "domain_correct": correct, "dann_lambda": lam}


def build_objective(tp: dict, model: nn.Module, n_domains: int):
    if tp["objective"] == "dann":
        return DANN(model.embedding_dim, n_domains, tp["dann"])
    return ERM()

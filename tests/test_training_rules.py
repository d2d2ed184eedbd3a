"""Training rules as pure functions: learning-rate schedules at known steps, stopping rules on crafted
curves, gradient accumulation against one big batch, DANN's gradient reversal and lambda schedule, and
the validation of the new train params."""
from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import pytest
import torch

from conftest import default_params

from antispoof import stopping
from antispoof.distributed import World
from antispoof.errors import ParamError
from antispoof.models import build_model
from antispoof.objectives import DANN, ERM, dann_lambda, reverse_gradient
from antispoof.optim import build_optimizer, class_weights, learning_rate
from antispoof.params import validate, _validate_domain

TP = default_params()["train"]


def tp(**over) -> dict:
    return {**TP, **over}


# ------------------------------------------------------------------------------------------ schedules
def test_constant_schedule_is_the_configured_rate_at_every_step():
    assert {learning_rate(tp(lr=0.002), s, 100, 10) for s in (0, 1, 57, 99)} == {0.002}


def test_cosine_with_warmup_at_known_steps():
    p = tp(schedule="cosine", lr=0.1, warmup_steps=4, min_lr=0.0)
    total = 24  # 4 warm-up steps, then 20 cosine steps: step 4 is the top, step 23 the bottom
    assert [learning_rate(p, s, total, 6) for s in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert learning_rate(p, 4, total, 6) == pytest.approx(0.1)
    assert learning_rate(p, 4 + 19 / 2, total, 6) == pytest.approx(0.05)  # half-way down: cos(pi/2)
    assert learning_rate(p, 23, total, 6) == pytest.approx(0.0, abs=1e-12)
    lows = tp(schedule="cosine", lr=0.1, warmup_steps=0, min_lr=0.01)
    assert learning_rate(lows, 0, 11, 1) == pytest.approx(0.1)
    assert learning_rate(lows, 10, 11, 1) == pytest.approx(0.01)


def test_step_schedule_decays_every_step_epochs():
    p = tp(schedule="step", lr=1.0, step_epochs=2, step_gamma=0.5)
    spe = 5  # steps per epoch: epochs 0-1 at 1.0, 2-3 at 0.5, 4 at 0.25
    assert [learning_rate(p, e * spe, 100, spe) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert learning_rate(p, 2 * spe - 1, 100, spe) == 1.0


def test_aasist_cosine_anneals_per_step_from_lr_to_min_lr():
    p = tp(schedule="aasist_cosine", lr=1e-4, min_lr=5e-6)
    # clovaai/aasist: lr_min + (lr_max - lr_min) * 0.5 * (1 + cos(step / total * pi))
    assert learning_rate(p, 0, 1000, 10) == pytest.approx(1e-4)
    assert learning_rate(p, 500, 1000, 10) == pytest.approx((1e-4 + 5e-6) / 2)
    assert learning_rate(p, 1000, 1000, 10) == pytest.approx(5e-6)


def test_optimizers_and_class_weights():
    model = torch.nn.Linear(3, 2)
    assert type(build_optimizer(model.parameters(), tp(optimizer="adamw"))) is torch.optim.AdamW
    sgd = build_optimizer(model.parameters(), tp(optimizer="sgd", momentum=0.8))
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.8
    labels = np.array([0, 1, 1, 1])
    assert class_weights(labels, tp(class_weighting="balanced")) == [2.0, 2 / 3]
    assert class_weights(labels, tp(class_weighting="none")) == [1.0, 1.0]
    assert class_weights(labels, tp(class_weighting="explicit", class_weights=[3, 0.5])) == [3.0, 0.5]


# ------------------------------------------------------------------------------------- stopping rules
def run_rules(rules: dict, losses: list[float], eers: list[float | None]) -> tuple[dict, int]:
    """Feed a crafted curve epoch by epoch until a rule stops; returns (state, epochs run)."""
    state = stopping.new_stopping_state()
    for epoch, (loss, eer) in enumerate(zip(losses, eers), start=1):
        stopping.end_of_epoch(state, tp(**rules), epoch, loss, eer)
        if state["stopped_early"]:
            return state, epoch
    return state, len(losses)


def test_early_stopping_counts_dev_passes_without_a_gain_above_min_delta():
    eers = [0.30, 0.20, 0.19, 0.21, 0.195, 0.10]  # 0.19 is not a gain of more than 0.02 over 0.20
    state, ran = run_rules({"patience": 3, "min_delta": 0.02}, [1.0] * 6, eers)
    assert (ran, state["stop_reason"], state["best_epoch"], state["best_dev_eer"]) == (5, "early_stopping", 2, 0.20)
    state, ran = run_rules({"patience": 3, "min_delta": 0.0}, [1.0] * 6, eers)
    assert (ran, state["stopped_early"], state["best_epoch"]) == (6, False, 6)  # 0.19 counted: never 3 bad


def test_epochs_without_a_dev_pass_do_not_count_for_patience():
    state, ran = run_rules({"patience": 2, "min_delta": 0.0}, [1.0] * 6, [0.2, None, 0.3, None, None, 0.3])
    assert (ran, state["stop_reason"], state["best_epoch"]) == (6, "early_stopping", 1)


def test_memorisation_guard_needs_consecutive_epochs_below_the_threshold():
    losses = [0.9, 0.04, 0.2, 0.03, 0.02, 0.01, 0.01]  # a rebound at epoch 3 resets the count
    state, ran = run_rules({"train_loss_threshold": 0.05, "plateau_patience": 3}, losses, [0.3] * 7)
    assert (ran, state["stop_reason"], state["best_epoch"]) == (6, "memorisation_guard", 1)
    assert stopping.rules_enabled(tp(train_loss_threshold=0.05)) and not stopping.rules_enabled(TP)


def test_no_rule_runs_the_whole_budget():
    state, ran = run_rules({}, [0.0] * 5, [0.5, 0.5, 0.5, 0.5, 0.5])
    assert (ran, state["stopped_early"], state["stop_reason"]) == (5, False, "epochs")


# ------------------------------------------------------------------------------ gradient accumulation
class _Run:
    """What train.optimisation_step reads from a Run, for a model without train-mode batch statistics."""

    def __init__(self, network, objective, weight, accum):
        self.network, self.objective, self.weight = network, objective, weight
        self.model = network
        self.optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.autocast = contextlib.nullcontext
        self.tp = tp(grad_accum=accum, grad_clip=None, lr=1.0)
        self.world = World()
        self.total_steps, self.steps_per_epoch = 10, 10


def one_step_setup(objective: str, accum: int, world: World = World()):
    """A tiny LCNN (eval mode) with its objective, and 12 samples with classes unevenly spread."""
    params = {"name": "lcnn", "lcnn": {**default_params()["model"]["lcnn"], "channels": [4, 4]}}
    torch.manual_seed(0)
    x = torch.randn(12, 4000)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1])
    d = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    torch.manual_seed(1)
    model = build_model(params, 16000)
    obj = ERM() if objective == "erm" else DANN(model.embedding_dim, 3, {**TP["dann"], "lambda": 0.5})
    run = _Run(obj.network(model).eval(), obj, torch.tensor([2.0, 0.75]), accum)
    run.model, run.world = model, world
    return run, x, y, d


@pytest.mark.parametrize("objective", ["erm", "dann"])
def test_k_accumulated_batches_equal_one_batch_of_k_times_b(objective):
    """k=4 micro-batches of b=3 vs one batch of 12, class-weighted (classes unevenly spread over the
    micro-batches): the same SGD step within float tolerance. Eval mode: batch norm's train-mode
    statistics depend on the batch, which no accumulation can reproduce."""
    from antispoof.train import optimisation_step

    after = []
    for k, b in ((1, 12), (4, 3)):
        run, x, y, d = one_step_setup(objective, k)
        state = {"loss_sum": 0.0, "seen": 0, "domain_loss_sum": 0.0, "domain_correct": 0, "batch": 0, "global_step": 0}
        group = [(x[i:i + b], y[i:i + b], d[i:i + b]) for i in range(0, 12, b)]
        optimisation_step(run, state, group, (run.weight[y].sum(), 12))
        assert (state["seen"], state["batch"], state["global_step"]) == (12, 12 // b, 1)
        after.append({key: v.clone() for key, v in run.network.state_dict().items()})
    one, accumulated = after
    moved = [key for key in one if not torch.equal(one[key], accumulated[key])]
    assert moved, "the step must change the weights"
    for key in one:
        torch.testing.assert_close(accumulated[key], one[key], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- DANN
def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(5, requires_grad=True)
    (reverse_gradient(x, 0.3) * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, -0.3 * torch.arange(5.0))


def test_dann_lambda_schedule_and_constant():
    dp = {**TP["dann"], "gamma": 10.0, "lambda": None}
    assert dann_lambda(dp, 0.0) == 0.0
    assert dann_lambda(dp, 0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(dp, 1.0) == pytest.approx(0.9999092)
    assert dann_lambda({**dp, "lambda": 0.25}, 0.7) == 0.25


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("over, key", [
    ({"amp": "bf16"}, "train.amp"),
    ({"amp": "fp32"}, "train.amp"),
    ({"optimizer": "lamb"}, "train.optimizer"),
    ({"schedule": "cosin"}, "train.schedule"),
    ({"class_weighting": "explicit", "class_weights": None}, "train.class_weights"),
    ({"class_weighting": "explicit", "class_weights": [1.0]}, "train.class_weights"),
    ({"grad_accum": 0}, "train.grad_accum"),
    ({"objective": "dan"}, "train.objective"),
])
def test_bad_train_params_name_the_key(over, key):
    params = copy.deepcopy(default_params())
    params["train"].update(over)
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        validate(params)
        _validate_domain(params)


def test_amp_off_may_be_written_bare():
    params = copy.deepcopy(default_params())
    params["train"]["amp"] = False  # YAML reads `amp: off` as false
    validate(params)

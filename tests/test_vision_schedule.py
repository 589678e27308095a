"""The vision trainer's learning-rate schedule, step by step, against the rule written out here: per-iteration
linear warm-up over ``warmup_epochs``, times ``lr_gamma`` every ``lr_step`` epochs counted from the first step."""

import pytest
import torch

from lskd_vision.config import TrainConfig
from lskd_vision.trainer import learning_rate_schedule


def expected_lr(lr: float, step: int, steps_per_epoch: int, warmup_epochs: int, lr_step: int, gamma: float) -> float:
    warmup_steps = warmup_epochs * steps_per_epoch
    decayed = lr * gamma ** ((step // steps_per_epoch) // lr_step)
    return decayed * (step + 1) / warmup_steps if step < warmup_steps else decayed


def config(**schedule) -> TrainConfig:
    return TrainConfig(role="teacher", dataset="digits", arch="resnet18", out="unused", **schedule)


def learning_rates(settings: TrainConfig, steps_per_epoch: int, steps: int, resume_at=None) -> list[float]:
    """The lr of every optimizer step, as the trainer's loop steps the schedule; with ``resume_at``, the
    schedule and optimizer are rebuilt there from their state dicts, as ``--resume`` does."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=settings.lr, momentum=0.9)
    scheduler = learning_rate_schedule(optimizer, settings, steps_per_epoch)
    rates = []
    for step in range(steps):
        if step == resume_at:
            states = optimizer.state_dict(), scheduler.state_dict()
            optimizer = torch.optim.SGD([weight], lr=settings.lr, momentum=0.9)
            scheduler = learning_rate_schedule(optimizer, settings, steps_per_epoch)
            optimizer.load_state_dict(states[0])
            scheduler.load_state_dict(states[1])
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    "schedule",
    [
        dict(lr=0.1, lr_step=4, lr_gamma=0.1, warmup_epochs=2),  # ImageNet student's shape: warm-up, then decays
        dict(lr=0.01, lr_step=2, lr_gamma=0.1, warmup_epochs=0),  # no warm-up: steps of ÷10 from the first step
        dict(lr=0.05, lr_step=1, lr_gamma=0.5, warmup_epochs=3),  # decays already during the warm-up
    ],
)
def test_warm_up_and_step_decay_follow_the_rule(schedule):
    steps_per_epoch, epochs = 3, 10
    rates = learning_rates(config(**schedule), steps_per_epoch, steps_per_epoch * epochs)
    rule = [
        expected_lr(
            schedule["lr"], step, steps_per_epoch, schedule["warmup_epochs"], schedule["lr_step"], schedule["lr_gamma"]
        )
        for step in range(steps_per_epoch * epochs)
    ]
    assert rates == pytest.approx(rule, rel=1e-12, abs=0)


def test_resumed_schedule_continues_exactly():
    settings = config(lr=0.1, lr_step=2, lr_gamma=0.1, warmup_epochs=2)
    steps_per_epoch, steps = 5, 40
    assert learning_rates(settings, steps_per_epoch, steps, resume_at=7) == learning_rates(
        settings, steps_per_epoch, steps
    )

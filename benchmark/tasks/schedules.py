"""Learning-rate schedules, stepped once per epoch, written in the paper's epochs.

A schedule is a factor of the profile's base learning rate as a function of *paper time*
t = epoch / profile.epoch_scale. The paper profile has epoch_scale 1; a quick profile with
fewer epochs compresses the same schedule (epoch_scale = its epochs / the paper's), so its
decays happen at the same fraction of training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

_TOL = 1e-9  # a compressed milestone (t = 14.999999...) must land on its epoch despite rounding


@dataclass(frozen=True)
class Schedule:
    """A named learning-rate schedule: ``factor(t)`` multiplies the base lr at paper time t."""

    name: str
    description: str
    factor: Callable[[float], float]

    def make(self, optimizer: Optimizer, epoch_scale: float = 1.0) -> LambdaLR:
        """A per-epoch torch scheduler on ``optimizer`` (call ``.step()`` after each epoch)."""
        if epoch_scale <= 0:
            raise ValueError(f"epoch_scale must be positive, not {epoch_scale}")
        return LambdaLR(optimizer, lambda epoch: self.factor(epoch / epoch_scale))


def step_every(name: str, every: float, gamma: float, scale: float = 1.0) -> Schedule:
    """lr x ``gamma`` every ``every`` paper epochs (times ``scale`` throughout)."""
    return Schedule(name, f"lr x{gamma:g} every {every:g} epochs"
                    + (f", base lr x{scale:g}" if scale != 1.0 else ""),
                    lambda t: scale * gamma ** math.floor(t / every + _TOL))


def step_at(name: str, milestones: tuple[float, ...], gamma: float, scale: float = 1.0) -> Schedule:
    """lr x ``gamma`` at each of ``milestones`` (paper epochs), times ``scale`` throughout."""
    at = ", ".join(f"{m:g}" for m in milestones)
    return Schedule(name, f"lr x{gamma:g} at epochs {at}"
                    + (f", base lr x{scale:g}" if scale != 1.0 else ""),
                    lambda t: scale * gamma ** sum(t + _TOL >= m for m in milestones))


def exponential(name: str, gamma: float) -> Schedule:
    """lr x ``gamma`` per paper epoch."""
    return Schedule(name, f"lr x{gamma:g} per epoch", lambda t: gamma ** t)

"""Pure schedules for the KL weight (beta) and the learning rate.

They take the (possibly fractional) epoch or step and return a float, hold no
state, and are tested against a parametrized table, as scvi-tools does with
``_compute_kl_weight``.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["BETA_SCHEDULES", "BetaSchedule", "kl_weight", "learning_rate"]

BetaSchedule = Literal["constant", "linear", "cyclic"]
BETA_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cyclic")


def kl_weight(
    epoch: float,
    *,
    beta: float,
    schedule: BetaSchedule,
    warmup_epochs: int,
    max_epochs: int,
    n_cycles: int = 4,
) -> float:
    """KL weight at a (fractional) epoch.

    Parameters
    ----------
    epoch
        Epochs completed so far; fractional within an epoch (``epoch + step / steps``).
    beta
        Target KL weight.
    schedule
        ``"constant"``: ``beta`` throughout. ``"linear"``: rises linearly from 0
        to ``beta`` over ``warmup_epochs`` then stays there. ``"cyclic"``:
        cyclical annealing (Fu et al. 2019) with a cosine ramp: ``max_epochs``
        is cut into ``n_cycles`` periods; within each, the weight rises from 0
        to ``beta`` along half a cosine over the first half of the period and
        stays at ``beta`` for the second half.
    warmup_epochs
        Length of the linear ramp; 0 means no ramp.
    max_epochs
        Training length (sets the cycle period).
    n_cycles
        Number of cycles for ``"cyclic"``.

    Returns
    -------
    float
        The weight, within ``[0, beta]``.
    """
    if schedule == "constant":
        return float(beta)
    if schedule == "linear":
        if warmup_epochs <= 0:
            return float(beta)
        return float(beta) * min(1.0, max(0.0, epoch) / warmup_epochs)
    if schedule == "cyclic":
        period = max_epochs / max(1, n_cycles)
        phase = (max(0.0, epoch) % period) / period
        ramp = min(1.0, phase / 0.5)
        return float(beta) * 0.5 * (1.0 - math.cos(math.pi * ramp))
    raise ValueError(f"unknown beta schedule {schedule!r}: expected one of {list(BETA_SCHEDULES)}")


def learning_rate(step: int, *, lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``lr * min_ratio``.

    Parameters
    ----------
    step
        Optimiser steps taken so far (0-based).
    lr
        Peak learning rate.
    warmup_steps
        Steps of linear warm-up; the first step already uses ``lr / warmup_steps``
        so no step is wasted at zero.
    total_steps
        Planned steps (the cosine reaches its floor there and stays).
    min_ratio
        Floor of the cosine as a fraction of ``lr``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))

"""Learning-rate schedule shared by every recipe: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int | None, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    Rises linearly over ``warmup_steps``, then follows a half cosine from 1 to ``min_ratio`` by
    ``total_steps``; without a known total it stays at 1 after warmup.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if not total_steps or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


SCHEDULES = ("constant", "cosine", "constant_cosine", "multistep")


def lr_factor(
    schedule: str,
    step: int,
    *,
    warmup_steps: int,
    total_steps: int | None,
    min_ratio: float = 0.0,
    cosine_start: float = 0.0,
    milestones: tuple[float, ...] = (0.5, 2 / 3, 5 / 6),
    gamma: float = 0.2,
) -> float:
    """Multiplier of the base learning rate at ``step`` for the named schedule, after linear warmup.

    - ``constant``: 1 after warmup;
    - ``cosine``: half cosine from 1 to ``min_ratio`` between warmup and ``total_steps``;
    - ``constant_cosine``: 1 until ``cosine_start`` of the run, then cosine to ``min_ratio`` (xAR's
      schedule: constant to epoch 600 of 800, then cosine to 1e-5 / 4e-4; upstream hard-codes it);
    - ``multistep``: times ``gamma`` at each fraction of the run in ``milestones`` (NAR and LlamaGen:
      x0.2 at 50 %, 67 % and 83 %).

    Milestones and ``cosine_start`` are fractions of ``total_steps``; without a total the schedule
    stays at 1 after warmup.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or not total_steps:
        return 1.0
    if schedule == "cosine":
        return warmup_cosine(step, warmup_steps=warmup_steps, total_steps=total_steps, min_ratio=min_ratio)
    if schedule == "multistep":
        return gamma ** sum(step >= round(m * total_steps) for m in milestones)
    start = max(warmup_steps, round(cosine_start * total_steps))
    if step < start or total_steps <= start:
        return 1.0
    progress = min(1.0, (step - start) / (total_steps - start))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

"""HardRatioSchedule (docs/semantics.md §6, §7): the share of hard negatives over training.

    ratio(step) = 0                                             step <  warmup_steps
                = max_ratio * (step - warmup) / (peak - warmup)  warmup_steps <= step < peak_step
                = max_ratio + (final_ratio - max_ratio)
                  * (step - peak) / (total - peak)              peak_step <= step < total_steps
                = final_ratio                                   step >= total_steps

The paper (KMAS, arXiv 2605.27023) does not publish its values; the defaults are this project's
choice (docs/semantics.md): warm up for 10 % of training, peak at 40 % with half of the negatives
hard, end at 10 % hard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .core.validation import check_count, check_float

DEFAULT_WARMUP_FRACTION = 0.1
DEFAULT_PEAK_FRACTION = 0.4
DEFAULT_MAX_RATIO = 0.5
DEFAULT_FINAL_RATIO = 0.1


@dataclass(frozen=True)
class HardRatioSchedule:
    """Warm-up / linear rise / linear fall of the hard-negative share; call it on a step."""

    total_steps: int
    warmup_steps: int | None = None
    peak_step: int | None = None
    max_ratio: float = DEFAULT_MAX_RATIO
    final_ratio: float = DEFAULT_FINAL_RATIO

    def __post_init__(self) -> None:
        total = check_count(self.total_steps, "total_steps")
        warmup = round(DEFAULT_WARMUP_FRACTION * total) if self.warmup_steps is None else self.warmup_steps
        warmup = check_count(warmup, "warmup_steps", allow_zero=True)
        peak = round(DEFAULT_PEAK_FRACTION * total) if self.peak_step is None else self.peak_step
        peak = check_count(peak, "peak_step", allow_zero=True)
        if not warmup <= peak <= total:
            raise ValueError(f"need warmup_steps <= peak_step <= total_steps, got {warmup}, {peak}, {total}")
        object.__setattr__(self, "warmup_steps", warmup)
        object.__setattr__(self, "peak_step", peak)
        object.__setattr__(self, "max_ratio", check_float(self.max_ratio, "max_ratio", low=0.0, high=1.0))
        object.__setattr__(self, "final_ratio", check_float(self.final_ratio, "final_ratio", low=0.0, high=1.0))

    def __call__(self, step: int) -> float:
        step = check_count(step, "step", allow_zero=True)
        if step < self.warmup_steps:
            return 0.0
        if step < self.peak_step:
            return self.max_ratio * (step - self.warmup_steps) / (self.peak_step - self.warmup_steps)
        if step < self.total_steps:
            progress = (step - self.peak_step) / (self.total_steps - self.peak_step)
            return self.max_ratio + (self.final_ratio - self.max_ratio) * progress
        return self.final_ratio

    def num_hard(self, step: int, num_negatives: int) -> int:
        """round(ratio(step) * num_negatives), halves rounded up (:func:`hard_count`)."""
        return hard_count(self(step), num_negatives)


def hard_count(ratio: float, num_negatives: int, *, draw: float | None = None) -> int:
    """The hard columns of k = ``num_negatives`` at hard share ``ratio``: the one rounding rule.

    ``round(ratio * k)`` with halves rounded up; with ``draw`` in [0, 1) (the PyKEEN sampler's,
    fixed by seed and step), rounded stochastically instead: up with probability equal to the
    fractional part, so the expectation is ``ratio * k`` even for small k. ValueError when
    ``ratio`` (e.g. a user schedule's) is outside [0, 1].
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"schedule returned {ratio}: a ratio must be in [0, 1]")
    exact = ratio * num_negatives
    if draw is None:
        return math.floor(exact + 0.5)
    floor = math.floor(exact)
    return min(floor + (1 if draw < exact - floor else 0), num_negatives)


def as_schedule(schedule: "HardRatioSchedule | Callable[[int], float] | float") -> "Callable[[int], float]":
    """A schedule as a callable step -> ratio: a HardRatioSchedule or callable as is, a constant
    ratio in [0, 1] as a constant function (TypeError / ValueError naming ``schedule``)."""
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        constant = check_float(schedule, "schedule", low=0.0, high=1.0)
        return lambda step: constant
    if not callable(schedule):
        raise TypeError(f"schedule must be a HardRatioSchedule, a callable step -> ratio or a float, got {type(schedule).__name__}")
    return schedule


def ratio_at(schedule: "Callable[[int], float]", step: int) -> float:
    """``schedule(step)`` as a float, ValueError naming the step when outside [0, 1]."""
    ratio = float(schedule(step))
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"schedule returned {ratio} at step {step}: a ratio must be in [0, 1]")
    return ratio

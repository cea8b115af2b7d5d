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
        """round(ratio(step) * num_negatives), halves rounded up."""
        return math.floor(self(step) * num_negatives + 0.5)

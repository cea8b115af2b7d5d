"""KMASSampler: hybrid hard + uniform negatives driven by a schedule, for generic loops."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .core.index import KGIndex
from .core.philox import STREAM_UNIFORM, draw_seed, mix_seed
from .core.problem import prepare_problem
from .core.uniform import uniform_negatives
from .core.validation import check_backend, check_count, check_float, check_index, check_seed
from .hard_negatives import DEFAULT_TEMPERATURE, hard_negatives
from .schedule import HardRatioSchedule


class KMASSampler:
    """Per call, ``schedule.num_hard(step, k)`` hard negatives then uniform ones; the step advances.

    The uniform share follows ULTRA's random negatives: drawn with replacement, excluding the
    positive and, when ``strict``, every known answer (by rejection, O(B * k)). The hard share is
    :func:`hard_negatives` with this sampler's options. Each step draws from its own seed,
    ``mix_seed(seed, step)``, so a run is reproducible from ``seed`` and resumable from ``step``.

    Args:
        index: the graph.
        num_negatives: k per row.
        schedule: a :class:`HardRatioSchedule`, any callable step -> ratio in [0, 1], or a constant.
        strict, temperature, top_relations, temperature_gumbel, backend: as in hard_negatives.
        seed: base seed in [0, 2**63) (None: drawn from torch's global generator).
        step: the first step (e.g. when resuming).
    """

    def __init__(
        self,
        index: KGIndex,
        num_negatives: int,
        schedule: HardRatioSchedule | Callable[[int], float] | float,
        *,
        strict: bool = True,
        temperature: float = DEFAULT_TEMPERATURE,
        top_relations: int | None = None,
        temperature_gumbel: float = 1.0,
        seed: int | None = None,
        backend: str = "auto",
        step: int = 0,
    ) -> None:
        check_index(index)
        self.index = index
        self.num_negatives = check_count(num_negatives, "num_negatives")
        if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
            constant = check_float(schedule, "schedule", low=0.0, high=1.0)
            schedule = lambda step: constant  # noqa: E731
        elif not callable(schedule):
            raise TypeError(f"schedule must be a HardRatioSchedule, a callable step -> ratio or a float, got {type(schedule).__name__}")
        self.schedule = schedule
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
        self.strict = strict
        self.temperature = temperature
        self.top_relations = top_relations
        self.temperature_gumbel = temperature_gumbel
        self.backend = check_backend(backend)
        seed = check_seed(seed)
        self.seed = draw_seed() if seed is None else seed
        self.step = check_count(step, "step", allow_zero=True)

    def ratio(self, step: int | None = None) -> float:
        """The hard share at ``step`` (default: the current step)."""
        ratio = float(self.schedule(self.step if step is None else step))
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"schedule returned {ratio} at step {step}: a ratio must be in [0, 1]")
        return ratio

    def num_hard(self, step: int | None = None, num_negatives: int | None = None) -> int:
        """round(ratio(step) * k), halves rounded up."""
        k = self.num_negatives if num_negatives is None else num_negatives
        return int(self.ratio(step) * k + 0.5)

    def sample(
        self,
        query_entity: Any,
        query_relation: Any,
        positive: Any = None,
        *,
        relation_embeddings: torch.Tensor | None = None,
        relation_weights: torch.Tensor | None = None,
        num_negatives: int | None = None,
        strict: bool | None = None,
    ) -> torch.Tensor:
        """(B, k) negatives: columns [0, num_hard) hard, the rest uniform. Advances the step.

        ``num_negatives`` and ``strict`` override the sampler's own for this call (ULTRA passes
        both on every call).
        """
        k = self.num_negatives if num_negatives is None else check_count(num_negatives, "num_negatives")
        strict = self.strict if strict is None else strict
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
        num_hard = self.num_hard(num_negatives=k)
        step_seed = mix_seed(self.seed, self.step)
        options = dict(positive=positive, strict=strict, seed=step_seed)
        if num_hard > 0:
            hard = hard_negatives(
                self.index,
                query_entity,
                query_relation,
                relation_embeddings=relation_embeddings,
                relation_weights=relation_weights,
                num_negatives=num_hard,
                temperature=self.temperature,
                top_relations=self.top_relations,
                temperature_gumbel=self.temperature_gumbel,
                backend=self.backend,
                **options,
            )
        num_uniform = k - num_hard
        if num_uniform > 0:
            # validates the queries the same way as the hard path (k = 1: one allowed entity suffices)
            problem = prepare_problem(self.index, query_entity, query_relation, num_negatives=1, **options)
            uniform = uniform_negatives(
                self.index,
                problem.query_entity,
                problem.query_relation,
                problem.positive,
                num_uniform,
                seed=step_seed,
                strict=strict,
                stream=STREAM_UNIFORM,
            )
        self.step += 1
        if num_hard == 0:
            return uniform
        if num_uniform == 0:
            return hard
        return torch.cat([hard, uniform], dim=1)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = check_seed(state["seed"])
        self.step = check_count(state["step"], "step", allow_zero=True)

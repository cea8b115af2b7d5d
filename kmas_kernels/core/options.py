"""The options of mining and of the training samplers: every default once, validated once.

A :class:`MiningOptions` (``hard_negatives``) or :class:`SamplerOptions` (``KMASSampler``, the
ULTRA drop-in, the PyKEEN sampler) is frozen and checked when it is built: a bad value raises a
``TypeError`` / ``ValueError`` naming the argument (docs/semantics.md §8). Everything below the
public entries (problem building, backend dispatch, the backends) trusts what it is handed.

The public signatures spell their defaults as these classes' attributes
(``temperature: float = MiningOptions.temperature``), so each default value is written here only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .relation_weights import DIRECTIONS
from .validation import check_backend, check_count, check_float


@dataclass(frozen=True)
class MiningOptions:
    """How ``hard_negatives`` mines (docs/semantics.md §2–§5); neither k nor the seed (per call).

    strict: also exclude every known answer. temperature: softmax temperature over cosine
    similarities of relation embeddings. top_relations: keep only this many most similar relations
    (None: all). temperature_gumbel: noise scale (0: deterministic top-k of P_b). backend: "auto",
    "triton", "cuda", "cpu" or "reference".
    """

    strict: bool = True
    temperature: float = 0.1
    top_relations: int | None = None
    temperature_gumbel: float = 1.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.strict, bool):
            raise TypeError(f"strict must be a bool, got {type(self.strict).__name__}")
        set_ = object.__setattr__
        set_(self, "temperature", check_float(self.temperature, "temperature", low=0.0, low_open=True))
        if self.top_relations is not None:
            set_(self, "top_relations", check_count(self.top_relations, "top_relations"))
        set_(self, "temperature_gumbel", check_float(self.temperature_gumbel, "temperature_gumbel", low=0.0))
        set_(self, "backend", check_backend(self.backend))

    @classmethod
    def build(cls, options: "MiningOptions | None" = None, **values: Any):
        """``options`` (an instance of this class, or None: the defaults) with ``values`` replaced;
        validated. The one place where keyword options become an options object."""
        if options is None:
            return cls(**values)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
        return dataclasses.replace(options, **values) if values else options


@dataclass(frozen=True)
class SamplerOptions(MiningOptions):
    """The training samplers' mining options: ``MiningOptions`` with the relation-weight defaults
    the pre-training study chose on validation (docs/pretraining.md; docs/semantics.md §2),
    0.3 over the 10 most similar relations (``top_relations=None`` keeps every relation), plus
    ``directions``: "mixed" (hard_negatives' mixture over every relation) or "separate" (a row
    mixes only relations of its query's direction; needs inverse relations)."""

    temperature: float = 0.3
    top_relations: int | None = 10
    directions: str = "mixed"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {self.directions!r}")

    def mining(self) -> MiningOptions:
        """The plain mining options (directions dropped: the sampler applies them to the weights)."""
        return MiningOptions(self.strict, self.temperature, self.top_relations, self.temperature_gumbel, self.backend)

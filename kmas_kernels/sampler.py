"""KMASSampler: hybrid hard + uniform negatives driven by a schedule, for generic loops."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import torch

from .core.index import KGIndex, check_index
from .core.philox import STREAM_UNIFORM, draw_seed, mix_seed
from .core.options import SamplerOptions
from .core.problem import MiningProblem, prepare_problem
from .core.relation_weights import relation_weights_from_embeddings, same_direction_mask
from .core.uniform import uniform_negatives
from .core.validation import check_count, check_seed, user_stacklevel
from .hard_negatives import mine
from .schedule import HardRatioSchedule, as_schedule, hard_count, ratio_at


# The training samplers' relation-weight defaults (KMASSampler, kmas_kernels.ultra, kmas_kernels.pykeen),
# held by SamplerOptions (core/options.py); these names stay for callers that read them.
SAMPLER_TEMPERATURE = SamplerOptions.temperature
SAMPLER_TOP_RELATIONS = SamplerOptions.top_relations
# The ULTRA drop-in's handling of relations without a cached similarity row, and of directions,
# chosen on validation by the study's stage 3 (docs/pretraining.md, 3(a)-(b); docs/semantics.md
# section 17). Until then: "one_hot" and "mixed". KMASSampler keeps "mixed" (SamplerOptions): its
# index may have no inverse relations, and "separate" needs them.
SAMPLER_FALLBACK = "shared"
SAMPLER_DIRECTIONS = "separate"


class KMASSampler:
    """Per call, ``schedule.num_hard(step, k)`` hard negatives then uniform ones; the step advances.

    The uniform share follows ULTRA's random negatives: drawn with replacement, excluding the
    positive and, when ``strict``, every known answer (by rejection, O(B * k)). The hard share is
    :func:`hard_negatives` with this sampler's options, capped per row at the number of entities
    the row may return (a row with fewer gets them all, then uniform ones): the sampler never
    fails for want of candidates, like ULTRA's. Each step draws from its own seed,
    ``mix_seed(seed, step)``, so a run is reproducible from ``seed`` and resumable from ``step``.

    Args:
        index: the graph.
        num_negatives: k per row.
        schedule: a :class:`HardRatioSchedule`, any callable step -> ratio in [0, 1], or a constant.
        strict, temperature_gumbel, backend: as in hard_negatives.
        temperature, top_relations: as in hard_negatives, but the defaults are the study's
            (SAMPLER_TEMPERATURE = 0.3 over the SAMPLER_TOP_RELATIONS = 10 most similar relations);
            ``top_relations=None`` keeps every relation.
        directions: "mixed" (hard_negatives' mixture over every relation) or "separate": a row
            mixes only relations of its query's direction (tail rows forward relations, head rows
            inverse ones); needs an index with inverse relations and applies to
            ``relation_embeddings`` (weights passed as ``relation_weights`` are used as given).
        seed: base seed in [0, 2**63) (None: drawn from torch's global generator).
        step: the first step (e.g. when resuming).

    After each call, ``hard_counts`` (B,) int64 on the batch's device holds how many leading
    columns of each row are hard (the rest uniform), for a loss that weighs them
    (:func:`kmas_kernels.loss.link_prediction_loss`); reading it costs no host sync.
    """

    def __init__(
        self,
        index: KGIndex,
        num_negatives: int,
        schedule: HardRatioSchedule | Callable[[int], float] | float,
        *,
        strict: bool = SamplerOptions.strict,
        temperature: float = SamplerOptions.temperature,
        top_relations: int | None = SamplerOptions.top_relations,
        temperature_gumbel: float = SamplerOptions.temperature_gumbel,
        seed: int | None = None,
        backend: str = SamplerOptions.backend,
        step: int = 0,
        directions: str = SamplerOptions.directions,
    ) -> None:
        options = SamplerOptions(strict=strict, temperature=temperature, top_relations=top_relations,
                                 temperature_gumbel=temperature_gumbel, backend=backend, directions=directions)
        self._setup(index, num_negatives, schedule, options, seed, step)

    @classmethod
    def from_options(cls, index: KGIndex, num_negatives: int, schedule: Any, options: SamplerOptions, *,
                     seed: int | None = None, step: int = 0) -> "KMASSampler":
        """A sampler from an already built :class:`SamplerOptions` (no keyword options)."""
        if not isinstance(options, SamplerOptions):
            raise TypeError(f"options must be a SamplerOptions, got {type(options).__name__}")
        sampler = cls.__new__(cls)
        sampler._setup(index, num_negatives, schedule, options, seed, step)
        return sampler

    def _setup(self, index: KGIndex, num_negatives: int, schedule: Any, options: SamplerOptions, seed: Any, step: Any) -> None:
        check_index(index)
        self.index = index
        self.num_negatives = check_count(num_negatives, "num_negatives")
        self.schedule = as_schedule(schedule)
        self.options = options
        seed = check_seed(seed)
        self.seed = draw_seed() if seed is None else seed
        self.step = check_count(step, "step", allow_zero=True)
        check_directions(index, options.directions)
        self.hard_counts: torch.Tensor | None = None  # (B,) of the latest call

    # the options, read-only (a sampler's options are fixed when it is built)
    strict = property(lambda self: self.options.strict)
    temperature = property(lambda self: self.options.temperature)
    top_relations = property(lambda self: self.options.top_relations)
    temperature_gumbel = property(lambda self: self.options.temperature_gumbel)
    backend = property(lambda self: self.options.backend)
    directions = property(lambda self: self.options.directions)

    def ratio(self, step: int | None = None) -> float:
        """The hard share at ``step`` (default: the current step)."""
        return ratio_at(self.schedule, self.step if step is None else step)

    def num_hard(self, step: int | None = None, num_negatives: int | None = None) -> int:
        """round(ratio(step) * k), halves rounded up."""
        k = self.num_negatives if num_negatives is None else num_negatives
        return hard_count(self.ratio(step), k)

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
        """(B, k) negatives: row b's first min(num_hard, A_b) columns hard, the rest uniform.

        A_b is the number of entities row b may return (not excluded). The hard columns are
        exactly what :func:`hard_negatives` returns for k = min(num_hard, A_b) (Gumbel-top-k from
        P_b, then distinct uniform entities past P_b's support); the uniform columns are drawn with
        replacement as ULTRA's random negatives, so no row ever runs out (docs/semantics.md,
        "The hybrid sampler"). Every input is validated on every call, whatever the hard share.
        Advances the step. ``num_negatives`` and ``strict`` override the sampler's own for this
        call (ULTRA passes both on every call).
        """
        k = self.num_negatives if num_negatives is None else check_count(num_negatives, "num_negatives")
        strict = self.strict if strict is None else strict
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
        out, self.hard_counts = hybrid_negatives(
            self.index, self.options, query_entity, query_relation, positive,
            relation_embeddings=relation_embeddings, relation_weights=relation_weights, num_negatives=k,
            num_hard=self.num_hard(num_negatives=k), seed=mix_seed(self.seed, self.step), strict=strict,
        )  # fmt: skip
        self.step += 1
        return out

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, int]:
        """What determines the next draw: ``{"seed", "step"}`` (PyTorch's convention; plain ints).

        Every draw is a pure function of (index, options, seed, step): the sampler keeps no other
        state, so a sampler built with the same arguments and given this state draws exactly what
        this one would. Options (k, schedule, temperature ...) are construction arguments, not state.
        """
        return {"seed": int(self.seed), "step": int(self.step)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore :meth:`state_dict`'s output (ValueError / TypeError naming the bad entry)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from KMASSampler.state_dict(), got {type(state).__name__}")
        missing, unexpected = {"seed", "step"} - set(state), set(state) - {"seed", "step"}
        if missing or unexpected:
            raise ValueError(f"KMASSampler state: missing keys {sorted(missing)}, unexpected keys {sorted(map(str, unexpected))}")
        seed = check_seed(state["seed"])
        if seed is None:
            raise ValueError("KMASSampler state: seed must be an int in [0, 2**63), got None")
        self.seed = seed
        self.step = check_count(state["step"], "step", allow_zero=True)


def check_directions(index: KGIndex, directions: str) -> None:
    """ValueError when ``directions='separate'`` meets an index without inverse relations."""
    if directions == "separate" and (index.inverse_offset is None or 2 * index.inverse_offset != index.num_relations):
        raise ValueError("directions='separate' needs an index built with inverse relations (KGIndex.from_triples adds them)")


def hybrid_negatives(
    index: KGIndex,
    options: SamplerOptions,
    query_entity: Any,
    query_relation: Any,
    positive: Any,
    *,
    relation_embeddings: torch.Tensor | None,
    relation_weights: torch.Tensor | None,
    num_negatives: int,
    num_hard: int,
    seed: int,
    strict: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of the hybrid sampler: ((B, k) negatives, (B,) hard columns per row).

    Row b's first min(num_hard, A_b) columns are hard (A_b: the entities the row may return),
    the rest uniform with replacement, all from ``seed`` (a step's seed). ``options`` and the
    counts are trusted (validated by their owner: KMASSampler, the ULTRA drop-in); the inputs
    are validated here, whatever the hard share.
    """
    k = num_negatives
    if options.directions == "separate":
        weights = _separate_direction_weights(index, options, query_relation, relation_embeddings, relation_weights)
        if weights is not None:  # else the inputs are malformed: prepare_problem names the bad one
            relation_weights, relation_embeddings = weights, None
    problem = prepare_problem(
        index,
        query_entity,
        query_relation,
        relation_embeddings=relation_embeddings,
        relation_weights=relation_weights,
        num_negatives=max(num_hard, 1),
        positive=positive,
        seed=seed,
        options=options.mining(),
        strict=strict,
        allow_short_rows=True,
    )
    allowed = problem.allowed_counts()  # (B,), exact, O(B log E)
    capacity = allowed.clamp(max=num_hard)  # the hard columns of each row
    width, rows_without_negatives = torch.stack([capacity.max(), (allowed == 0).sum()]).tolist()  # one read-back
    out = torch.full((problem.batch_size, k), -1, dtype=torch.int64, device=allowed.device)
    if width > 0:
        out[:, :width] = mine(dataclasses.replace(problem, num_negatives=width), options.backend, limit=capacity)
    if rows_without_negatives:
        _relax_rows_without_negatives(problem, out, allowed == 0, seed)
    # the rest, uniform with replacement (rows filled above have no -1 left)
    out = uniform_negatives(
        index, problem.query_entity, problem.query_relation, problem.positive, k,
        seed=seed, strict=strict, partial=out, stream=STREAM_UNIFORM,
    )  # fmt: skip
    return out, capacity


def _separate_direction_weights(index: KGIndex, options: SamplerOptions, query_relation: Any, relation_embeddings: Any,
                                relation_weights: Any) -> Any:
    """w (B, R) over the relations of each row's direction, from ``relation_embeddings``."""
    if relation_weights is not None:
        raise ValueError("directions='separate' applies to relation_embeddings; relation_weights are used as given: "
                         "pass one of them, or build the sampler with directions='mixed'")
    if not isinstance(relation_embeddings, torch.Tensor) or not isinstance(query_relation, torch.Tensor):
        return None  # prepare_problem reports the missing / malformed input by name
    if relation_embeddings.dim() not in (2, 3) or relation_embeddings.shape[-2] != index.num_relations:
        return None
    if query_relation.dim() != 1 or query_relation.is_floating_point():
        return None
    rel = query_relation.to(device=relation_embeddings.device, dtype=torch.int64)
    if rel.numel() and (int(rel.min()) < 0 or int(rel.max()) >= index.num_relations):
        return None
    allowed = same_direction_mask(rel, index.num_relations, index.inverse_offset)
    return relation_weights_from_embeddings(relation_embeddings, rel, options.temperature, options.top_relations, allowed)


def _relax_rows_without_negatives(problem: MiningProblem, out: torch.Tensor, rows_mask: torch.Tensor, seed: int) -> None:
    """Rows where every entity is excluded: uniform over all entities but the positive, in place.

    No strict negative exists there. ULTRA's strict sampler would index into another row's
    candidates (or fail at the end of the batch); we relax exclusion for these rows only, to
    all entities but the positive (the positive itself in a one-entity graph), and say so.
    """
    rows = torch.nonzero(rows_mask).squeeze(1)
    warnings.warn(
        f"KMASSampler: {rows.numel()} row(s) have no non-excluded entity (strict={problem.strict}); "
        "their negatives are drawn uniformly from all entities but the positive instead",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )
    index = problem.index
    positive = problem.positive[rows] if index.num_entities > 1 else torch.full_like(rows, -1)
    out[rows] = uniform_negatives(
        index, problem.query_entity[rows], problem.query_relation[rows], positive, out.shape[1],
        seed=seed, strict=False, partial=out[rows], stream=STREAM_UNIFORM, row_ids=rows,
    )  # fmt: skip

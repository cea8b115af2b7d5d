"""The drop-in's sampling call: ``KMASNegativeSampling``, ULTRA's ``negative_sampling`` signature."""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import torch

from ..core.options import SamplerOptions
from ..core.philox import draw_seed, mix_seed
from ..core.relation_weights import DIRECTIONS, relation_weights_from_embeddings, same_direction_mask
from ..core.validation import check_count, check_seed, user_stacklevel
from ..relation_cache import FALLBACKS
from ..sampler import SAMPLER_DIRECTIONS, SAMPLER_FALLBACK, hybrid_negatives
from ..schedule import HardRatioSchedule, as_schedule, hard_count, ratio_at
from .checkpoint import CheckpointState
from .graphs import GraphRegistry, GraphState
from .hooks import EncoderHooks, _HookCounters, default_output, default_query

EMPTY_CACHE_WARNING_CALLS = 3
# Salt that separates the per-rank seeds from the per-step seeds of mix_seed.
_RANK_DOMAIN = 0x6B6D61735F72616E  # "kmas_ran"


def rank_seed(seed: int, rank: int) -> int:
    """The base seed of DDP rank ``rank``: ``seed`` itself on rank 0, an independent one elsewhere."""
    rank = check_count(rank, "rank", allow_zero=True)
    return seed if rank == 0 else mix_seed(seed ^ _RANK_DOMAIN, rank)


def current_rank() -> int:
    """This process's rank: torch.distributed's when initialised, else $RANK, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


class KMASNegativeSampling(EncoderHooks, GraphRegistry, CheckpointState):
    """Callable like ULTRA's ``tasks.negative_sampling(data, batch, num_negative, strict=True)``.

    Returns ULTRA's layout: a (B, 1 + k, 3) long tensor of [h, t, r]; column 0 is the positive,
    rows [0, B // 2) corrupt tails, rows [B // 2, B) corrupt heads (through the inverse relation).
    Hybrid hard + uniform negatives by ``schedule`` (hard columns first); the step advances on
    every call.

    Args:
        model: the KGFM; a forward hook goes on its relation encoder (remove with ``.close()``).
            None with ``relation_module`` a class: every module of that class is hooked, wherever
            it lives (for ``install`` before the training script builds its model).
        train_data: the training graph (PyG-style, inverse edges included, ULTRA's convention), a
            list of them, or None; other graphs passed to ``__call__`` are indexed on first use.
        total_steps: length of training, for the default ``HardRatioSchedule(total_steps)``.
        schedule: a HardRatioSchedule, callable step -> ratio, or constant ratio (overrides the default).
        relation_module: the module whose output is the (B, R, d) relation representations: an
            attribute path on ``model`` ("relation_model": ULTRA, TRIX, MOTIF; "combiner": SEMMA's
            fused output), the module itself, or a class (or tuple of classes).
        output_transform: maps that module's output to the (B, R, d) tensor.
        query_from_inputs: maps the module's (args, kwargs) to the (B,) relations its output is
            conditioned on, or None: then the batch relations of the latest drop-in call.
        temperature, top_relations: as in ``hard_negatives``, with the training defaults of
            ``KMASSampler`` (0.3 over the 10 most similar relations; ``top_relations=None``: all).
        temperature_gumbel, backend: as in ``hard_negatives``.
        fallback: what a query relation without a similarity row of its own gets: "shared" (a row
            borrowed from the latest forward's representation, conditioned on another relation) or
            "one_hot" (its own tail set; the behaviour of earlier versions).
        directions: "mixed" (every relation, as ``hard_negatives``) or "separate" (tail rows mix
            forward relations' tail sets, head rows inverse relations', i.e. head sets). None
            (default): "separate" on graphs with ULTRA's inverse layout (an even number of
            relations, r + R/2 the inverse of r); on another graph the drop-in warns once and
            mixes, where an explicit "separate" raises (docs/semantics.md section 17).
        seed: base seed (None: drawn from torch's global generator); each rank's stream is
            ``rank_seed(seed, rank)``.
        rank: this process's DDP rank (None: ``current_rank()`` at the first call).
        step: the first step (e.g. when resuming).
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        train_data: Any = None,
        total_steps: int | None = None,
        *,
        schedule: HardRatioSchedule | Callable[[int], float] | float | None = None,
        relation_module: str | torch.nn.Module | type | tuple = "relation_model",
        output_transform: Callable[[Any], torch.Tensor] = default_output,
        query_from_inputs: Callable[[tuple, dict], torch.Tensor | None] = default_query,
        temperature: float = SamplerOptions.temperature,
        top_relations: int | None = SamplerOptions.top_relations,
        temperature_gumbel: float = SamplerOptions.temperature_gumbel,
        seed: int | None = None,
        rank: int | None = None,
        backend: str = SamplerOptions.backend,
        step: int = 0,
        fallback: str = SAMPLER_FALLBACK,
        directions: str | None = None,
    ) -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        if directions is not None and directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS} or None, got {directions!r}")
        self.fallback = fallback
        self._directions_given = directions is not None
        self.directions = SAMPLER_DIRECTIONS if directions is None else directions
        self._warned_mixed_directions = False
        self.hard_counts: torch.Tensor | None = None  # (B,) hard negative columns per row of the latest batch
        if schedule is None:
            if total_steps is None:
                raise ValueError("give total_steps (for the default HardRatioSchedule) or a schedule")
            schedule = HardRatioSchedule(check_count(total_steps, "total_steps"))
        self.schedule = as_schedule(schedule)
        # the mining options of every graph's draws; directions are applied to the weights (per graph)
        self.options = SamplerOptions(temperature=temperature, top_relations=top_relations,
                                      temperature_gumbel=temperature_gumbel, backend=backend)
        self.seed = draw_seed() if seed is None else check_seed(seed)
        self.rank = None if rank is None else check_count(rank, "rank", allow_zero=True)
        self.step = check_count(step, "step", allow_zero=True)
        if not callable(output_transform) or not callable(query_from_inputs):
            raise TypeError("output_transform and query_from_inputs must be callables")
        self.output_transform = output_transform
        self.query_from_inputs = query_from_inputs
        self._paused = False
        self._graphs: list[GraphState] = []
        self._by_object: dict[int, GraphState] = {}  # id() of a graph object (data, relation_graph) -> graph
        self._unclaimed: dict[tuple, dict] = {}  # loaded cache entries of graphs not seen yet, by key
        self._pending: GraphState | None = None  # graph of the latest drop-in call
        self._pending_relations: torch.Tensor | None = None  # (B,) its batch relations
        self._hooks = _HookCounters()
        self._warned_rejection = False
        self._warned_many_graphs = False
        self._last: dict[str, Any] = {}
        self._patches: list[tuple[Any, str, Any]] = []
        self._handles: list = []
        for data in train_data if isinstance(train_data, (list, tuple)) else ([] if train_data is None else [train_data]):
            self._state_for(data)
        self._handles = self._register_hooks(model, relation_module)  # last: nothing left hooked if a graph is bad

    # ------------------------------------------------------------------ hooks
    def close(self) -> None:
        """Remove the hooks and undo ``install``'s patches."""
        self._remove_hooks()
        for namespace, name, original in reversed(self._patches):
            current = namespace.get(name) if isinstance(namespace, dict) else getattr(namespace, name, None)
            if current is self:
                if isinstance(namespace, dict):
                    namespace[name] = original
                else:
                    setattr(namespace, name, original)
        self._patches = []


    def stream_seed(self) -> int:
        """This rank's base seed; step s draws from ``mix_seed(stream_seed(), s)``."""
        if self.rank is None:
            self.rank = current_rank()
        return rank_seed(self.seed, self.rank)

    def ratio(self) -> float:
        """The hard share at the current step."""
        return ratio_at(self.schedule, self.step)

    def __call__(
        self,
        data: Any,
        batch: torch.Tensor,
        num_negative: int,
        strict: bool = True,
        relation_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, 1 + num_negative, 3) [h, t, r] in ULTRA's layout; ``batch`` is (B, 3) [h, t, r]."""
        if not isinstance(batch, torch.Tensor) or batch.dim() != 2 or batch.shape[1] != 3:
            raise ValueError(f"batch must be a (B, 3) long tensor of [h, t, r], got {getattr(batch, 'shape', type(batch))}")
        state = self._state_for(data)
        if batch.device != state.index.device:
            raise ValueError(f"batch is on {batch.device} but the graph is on {state.index.device}")
        num_negative = check_count(num_negative, "num_negative")
        h, t, r = batch.to(torch.int64).unbind(1)
        size, half = batch.shape[0], batch.shape[0] // 2
        tail_row = torch.arange(size, device=batch.device) < half
        query_entity = torch.where(tail_row, h, t)
        positive = torch.where(tail_row, t, h)
        query_relation = torch.where(tail_row, r, state.index.inverse(r))
        step = self.step
        if relation_embeddings is not None:
            allowed = None
            if state.directions == "separate":
                allowed = same_direction_mask(query_relation, state.index.num_relations, state.index.inverse_offset)
            weights = relation_weights_from_embeddings(relation_embeddings, query_relation, self.options.temperature, self.options.top_relations,
                                                       allowed)
            if relation_embeddings.dim() == 3:
                state.cache.update(relation_embeddings, r, step)
            from_cache = None
        else:
            weights, from_cache = state.cache.weights(query_relation, self.options.temperature, self.options.top_relations, state.directions)
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
        num_hard = hard_count(ratio_at(self.schedule, step), num_negative)
        negatives, self.hard_counts = hybrid_negatives(
            state.index, self.options, query_entity, query_relation, positive, relation_embeddings=None,
            relation_weights=weights, num_negatives=num_negative, num_hard=num_hard,
            seed=mix_seed(self.stream_seed(), step), strict=strict,
        )
        self._record(state, step, size, num_negative, num_hard, query_relation, from_cache)
        self._pending, self._pending_relations = state, r
        self.step = step + 1
        h_index = h[:, None].repeat(1, num_negative + 1)
        t_index = t[:, None].repeat(1, num_negative + 1)
        r_index = r[:, None].repeat(1, num_negative + 1)
        t_index[:half, 1:] = negatives[:half]
        h_index[half:, 1:] = negatives[half:]
        return torch.stack([h_index, t_index, r_index], dim=-1)

    def _record(self, state, step, size, k, num_hard, query_relation, from_cache) -> None:
        """Keep the figures of this call for stats() (one small device-to-host read) and warn."""
        cache = state.cache
        cached = cache.seen.sum()
        if from_cache is None:  # explicit relation_embeddings: no row fell back, all fresh (age 0)
            zero = torch.zeros_like(cached)
            fallback, borrowed, cached, age_sum, aged = torch.stack([zero, zero, cached, zero, zero + size]).tolist()
        else:
            age = torch.where(from_cache, step - cache.refreshed_at[query_relation], 0)
            borrowed_rows = (from_cache & ~cache.seen[query_relation]).sum()
            fallback, borrowed, cached, age_sum, aged = torch.stack(
                [(~from_cache).sum(), borrowed_rows, cached, age.sum(), from_cache.sum()]).tolist()
        state.calls += 1
        self._last = dict(
            step=step,
            num_relations=state.index.num_relations,
            cached_relations=cached,
            rows=size,
            num_negatives=k,
            num_hard=num_hard,
            fallback_rows=fallback,
            borrowed_rows=borrowed,
            mean_cache_age=age_sum / aged if aged else None,
        )
        if (num_hard > 0 and cached == 0 and from_cache is not None and state.calls > EMPTY_CACHE_WARNING_CALLS
                and not state.warned_empty):
            state.warned_empty = True
            hooks = self._hooks
            warnings.warn(
                f"KMASNegativeSampling: step {step}: the schedule asks for {num_hard} of {k} negatives to be hard, but "
                f"after {state.calls - 1} calls on this graph (N={state.index.num_entities}, R={state.index.num_relations}) "
                "no relation representation has been cached: every hard negative comes from the one-hot fallback "
                "(the query relation's own tail set), i.e. KMAS is not what runs. The hook on "
                f"relation_module={self._target} cached {state.captures} outputs for this graph; overall "
                f"{hooks.captured} cached, {hooks.eval_mode} skipped in eval mode, {hooks.unattributed} before any call, "
                f"{hooks.rejected} rejected"
                f"{' (last: ' + hooks.last_rejection + ')' if hooks.last_rejection else ''}. Check relation_module "
                "(the module returning the (B, R, d) representations), output_transform, and that the model is in "
                "training mode.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def stats(self) -> dict[str, Any]:
        """Figures of the latest call, for logging next to the loss; host values, no device sync.

        cached_relations: relations of that call's graph with a similarity row from the encoder
        (inverses counted), as of the call; num_relations: R of that graph; hard_fraction: the
        schedule's hard share of that call (num_hard / num_negatives); fallback_rows: its rows whose
        query relation had no cached row (one-hot weights); borrowed_rows: its rows whose query
        relation used a row borrowed from another relation's forward (``fallback="shared"``); mean_cache_age: over its other rows, the
        number of steps since the forward that refreshed their row (1: the previous step's), None
        if every row fell back; plus hook counters over the whole run.
        """
        last = self._last
        hooks = self._hooks
        return {
            "step": self.step,
            "graphs": len(self._graphs),
            "num_relations": last.get("num_relations", 0),
            "cached_relations": last.get("cached_relations", 0),
            "hard_fraction": last["num_hard"] / last["num_negatives"] if last else 0.0,
            "num_hard": last.get("num_hard", 0),
            "num_negatives": last.get("num_negatives", 0),
            "rows": last.get("rows", 0),
            "fallback_rows": last.get("fallback_rows", 0),
            "borrowed_rows": last.get("borrowed_rows", 0),
            "mean_cache_age": last.get("mean_cache_age"),
            "captured_outputs": hooks.captured,
            "eval_outputs_skipped": hooks.eval_mode,
            "unattributed_outputs": hooks.unattributed,
            "rejected_outputs": hooks.rejected,
            "last_rejection": hooks.last_rejection,
        }

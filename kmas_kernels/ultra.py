"""The drop-in for ``negative_sampling`` of ULTRA and the KGFMs that copy it (TRIX, MOTIF, SEMMA).

Their training loops call ``batch = tasks.negative_sampling(train_data, batch, num_negative, strict)``
and then ``model(train_data, batch)``. Swap the first with one line:

    negative_sampling = KMASNegativeSampling(model, train_data, total_steps)
    batch = negative_sampling(train_data, batch, cfg.task.num_negative, strict=cfg.task.strict_negative)

or leave the training script untouched and patch the module it calls (``install(tasks, model, ...)``).

Relation representations come from the model's own relation encoder without an extra forward
pass: a forward hook on it (``relation_module``) sees every (B, R, d) output, and a
per-graph :class:`RelationSimilarityCache` keeps one similarity row per query relation. Which graph
an encoder output belongs to (docs/semantics.md, "The drop-in"):

1. the encoder was called with a registered graph object (the ``data`` given to the drop-in, as
   in TRIX, or its ``relation_graph``, as in ULTRA), or else
2. the graph of the latest drop-in call (MOTIF rebuilds ``data`` and its relation hypergraph on
   every step; SEMMA's fused representations come from a module that never sees the graph).

Only forwards in training mode are cached (validation and test run in ``eval()``), and none inside
``paused()``. Graphs are identified by the object passed to the drop-in, or, for a new object, by
(num_nodes, num_relations, edges) being equal to a known graph's. A relation whose row was never
filled borrows one from the latest forward (``fallback="shared"``, the default) or, with
``fallback="one_hot"``, falls back to one-hot weights (negatives from its own tail set);
``stats()`` counts both kinds of rows, and a warning fires once when hard negatives are due but the
cache is still empty. ``hard_counts`` holds, per row of the latest batch, how many of its negative
columns are hard, for a loss that weighs them (:func:`kmas_kernels.loss.link_prediction_loss`).

Under DDP each rank draws its own stream: the seed of rank ``r`` at step ``s`` is
``mix_seed(rank_seed(seed, r), s)`` (rank 0 is the single-process stream).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from .core.index import KGIndex
from .core.philox import draw_seed, mix_seed
from .core.relation_weights import relation_weights_from_embeddings
from .core.validation import check_count, check_seed
from .core.relation_weights import DIRECTIONS, same_direction_mask
from .relation_cache import FALLBACKS, RelationSimilarityCache
from .sampler import SAMPLER_DIRECTIONS, SAMPLER_FALLBACK, SAMPLER_TEMPERATURE, SAMPLER_TOP_RELATIONS, KMASSampler
from .schedule import HardRatioSchedule

# A graph's cache still empty after this many drop-in calls on it, with hard negatives due: warn.
EMPTY_CACHE_WARNING_CALLS = 3
# More distinct graphs than this: warn (a new graph every step never fills a cache).
MANY_GRAPHS_WARNING = 32
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


def default_query(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The (B,) query relations of a relation-encoder call, or None when its inputs carry none.

    ULTRA and MOTIF pass ``query=`` (B,); TRIX passes the (B, 1 + k, 3) batch, whose column
    [:, 0, 2] is the query relation. Float tensors (e.g. the inputs of SEMMA's fusion) are skipped.
    """
    candidates = [kwargs.get("query"), *args[1:], kwargs.get("batch")]
    for value in candidates:
        if isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dim() in (1, 3):
            return value[:, 0, 2] if value.dim() == 3 else value
    return None


def default_output(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"the relation encoder returned {type(output).__name__}, not a tensor: pass output_transform=")


def _graph_shape(data: Any) -> tuple[int, int | None, int]:
    """(num_nodes, num_relations or None, number of edges) of a PyG-style graph, read on the host."""
    for attr in ("edge_index", "edge_type", "num_nodes"):
        if getattr(data, attr, None) is None:
            raise TypeError(f"data must have an `{attr}` attribute (PyG-style graph), got {type(data).__name__}")
    num_relations = getattr(data, "num_relations", None)
    return int(data.num_nodes), None if num_relations is None else int(num_relations), int(data.edge_index.shape[-1])


def _same_edges(a: Any, b: Any) -> bool:
    return (
        a.edge_index.shape == b.edge_index.shape
        and a.edge_index.device == b.edge_index.device
        and torch.equal(a.edge_index, b.edge_index)
        and torch.equal(a.edge_type, b.edge_type)
    )


@dataclass
class GraphState:
    """What the drop-in keeps per training graph (ULTRA pre-trains on several)."""

    shape: tuple[int, int | None, int]  # (num_nodes, num_relations, edges) as given
    key: tuple[int, int, int, int]  # (num_nodes, num_relations, unique edges, checksum): matches state_dict entries
    data: Any  # the graph object last passed; held, so that its id() stays unique
    index: KGIndex
    sampler: KMASSampler
    cache: RelationSimilarityCache
    calls: int = 0  # drop-in calls on this graph
    captures: int = 0  # encoder outputs cached
    warned_empty: bool = False
    relation_graph: Any = None  # data.relation_graph when bound; held, so that its id() stays unique
    directions: str = SAMPLER_DIRECTIONS  # this graph's: "mixed" where the default "separate" cannot apply
    object_ids: list[int] = field(default_factory=list)  # ids registered for this graph's objects


@dataclass
class _HookCounters:
    captured: int = 0
    eval_mode: int = 0  # outputs of forwards in eval mode: not cached
    unattributed: int = 0  # before any drop-in call, on a graph not given to it: not cached
    rejected: int = 0
    last_rejection: str | None = None


def _graph_key(index: KGIndex) -> tuple[int, int, int, int]:
    """(entities, relations, known edges, checksum of the edge keys): which graph a saved cache is
    for, across processes (``id()`` is not). The checksum is order-free; int64 arithmetic wraps the
    same way on every device."""
    keys = index.known_keys
    mixed = (keys ^ (keys >> 31)) * 0x5851F42D4C957F2D
    return int(index.num_entities), int(index.num_relations), int(keys.numel()), int(mixed.sum())


_KEY_FIELDS = ("num_entities", "num_relations", "num_known_edges", "checksum")


class KMASNegativeSampling:
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
        temperature: float = SAMPLER_TEMPERATURE,
        top_relations: int | None = SAMPLER_TOP_RELATIONS,
        temperature_gumbel: float = 1.0,
        seed: int | None = None,
        rank: int | None = None,
        backend: str = "auto",
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
        self.schedule = schedule
        self.options = dict(temperature=temperature, top_relations=top_relations, temperature_gumbel=temperature_gumbel, backend=backend)
        self.temperature = temperature
        self.top_relations = top_relations
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
    def _register_hooks(self, model: torch.nn.Module | None, relation_module: Any) -> list:
        classes = relation_module if isinstance(relation_module, tuple) else (relation_module,)
        if all(isinstance(c, type) for c in classes):
            if not all(issubclass(c, torch.nn.Module) for c in classes):
                raise TypeError(f"relation_module classes must be torch.nn.Module subclasses, got {relation_module!r}")
            self._target = "/".join(c.__name__ for c in classes)
            if model is None:  # hook every module of these classes, process-wide
                def capture_if_instance(module, args, kwargs, output):
                    if isinstance(module, classes):
                        self._capture(module, args, kwargs, output)

                hook = torch.nn.modules.module.register_module_forward_hook
                return [hook(capture_if_instance, with_kwargs=True)]
            modules = [m for m in model.modules() if isinstance(m, classes)]
            if not modules:
                raise ValueError(f"relation_module={self._target}: {type(model).__name__} has no such submodule")
        else:
            if model is None and not isinstance(relation_module, torch.nn.Module):
                raise ValueError("model=None needs relation_module to be a module or a class, not an attribute path")
            modules = [self._resolve_module(model, relation_module)]
            self._target = relation_module if isinstance(relation_module, str) else type(relation_module).__name__
        return [m.register_forward_hook(self._capture, with_kwargs=True) for m in modules]

    @staticmethod
    def _resolve_module(model: torch.nn.Module, relation_module: str | torch.nn.Module) -> torch.nn.Module:
        if isinstance(relation_module, torch.nn.Module):
            return relation_module
        if not isinstance(relation_module, str):
            raise TypeError(f"relation_module must be an attribute path, a module or a class, got {type(relation_module).__name__}")
        module = model
        for name in relation_module.split("."):
            if not hasattr(module, name):
                raise ValueError(f"relation_module={relation_module!r}: {type(module).__name__} has no attribute {name!r}")
            module = getattr(module, name)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"relation_module={relation_module!r} is a {type(module).__name__}, not a torch.nn.Module")
        return module

    def _capture(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """Forward hook: cache the encoder's output for its graph. Never raises (a drop-in must not
        fail where the original would not): a rejected output is counted and warned about once."""
        if self._paused:
            return
        if not module.training:
            self._hooks.eval_mode += 1
            return
        try:
            first = args[0] if args else next(iter(kwargs.values()), None)
            state = self._by_object.get(id(first))
            if state is None:
                state = self._pending
            if state is None:  # before any drop-in call, on a graph not given to it: not ours to cache
                self._hooks.unattributed += 1
                return
            embeddings = self.output_transform(output)
            query = self.query_from_inputs(args, kwargs)
            if query is None:
                if state is not self._pending or embeddings.shape[0] != self._pending_relations.numel():
                    raise ValueError(
                        "the encoder's inputs carry no query relations and its output "
                        f"{tuple(embeddings.shape)} does not match the latest drop-in batch: pass query_from_inputs="
                    )
                query = self._pending_relations
            state.cache.update(embeddings, query, step=max(self.step - 1, 0))
        except Exception as error:  # noqa: BLE001 - reported, never raised into the user's forward
            self._reject(module, error)
            return
        state.captures += 1
        self._hooks.captured += 1

    def _reject(self, module: torch.nn.Module, error: Exception) -> None:
        self._hooks.rejected += 1
        self._hooks.last_rejection = f"{type(error).__name__}: {error}"
        if not self._warned_rejection:
            self._warned_rejection = True
            warnings.warn(
                f"KMASNegativeSampling: an output of {type(module).__name__} (relation_module={self._target}) was not "
                f"cached ({self._hooks.last_rejection}); hard negatives of relations without a cached row come from "
                "the one-hot fallback. stats() counts these.",
                RuntimeWarning,
                stacklevel=2,
            )

    def close(self) -> None:
        """Remove the hooks and undo ``install``'s patches."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for namespace, name, original in reversed(self._patches):
            current = namespace.get(name) if isinstance(namespace, dict) else getattr(namespace, name, None)
            if current is self:
                if isinstance(namespace, dict):
                    namespace[name] = original
                else:
                    setattr(namespace, name, original)
        self._patches = []

    @contextlib.contextmanager
    def paused(self):
        """Forwards inside this block leave the cache alone (e.g. measuring it)."""
        previous, self._paused = self._paused, True
        try:
            yield self
        finally:
            self._paused = previous

    # ------------------------------------------------------------------ graphs
    def graph(self, data: Any) -> GraphState:
        """The state kept for graph ``data`` (index, sampler, cache), created on first use."""
        return self._state_for(data)

    def _directions_for(self, index: KGIndex) -> str:
        """``self.directions`` for this graph; the default "separate" becomes "mixed", with one
        warning, on a graph without ULTRA's inverse layout (the original sampler never fails there)."""
        if self.directions == "mixed" or (index.inverse_offset is not None and 2 * index.inverse_offset == index.num_relations):
            return self.directions
        if self._directions_given:
            raise ValueError("directions='separate' needs graphs with inverse edges (relation r + R/2 the inverse of r)")
        if not self._warned_mixed_directions:
            self._warned_mixed_directions = True
            warnings.warn(f"KMASNegativeSampling: a graph with {index.num_relations} relations has no inverse layout "
                          "(relation r + R/2 the inverse of r), so its hard negatives mix every relation "
                          "(directions='mixed') instead of the default 'separate'; pass directions='mixed' to silence this",
                          stacklevel=3)
        return "mixed"

    def _state_for(self, data: Any) -> GraphState:
        state = self._by_object.get(id(data))
        if state is not None and state.data is data:
            if getattr(data, "relation_graph", None) is not state.relation_graph:
                self._bind(state, data)
            return state
        shape = _graph_shape(data)
        for state in self._graphs:
            if state.shape == shape and _same_edges(state.data, data):
                self._bind(state, data)
                return state
        index = KGIndex.from_data(data)
        r = index.num_relations
        sampler = KMASSampler(index, 1, self.schedule, seed=self.seed, **self.options)
        key = _graph_key(index)
        directions = self._directions_for(index)
        cache = RelationSimilarityCache(r, index.inverse, index.device, fallback=self.fallback, inverse_offset=index.inverse_offset)
        state = GraphState(shape, key, data, index, sampler, cache, directions=directions)
        if key in self._unclaimed:
            state.cache.load_state_dict(self._unclaimed.pop(key))
        self._graphs.append(state)
        self._bind(state, data)
        if len(self._graphs) > MANY_GRAPHS_WARNING and not self._warned_many_graphs:
            self._warned_many_graphs = True
            warnings.warn(
                f"KMASNegativeSampling has seen {len(self._graphs)} different graphs: a graph with new edges on every "
                "call gets a new, empty cache each time (hard negatives from the one-hot fallback)",
                RuntimeWarning,
                stacklevel=3,
            )
        return state

    def _bind(self, state: GraphState, data: Any) -> None:
        """Make ``data`` and its relation graph the objects that identify ``state``: the encoder is
        called with the graph itself (TRIX) or its relation graph (ULTRA). Both are held by the
        state, so no other live object can have their ids."""
        for object_id in state.object_ids:
            if self._by_object.get(object_id) is state:
                del self._by_object[object_id]
        state.data = data
        state.relation_graph = getattr(data, "relation_graph", None)
        state.object_ids = [id(obj) for obj in (data, state.relation_graph) if obj is not None]
        for object_id in state.object_ids:
            self._by_object[object_id] = state

    # ------------------------------------------------------------------ sampling
    def stream_seed(self) -> int:
        """This rank's base seed; step s draws from ``mix_seed(stream_seed(), s)``."""
        if self.rank is None:
            self.rank = current_rank()
        return rank_seed(self.seed, self.rank)

    def ratio(self) -> float:
        """The hard share at the current step."""
        return float(self.schedule(self.step)) if callable(self.schedule) else float(self.schedule)

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
            weights = relation_weights_from_embeddings(relation_embeddings, query_relation, self.temperature, self.top_relations,
                                                       allowed)
            if relation_embeddings.dim() == 3:
                state.cache.update(relation_embeddings, r, step)
            from_cache = None
        else:
            weights, from_cache = state.cache.weights(query_relation, self.temperature, self.top_relations, state.directions)
        sampler = state.sampler
        sampler.seed, sampler.step = self.stream_seed(), step
        num_hard = sampler.num_hard(num_negatives=num_negative)
        negatives = sampler.sample(
            query_entity, query_relation, positive, relation_weights=weights, num_negatives=num_negative, strict=strict
        )
        self.hard_counts = sampler.hard_counts
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
                stacklevel=3,
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

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next draws, tensors and plain containers only (loadable with
        ``torch.load(weights_only=True)``)::

            {"seed": int, "step": int,
             "graphs": [{"graph": {"num_entities", "num_relations", "num_known_edges", "checksum"},
                         "similarity": (R, R) float32, "seen": (R,) bool, "refreshed_at": (R,) int64}, ...]}

        ``graphs``: every graph indexed so far (first-seen order), then loaded caches whose graph has
        not appeared yet. The rank is not saved: a resumed process draws its own rank's stream.
        """
        graphs = [dict(graph=dict(zip(_KEY_FIELDS, state.key)), **state.cache.state_dict()) for state in self._graphs]
        graphs += [dict(graph=dict(zip(_KEY_FIELDS, key)), **cache) for key, cache in self._unclaimed.items()]
        return {"seed": int(self.seed), "step": int(self.step), "graphs": graphs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``. Each cache goes to the graph with the same key (sizes and edge
        checksum), in any order; one whose graph is not indexed yet waits until it first appears.
        Graphs indexed here but absent from ``state`` start empty, as in the saved run. Every entry
        is checked before anything changes. Entries without ``refreshed_at`` (older checkpoints)
        count their cached rows as refreshed at the saved step."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from KMASNegativeSampling.state_dict(), got {type(state).__name__}")
        expected = {"seed", "step", "graphs"}
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(f"KMASNegativeSampling state: missing keys {sorted(missing)}, unexpected keys {sorted(map(str, unexpected))}")
        seed = check_seed(state["seed"])
        if seed is None:
            raise ValueError("KMASNegativeSampling state: seed must be an int in [0, 2**63), got None")
        step = check_count(state["step"], "step", allow_zero=True)
        if not isinstance(state["graphs"], (list, tuple)):
            raise TypeError(f"KMASNegativeSampling state: graphs must be a list, got {type(state['graphs']).__name__}")
        entries: dict[tuple, dict] = {}
        for entry in state["graphs"]:
            info = entry.get("graph") if isinstance(entry, dict) else None
            if not isinstance(info, dict) or any(not isinstance(info.get(k), int) for k in _KEY_FIELDS):
                raise ValueError(f"KMASNegativeSampling state: each graph entry needs 'graph' with int {_KEY_FIELDS}, got {info!r}")
            cache = {k: v for k, v in entry.items() if k != "graph"}
            if "refreshed_at" not in cache and isinstance(cache.get("seen"), torch.Tensor):
                cache["refreshed_at"] = torch.where(cache["seen"], step, -1).to(torch.int64)
            key = tuple(info[k] for k in _KEY_FIELDS)
            RelationSimilarityCache.check_state(cache, key[1])
            entries[key] = cache
        self.seed, self.step = seed, step
        self._unclaimed = {}
        for graph in self._graphs:
            cache = entries.pop(graph.key, None)
            if cache is None:
                graph.cache.reset()
            else:
                graph.cache.load_state_dict(cache)
        self._unclaimed = entries


def install(
    tasks_module: Any,
    model: torch.nn.Module | None = None,
    train_data: Any = None,
    total_steps: int | None = None,
    *,
    namespaces: Iterable[Any] = (),
    attribute: str = "negative_sampling",
    **options: Any,
) -> KMASNegativeSampling:
    """Replace ``tasks_module.negative_sampling`` (e.g. ``ultra.tasks``, ``trix.tasks``,
    ``motif.tasks``) by a KMASNegativeSampling, so an unmodified training script that calls
    ``tasks.negative_sampling(...)`` uses KMAS. ``namespaces`` (modules or dicts such as a
    script's ``globals()``) are patched too where they hold the original function (a script that
    did ``from ultra.tasks import negative_sampling``). ``close()`` on the result undoes it all.
    Other arguments as in KMASNegativeSampling.
    """
    original = getattr(tasks_module, attribute, None)
    if not callable(original):
        raise ValueError(f"{getattr(tasks_module, '__name__', tasks_module)!r} has no callable `{attribute}` to replace")
    if isinstance(original, KMASNegativeSampling):
        raise ValueError(f"{attribute} of {getattr(tasks_module, '__name__', tasks_module)!r} is already a KMASNegativeSampling")
    sampler = KMASNegativeSampling(model, train_data, total_steps, **options)
    for namespace in (tasks_module, *namespaces):
        current = namespace.get(attribute) if isinstance(namespace, dict) else getattr(namespace, attribute, None)
        if current is not original:
            continue
        sampler._patches.append((namespace, attribute, original))
        if isinstance(namespace, dict):
            namespace[attribute] = sampler
        else:
            setattr(namespace, attribute, sampler)
    return sampler

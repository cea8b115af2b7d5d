"""The drop-in's graph registry: which training graph an object is, its index and cache."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.index import KGIndex
from ..core.validation import user_stacklevel
from ..relation_cache import RelationSimilarityCache
from ..sampler import SAMPLER_DIRECTIONS

MANY_GRAPHS_WARNING = 32

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
    cache: RelationSimilarityCache
    calls: int = 0  # drop-in calls on this graph
    captures: int = 0  # encoder outputs cached
    warned_empty: bool = False
    relation_graph: Any = None  # data.relation_graph when bound; held, so that its id() stays unique
    directions: str = SAMPLER_DIRECTIONS  # this graph's: "mixed" where the default "separate" cannot apply
    object_ids: list[int] = field(default_factory=list)  # ids registered for this graph's objects


def _graph_key(index: KGIndex) -> tuple[int, int, int, int]:
    """(entities, relations, known edges, checksum of the edge keys): which graph a saved cache is
    for, across processes (``id()`` is not). The checksum is order-free; int64 arithmetic wraps the
    same way on every device."""
    keys = index.known_keys
    mixed = (keys ^ (keys >> 31)) * 0x5851F42D4C957F2D
    return int(index.num_entities), int(index.num_relations), int(keys.numel()), int(mixed.sum())


_KEY_FIELDS = ("num_entities", "num_relations", "num_known_edges", "checksum")


class GraphRegistry:
    """Mixin of :class:`~kmas_kernels.ultra.KMASNegativeSampling`: graphs by object and by edges."""

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
                          stacklevel=user_stacklevel())
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
        key = _graph_key(index)
        directions = self._directions_for(index)
        cache = RelationSimilarityCache(r, index.inverse, index.device, fallback=self.fallback, inverse_offset=index.inverse_offset)
        state = GraphState(shape, key, data, index, cache, directions=directions)
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
                stacklevel=user_stacklevel(),
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

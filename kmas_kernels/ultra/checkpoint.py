"""The drop-in's checkpoints: seed, step and every graph's similarity cache."""

from __future__ import annotations

from typing import Any

import torch

from ..core.validation import check_count, check_seed
from ..relation_cache import RelationSimilarityCache
from .graphs import _KEY_FIELDS


class CheckpointState:
    """Mixin of :class:`~kmas_kernels.ultra.KMASNegativeSampling`: ``state_dict`` / ``load_state_dict``."""

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


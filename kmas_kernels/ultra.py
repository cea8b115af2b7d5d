"""The ULTRA drop-in: ``KMASNegativeSampling`` replaces ``ultra.tasks.negative_sampling``.

ULTRA's loop calls ``batch = negative_sampling(train_data, batch, num_negative, strict)`` and then
``model(train_data, batch)``. Swap the first with one line:

    negative_sampling = KMASNegativeSampling(model, train_data, total_steps)
    batch = negative_sampling(train_data, batch, cfg.task.num_negative, strict=cfg.task.strict_negative)

Relation embeddings come from the model's own relation encoder without an extra forward pass: a
forward hook on ``model.relation_model`` (configurable) sees every (B, R, d) output. ULTRA's
relation representations are conditioned on each row's query relation, so what carries over
between steps is a per-query-relation cache: an R × R cosine-similarity matrix whose row q is
refreshed whenever a forward is conditioned on q (row q + R0, the inverse, at the same time, from
the same representations). A relation not seen yet falls back to one-hot weights: negatives from
its own tail set. Pass ``relation_embeddings=`` on a call to use fresh ones instead.

TRIX, MOTIF and SEMMA copy ULTRA's ``negative_sampling``, so this serves them too; point
``relation_module`` at their relation encoder and, where its output is not a (B, R, d) tensor,
give ``output_transform`` (SEMMA: the fused representations, e.g. ``lambda out: out[2]``).
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .core.index import KGIndex
from .core.relation_weights import one_hot_weights, relation_weights_from_embeddings, relation_weights_from_similarity
from .core.philox import draw_seed
from .core.validation import check_count, check_seed
from .hard_negatives import DEFAULT_TEMPERATURE
from .sampler import KMASSampler
from .schedule import HardRatioSchedule


@dataclass
class _GraphState:
    """What the drop-in keeps per training graph (ULTRA pre-trains on several)."""

    data: Any  # held so that id(data) stays unique while the state lives
    index: KGIndex
    sampler: KMASSampler
    similarity: torch.Tensor  # (R, R) float32: cos between relation q's and r's representations, conditioned on q
    seen: torch.Tensor  # (R,) bool: rows of `similarity` filled by some forward

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, query: torch.Tensor) -> None:
        """Refresh the cache from representations (B, R, d) conditioned on query relations (B,)."""
        r = self.index.num_relations
        if embeddings.dim() != 3 or embeddings.shape[:2] != (query.numel(), r):
            raise ValueError(
                f"relation encoder output must have shape (B, R, d) = ({query.numel()}, {r}, d) for this graph, "
                f"got {tuple(embeddings.shape)}: set relation_module/output_transform to the module returning it"
            )
        z = F.normalize(embeddings.detach().to(torch.float32), dim=-1, eps=1e-12)
        rows = torch.arange(query.numel(), device=z.device)
        query = query.to(torch.int64)
        for q in (query, self.index.inverse(query)):  # tail rows query q, head rows its inverse
            sim = torch.einsum("bd,brd->br", z[rows, q], z)
            self.similarity.index_copy_(0, q, sim.to(self.similarity.device))
            self.seen[q.to(self.seen.device)] = True

    # ------------------------------------------------------------------ checkpointing

    def fingerprint(self) -> tuple[int, int, int, int]:
        """(entities, relations, known edges, checksum of the edge keys): which graph a saved cache is for."""
        return _graph_fingerprint(self.index)

    def state_dict(self) -> dict[str, Any]:
        """This graph's cache: every tensor that the next draw reads (copies, on the CPU)."""
        entities, relations, edges, checksum = self.fingerprint()
        return {
            "graph": {"num_entities": entities, "num_relations": relations, "num_known_edges": edges, "checksum": checksum},
            "similarity": self.similarity.detach().cpu().clone(),
            "seen": self.seen.detach().cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = self.index.num_relations
        for name, shape, dtype in (("similarity", (r, r), self.similarity.dtype), ("seen", (r,), self.seen.dtype)):
            value = state.get(name) if isinstance(state, dict) else None
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or value.dtype != dtype:
                got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"KMASNegativeSampling state: graph cache {name!r} must be a {shape} {dtype} tensor, got {got}")
        self.similarity.copy_(state["similarity"].to(self.similarity.device))
        self.seen.copy_(state["seen"].to(self.seen.device))

    def reset(self) -> None:
        self.similarity.zero_()
        self.seen.zero_()

    def weights(self, query_relation: torch.Tensor, temperature: float, top_relations: int | None) -> torch.Tensor:
        """w (B, R): softmax over cached similarities, one-hot for relations never seen."""
        from_cache = relation_weights_from_similarity(self.similarity[query_relation], query_relation, temperature, top_relations)
        one_hot = one_hot_weights(query_relation, self.index.num_relations)
        return torch.where(self.seen[query_relation][:, None], from_cache, one_hot)


def _graph_fingerprint(index: KGIndex) -> tuple[int, int, int, int]:
    """Identifies a graph across processes (``id(data)`` does not): sizes plus an order-free checksum
    of its edge keys (int64 arithmetic wraps the same way on every device)."""
    keys = index.known_keys
    mixed = (keys ^ (keys >> 31)) * 0x5851F42D4C957F2D
    return (int(index.num_entities), int(index.num_relations), int(keys.numel()), int(mixed.sum()))


def _default_query(args: tuple, kwargs: dict) -> torch.Tensor:
    """The query relations of a relation-encoder call: ULTRA's `query=`, or a (B, 1+k, 3) batch."""
    query = kwargs.get("query", args[1] if len(args) > 1 else kwargs.get("batch"))
    if query is None:
        raise ValueError("cannot find the query relations among the relation encoder's inputs: pass query_from_inputs=")
    return query[:, 0, 2] if query.dim() == 3 else query


def _default_output(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"the relation encoder returned {type(output).__name__}, not a tensor: pass output_transform=")


class KMASNegativeSampling:
    """Callable like ULTRA's ``tasks.negative_sampling(data, batch, num_negative, strict=True)``.

    Returns ULTRA's layout: a (B, 1 + k, 3) long tensor of [h, t, r]; column 0 is the positive,
    rows [0, B // 2) corrupt tails, rows [B // 2, B) corrupt heads (through the inverse relation).
    Hybrid hard + uniform negatives by ``schedule``; the step advances on every call.

    Args:
        model: the KGFM; a forward hook is put on its relation encoder (remove with ``.close()``).
        train_data: the training graph (PyG-style, inverse edges included, ULTRA's convention), or
            a list of them; other graphs passed to ``__call__`` are indexed on first use.
        total_steps: length of training, for the default ``HardRatioSchedule(total_steps)``.
        schedule: a HardRatioSchedule, callable step -> ratio, or constant ratio (overrides the default).
        relation_module: attribute path of the relation encoder on ``model`` ("relation_model",
            ULTRA's) or the module itself.
        output_transform: maps the encoder's output to the (B, R, d) tensor.
        query_from_inputs: maps the encoder's (args, kwargs) to the (B,) query relations.
        temperature, top_relations, temperature_gumbel, seed, backend: as in ``hard_negatives``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_data: Any,
        total_steps: int,
        *,
        schedule: HardRatioSchedule | Callable[[int], float] | float | None = None,
        relation_module: str | torch.nn.Module = "relation_model",
        output_transform: Callable[[Any], torch.Tensor] = _default_output,
        query_from_inputs: Callable[[tuple, dict], torch.Tensor] = _default_query,
        temperature: float = DEFAULT_TEMPERATURE,
        top_relations: int | None = None,
        temperature_gumbel: float = 1.0,
        seed: int | None = None,
        backend: str = "auto",
        step: int = 0,
    ) -> None:
        self.schedule = HardRatioSchedule(check_count(total_steps, "total_steps")) if schedule is None else schedule
        self.options = dict(temperature=temperature, top_relations=top_relations, temperature_gumbel=temperature_gumbel, backend=backend)
        self.temperature = temperature
        self.top_relations = top_relations
        self.seed = draw_seed() if seed is None else check_seed(seed)
        self.step = check_count(step, "step", allow_zero=True)
        self.output_transform = output_transform
        self.query_from_inputs = query_from_inputs
        self._paused = False
        self._graphs: dict[int, _GraphState] = {}
        self._encoder_inputs: dict[int, _GraphState] = {}
        self._pending: list[dict[str, Any]] = []  # loaded caches of graphs not indexed yet (see load_state_dict)
        for data in train_data if isinstance(train_data, (list, tuple)) else [train_data]:
            self._state_for(data)
        encoder = self._resolve_module(model, relation_module)
        self._hook = encoder.register_forward_hook(self._capture, with_kwargs=True)

    @staticmethod
    def _resolve_module(model: torch.nn.Module, relation_module: str | torch.nn.Module) -> torch.nn.Module:
        if isinstance(relation_module, torch.nn.Module):
            return relation_module
        module = model
        for name in relation_module.split("."):
            if not hasattr(module, name):
                raise ValueError(f"relation_module={relation_module!r}: {type(module).__name__} has no attribute {name!r}")
            module = getattr(module, name)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"relation_module={relation_module!r} is a {type(module).__name__}, not a torch.nn.Module")
        return module

    def _state_for(self, data: Any) -> _GraphState:
        state = self._graphs.get(id(data))
        if state is None:
            index = KGIndex.from_data(data)
            r = index.num_relations
            sampler = KMASSampler(index, 1, self.schedule, seed=self.seed, **self.options)
            state = _GraphState(
                data=data,
                index=index,
                sampler=sampler,
                similarity=torch.zeros(r, r, device=index.device),
                seen=torch.zeros(r, dtype=torch.bool, device=index.device),
            )
            self._graphs[id(data)] = state
            # the encoder is called with the graph itself (TRIX) or its relation graph (ULTRA)
            self._encoder_inputs[id(data)] = state
            if getattr(data, "relation_graph", None) is not None:
                self._encoder_inputs[id(data.relation_graph)] = state
            self._apply_pending(state)
        return state

    def _capture(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._paused:
            return
        first = args[0] if args else next(iter(kwargs.values()), None)
        state = self._encoder_inputs.get(id(first))
        if state is None:  # a graph we do not train on (e.g. a validation graph): nothing to cache
            return
        state.update(self.output_transform(output), self.query_from_inputs(args, kwargs))

    def close(self) -> None:
        """Remove the forward hook."""
        self._hook.remove()

    @contextlib.contextmanager
    def paused(self):
        """Forwards inside this block leave the cache alone (e.g. evaluation, or measuring it)."""
        previous, self._paused = self._paused, True
        try:
            yield self
        finally:
            self._paused = previous

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
        half = batch.shape[0] // 2
        tail_row = torch.arange(batch.shape[0], device=batch.device) < half
        query_entity = torch.where(tail_row, h, t)
        positive = torch.where(tail_row, t, h)
        query_relation = torch.where(tail_row, r, state.index.inverse(r))
        if relation_embeddings is not None:
            weights = relation_weights_from_embeddings(relation_embeddings, query_relation, self.temperature, self.top_relations)
            if relation_embeddings.dim() == 3:
                state.update(relation_embeddings, r)
        else:
            weights = state.weights(query_relation, self.temperature, self.top_relations)
        state.sampler.step = self.step
        negatives = state.sampler.sample(
            query_entity, query_relation, positive, relation_weights=weights, num_negatives=num_negative, strict=strict
        )
        self.step += 1
        h_index = h[:, None].repeat(1, num_negative + 1)
        t_index = t[:, None].repeat(1, num_negative + 1)
        r_index = r[:, None].repeat(1, num_negative + 1)
        t_index[:half, 1:] = negatives[:half]
        h_index[half:, 1:] = negatives[half:]
        return torch.stack([h_index, t_index, r_index], dim=-1)

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Everything that determines the next draw, in PyTorch's conventions (tensors and plain
        containers, loadable with ``torch.load(weights_only=True)``)::

            {"seed": int, "step": int,
             "graphs": [{"graph": {"num_entities", "num_relations", "num_known_edges", "checksum"},
                         "similarity": (R, R) float32, "seen": (R,) bool}, ...]}

        ``graphs`` lists every graph indexed so far, in the order they were first seen, with its
        relation-similarity cache. The per-graph KMASSampler's seed and step are this object's.
        """
        graphs = [graph.state_dict() for graph in self._graphs.values()] + [dict(entry) for entry in self._pending]
        return {"seed": int(self.seed), "step": int(self.step), "graphs": graphs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Each saved cache goes to the graph with the same fingerprint (sizes and edge checksum), so
        the training graphs may be passed again in any order; a cache whose graph is not indexed yet
        waits until that graph is first used. Graphs indexed here but absent from ``state`` start
        with an empty cache, as they would have in the saved run.
        """
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
        entries = []
        for entry in state["graphs"]:
            info = entry.get("graph") if isinstance(entry, dict) else None
            keys = ("num_entities", "num_relations", "num_known_edges", "checksum")
            if not isinstance(info, dict) or any(not isinstance(info.get(k), int) for k in keys):
                raise ValueError(f"KMASNegativeSampling state: each graph entry needs 'graph' with int {keys}, got {info!r}")
            entries.append(entry)
        self.seed, self.step = seed, step
        self._pending = entries
        for graph in self._graphs.values():
            graph.sampler.seed = self.seed
            graph.reset()
            self._apply_pending(graph)

    def _apply_pending(self, graph: _GraphState) -> None:
        """Load the first pending saved cache whose fingerprint is this graph's, if any."""
        fingerprint = graph.fingerprint()
        for position, entry in enumerate(self._pending):
            info = entry["graph"]
            if (info["num_entities"], info["num_relations"], info["num_known_edges"], info["checksum"]) == fingerprint:
                graph.load_state_dict(entry)
                del self._pending[position]
                return

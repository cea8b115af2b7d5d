"""``kmas::hard_negatives``: hard-negative mining as one torch.library custom op.

torch.compile cannot trace into ``hard_negatives`` itself: validation reads tensor values back to
the host (id ranges, counts), the backends are C++/CUDA extensions or Triton launches, and short
rows are filled with data-dependent shapes. As a custom op, the whole call is one node of the
graph: the compiler sees only the output's shape and dtype (the fake implementation below, (B, k)
int64), and at run time the real implementation runs the eager function, validation included.
So a training step that calls :func:`kmas_kernels.hard_negatives` compiles with
``fullgraph=True`` and exports with ``torch.export``, and returns exactly what eager returns.

The op takes the index as its tensors plus its sizes (a ``KGIndex`` is not a type the dispatcher
knows), ``None`` for an absent optional, and every option as a plain int/float/bool/str. With
``seed=None`` the real implementation draws the seed from torch's global generator when it runs,
as eager does.

Registered for CPU and CUDA tensors; the backend is chosen inside (``backend="auto"`` picks by the
index's device), so a compiled graph runs the same kernels as eager code.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..core.index import KGIndex
from ..core.validation import check_backend, check_count, check_float, check_index, check_seed

OP_NAME = "kmas::hard_negatives"
# the KGIndex arrays, in the op's argument order
INDEX_TENSORS = ("rel_ptr", "rel_tails", "rel_inv_count", "ent_ptr", "ent_rels", "known_keys", "known_answers")

# torch.library.custom_op arrived in torch 2.4; older torch keeps eager-only behaviour
OP_AVAILABLE = hasattr(torch.library, "custom_op") and hasattr(torch.compiler, "is_compiling")


def is_compiling() -> bool:
    """True while torch.compile (dynamo) or torch.export traces the calling code."""
    return OP_AVAILABLE and torch.compiler.is_compiling()


def _hard_negatives_impl(
    rel_ptr: torch.Tensor,
    rel_tails: torch.Tensor,
    rel_inv_count: torch.Tensor,
    ent_ptr: torch.Tensor,
    ent_rels: torch.Tensor,
    known_keys: torch.Tensor,
    known_answers: torch.Tensor,
    query_entity: torch.Tensor,
    query_relation: torch.Tensor,
    relation_embeddings: Optional[torch.Tensor],
    relation_weights: Optional[torch.Tensor],
    positive: Optional[torch.Tensor],
    num_entities: int,
    num_relations: int,
    inverse_offset: Optional[int],
    num_negatives: int,
    strict: bool,
    temperature: float,
    top_relations: Optional[int],
    temperature_gumbel: float,
    seed: Optional[int],
    backend: str,
) -> torch.Tensor:
    """(B, num_negatives) int64: the eager ``hard_negatives`` on the index rebuilt from its tensors."""
    from ..hard_negatives import hard_negatives  # at run time: hard_negatives imports this module

    index = KGIndex(
        num_entities=num_entities,
        num_relations=num_relations,
        inverse_offset=inverse_offset,
        rel_ptr=rel_ptr,
        rel_tails=rel_tails,
        rel_inv_count=rel_inv_count,
        ent_ptr=ent_ptr,
        ent_rels=ent_rels,
        known_keys=known_keys,
        known_answers=known_answers,
    )
    return hard_negatives(
        index,
        query_entity,
        query_relation,
        relation_embeddings=relation_embeddings,
        relation_weights=relation_weights,
        num_negatives=num_negatives,
        positive=positive,
        strict=strict,
        temperature=temperature,
        top_relations=top_relations,
        temperature_gumbel=temperature_gumbel,
        seed=seed,
        backend=backend,
    )


def _hard_negatives_fake(
    rel_ptr, rel_tails, rel_inv_count, ent_ptr, ent_rels, known_keys, known_answers,
    query_entity, query_relation, relation_embeddings, relation_weights, positive,
    num_entities, num_relations, inverse_offset, num_negatives, strict, temperature,
    top_relations, temperature_gumbel, seed, backend,
):  # fmt: skip
    """Shapes only: (B, num_negatives) int64 on the queries' device. Values are checked at run time."""
    if query_entity.dim() != 1:
        raise ValueError(f"query_entity must have shape (B,), got {tuple(query_entity.shape)}")
    return query_entity.new_empty((query_entity.shape[0], num_negatives), dtype=torch.int64)


if OP_AVAILABLE:
    hard_negatives_op = torch.library.custom_op(OP_NAME, mutates_args=(), device_types=("cpu", "cuda"))(_hard_negatives_impl)
    hard_negatives_op.register_fake(_hard_negatives_fake)
else:  # pragma: no cover - torch < 2.4
    hard_negatives_op = None


def _as_ids(value: Any, device: torch.device) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, device=device)


def hard_negatives_traced(
    index: KGIndex,
    query_entity: Any,
    query_relation: Any,
    *,
    relation_embeddings: torch.Tensor | None,
    relation_weights: torch.Tensor | None,
    num_negatives: int,
    positive: Any,
    strict: bool,
    temperature: float,
    top_relations: int | None,
    temperature_gumbel: float,
    seed: int | None,
    backend: str,
) -> torch.Tensor:
    """``hard_negatives`` as seen by a tracer: checks of Python values, then the custom op.

    Checks that need tensor values (a host sync each) are left to the op's real implementation,
    which runs the eager validation when the graph runs.
    """
    check_index(index)
    check_backend(backend)
    check_count(num_negatives, "num_negatives")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
    check_float(temperature, "temperature", low=0.0, low_open=True)
    check_float(temperature_gumbel, "temperature_gumbel", low=0.0)
    if top_relations is not None:
        check_count(top_relations, "top_relations")
    check_seed(seed)
    device = index.device
    return hard_negatives_op(
        *(getattr(index, name) for name in INDEX_TENSORS),
        _as_ids(query_entity, device),
        _as_ids(query_relation, device),
        relation_embeddings,
        relation_weights,
        None if positive is None else _as_ids(positive, device),
        index.num_entities,
        index.num_relations,
        index.inverse_offset,
        num_negatives,
        strict,
        float(temperature),
        top_relations,
        float(temperature_gumbel),
        seed,
        backend,
    )

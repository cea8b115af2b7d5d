"""MiningProblem: one call of ``hard_negatives``, validated and reduced to what a backend reads.

Every backend receives the same MiningProblem and returns the same thing (see ``TopKFn``), so
validation, relation weights and the exclusion slices are computed once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .index import KGIndex, check_index
from .options import MiningOptions
from .philox import draw_seed
from .relation_weights import ZERO_NORM, one_hot_weights, relation_weights_from_embeddings
from .validation import (
    as_id_vector,
    check_count,
    check_float_tensor,
    check_seed,
    user_stacklevel,
)


_ZERO_ROWS_WARNED = False


def warn_zero_weight_rows(rows: int, batch: int) -> bool:
    """RuntimeWarning, once per process, that ``rows`` of ``batch`` relation_weights rows are all zero.

    Such a row has no mixture, so all its columns are fill (uniform non-excluded entities):
    legitimate when asked for, but far more often a weight mask that removed everything
    (docs/semantics.md, "Relation weights"). The count comes from the validation's existing
    read-back (no extra host sync), and the draws are the same with or without the warning.
    """
    global _ZERO_ROWS_WARNED
    if _ZERO_ROWS_WARNED:
        return False
    _ZERO_ROWS_WARNED = True
    import warnings

    warnings.warn(
        f"relation_weights: {rows} of {batch} rows are all zero; those rows have no mixture and get only "
        "uniform (fill) negatives, not the one-hot default of a call without weights (warned once per process; check "
        "relation_weights.sum(1) > 0 first where that matters)",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )
    return True


@dataclass(frozen=True)
class MiningProblem:
    """Inputs of one hard-negative call, all on ``index.device``.

    query_entity, query_relation: (B,) int64. positive: (B,) int64, -1 where none is given.
    weights: (B, R) float32 relation weights w (need not sum to 1: the keys are scale-free).
    known_start, known_end: (B,) int64, the slice of ``index.known_answers`` excluded for each row
    (empty when not strict). temperature_gumbel: 0 means deterministic top-k of P_b.
    min_support: a lower bound on every row's support (entities with P_b > 0, not excluded),
    read back with the validation; when >= num_negatives no row can come back short, so the fill
    of short rows (hard_negatives) is skipped without a device sync. 0 = unknown.
    """

    index: KGIndex
    query_entity: torch.Tensor
    query_relation: torch.Tensor
    positive: torch.Tensor
    weights: torch.Tensor
    known_start: torch.Tensor
    known_end: torch.Tensor
    num_negatives: int
    strict: bool
    seed: int
    temperature_gumbel: float
    min_support: int = 0

    @property
    def batch_size(self) -> int:
        return self.query_entity.numel()

    def scaled_weights(self) -> torch.Tensor:
        """w[b, r] / |Tails(r)|, (B, R) float32: the per-relation contribution to P_b(e)."""
        return self.weights * self.index.rel_inv_count

    def allowed_counts(self) -> torch.Tensor:
        """(B,) int64: entities each row may return (N minus its excluded ones). O(B log E)."""
        return self.index.num_entities - excluded_counts(self.index, self.query_entity, self.query_relation, self.positive, self.strict)


# A backend's job: (B, k) int64 entity ids of the top-k keys per row in descending key order
# (ties: smaller id first), -1 in the slots past the row's support (P_b > 0, not excluded).
TopKFn = Callable[[MiningProblem], torch.Tensor]


def excluded_counts(index: KGIndex, query_entity: torch.Tensor, query_relation: torch.Tensor, positive: torch.Tensor, strict: bool) -> torch.Tensor:
    """(B,) int64: distinct excluded entities of each row (known answers when strict, the positive).

    Exact and O(B log E): the length of the row's known-answer slice plus 1 for a positive
    (>= 0) that is not itself a known answer. Ids must already be in range.
    """
    has_positive = positive >= 0
    if not strict:
        return has_positive.to(torch.int64)
    start, end = index.known_slices(query_entity, query_relation)
    positive_known = index.is_known(query_entity, query_relation, positive) & has_positive
    return (end - start) + (has_positive & ~positive_known).to(torch.int64)


def prepare_problem(
    index: Any,
    query_entity: Any,
    query_relation: Any,
    *,
    relation_embeddings: Any = None,
    relation_weights: Any = None,
    num_negatives: Any,
    positive: Any = None,
    seed: Any = None,
    options: MiningOptions | None = None,
    allow_short_rows: bool = False,
    **option_values: Any,
) -> MiningProblem:
    """Validate a call (docs/semantics.md, "Bad input") and build its MiningProblem.

    The mining options come as ``options`` (a :class:`MiningOptions`, already validated) and/or
    as keywords (``strict``, ``temperature``, ``top_relations``, ``temperature_gumbel``; they
    replace those of ``options``). ``allow_short_rows`` is for callers that cap each row's share
    themselves (KMASSampler): rows may then have fewer non-excluded entities than
    ``num_negatives`` and query relations may have no tails (an empty support); backends return
    -1 past the support either way. Every other check still runs.
    """
    check_index(index)
    device = index.device
    n, r = index.num_entities, index.num_relations
    query_entity = as_id_vector(query_entity, "query_entity", device)
    batch = query_entity.numel()
    query_relation = as_id_vector(query_relation, "query_relation", device, batch)
    positive_given = positive is not None
    positive = as_id_vector(positive, "positive", device, batch) if positive_given else torch.full_like(query_entity, -1)
    k = check_count(num_negatives, "num_negatives")
    options = MiningOptions.build(options, **option_values)
    strict = options.strict
    seed = check_seed(seed)
    if relation_embeddings is not None and relation_weights is not None:
        raise ValueError("pass relation_embeddings or relation_weights, not both")
    if relation_embeddings is not None:
        relation_embeddings = check_float_tensor(relation_embeddings, "relation_embeddings", device, "(R, d) or (B, R, d)")
        shape = tuple(relation_embeddings.shape)
        if not (
            (len(shape) == 2 and shape[0] == r and shape[1] > 0)
            or (len(shape) == 3 and shape[:2] == (batch, r) and shape[2] > 0)
        ):
            raise ValueError(f"relation_embeddings must have shape (R, d) = ({r}, d) or (B, R, d) = ({batch}, {r}, d), got {shape}")
    if relation_weights is not None:
        relation_weights = check_float_tensor(relation_weights, "relation_weights", device, "(B, R)")
        if tuple(relation_weights.shape) != (batch, r):
            raise ValueError(f"relation_weights must have shape (B, R) = ({batch}, {r}), got {tuple(relation_weights.shape)}")

    # One read-back for every id range (a sync on GPU); ids must be valid before any gather.
    ids = [query_entity, query_relation] + ([positive] if positive_given else [])
    bounds = torch.stack([torch.stack([t.min(), t.max()]) for t in ids]).tolist()
    for (low, high), name, bound in zip(bounds, ("query_entity", "query_relation", "positive"), (n, r, n)):
        if low < 0 or high >= bound:
            raise ValueError(f"{name} must hold ids in [0, {bound}), found {low if low < 0 else high}")

    if strict:
        known_start, known_end = index.known_slices(query_entity, query_relation)
    else:
        known_start = known_end = torch.zeros_like(query_entity)
    excluded = excluded_counts(index, query_entity, query_relation, positive, strict)
    if relation_embeddings is not None:
        weights = relation_weights_from_embeddings(relation_embeddings, query_relation, options.temperature, options.top_relations)
    elif relation_weights is not None:
        weights = relation_weights.to(torch.float32)
    else:
        weights = one_hot_weights(query_relation, r)
    # support lower bound: every tail of a relation with a normal (never flushed) scaled weight has
    # P_b >= that weight > 0, so |Tails(r)| - (excluded entities) candidates at least, per row
    scaled = weights * index.rel_inv_count
    weighted_tails = torch.where(scaled >= torch.finfo(torch.float32).tiny, index.tail_counts, 0)
    support = weighted_tails.amax(dim=1) - excluded if batch else torch.zeros(1, dtype=torch.int64, device=device)
    checks = [excluded.max(), index.tail_counts[query_relation].min(), support.min()]
    source = relation_embeddings if relation_embeddings is not None else relation_weights
    if source is not None:
        checks.append((~torch.isfinite(source)).any().to(torch.int64))
    if relation_weights is not None:
        checks.append((relation_weights < 0).any().to(torch.int64))
        checks.append((relation_weights == 0).all(dim=1).sum())  # rows without a mixture (warned once, below)
    if relation_embeddings is not None:  # the query relation's own vector must have a direction
        norms = torch.linalg.vector_norm(relation_embeddings.to(torch.float32), dim=-1)  # (R,) or (B, R)
        query_norms = norms[query_relation] if norms.dim() == 1 else norms[torch.arange(batch, device=device), query_relation]
        checks.append((query_norms < ZERO_NORM).any().to(torch.int64))
    values = torch.stack(checks).tolist()  # second and last read-back
    max_excluded, min_tails, min_support = int(values[0]), int(values[1]), max(0, int(values[2]))
    if k > n - max_excluded and not allow_short_rows:
        raise ValueError(
            f"num_negatives={k} is larger than the number of non-excluded entities of some row "
            f"({n - max_excluded} of {n} with strict={strict})"
        )
    if min_tails == 0 and not allow_short_rows:
        raise ValueError("query_relation holds a relation with no tails in the index: it has no candidate distribution")
    if source is not None and values[3]:
        name = "relation_embeddings" if relation_embeddings is not None else "relation_weights"
        raise ValueError(f"{name} holds NaN or inf")
    if relation_weights is not None and values[4]:
        raise ValueError("relation_weights must be non-negative")
    if relation_weights is not None and values[5]:
        warn_zero_weight_rows(int(values[5]), batch)
    if relation_embeddings is not None and values[-1]:
        raise ValueError(
            "relation_embeddings: the query relation's own embedding is all zeros (norm < 1e-12) in some row: "
            "its cosine similarity to the other relations is undefined"
        )

    return MiningProblem(
        index=index,
        query_entity=query_entity,
        query_relation=query_relation,
        positive=positive,
        weights=weights.contiguous(),
        known_start=known_start,
        known_end=known_end,
        num_negatives=k,
        strict=strict,
        seed=draw_seed() if seed is None else seed,
        temperature_gumbel=options.temperature_gumbel,
        min_support=min_support,
    )

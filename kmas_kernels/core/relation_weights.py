"""Relation weights w (docs/semantics.md §2): which relations' tail sets a row's hard negatives come from.

    sim[b, r'] = cos(Z[b, r_b], Z[b, r'])
    w[b, :]    = softmax(sim[b, :] / temperature) over the `top_relations` most similar relations
                 (r_b always among them; ties broken by the smaller relation id), 0 elsewhere.

Computed in torch once per call and shared by every backend, so the backends only differ in how
they score candidates, never in w.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


ZERO_NORM = 1e-12  # below this a vector has no direction
# which relations a row mixes: all ("mixed", SPEC) or those of its query's direction ("separate")
DIRECTIONS = ("mixed", "separate")


def cosine_to_query(embeddings: torch.Tensor, query_relation: torch.Tensor) -> torch.Tensor:
    """sim (B, R) float32: cos(Z[b, r_b], Z[b, r']) for Z (R, d) shared or (B, R, d) per row.

    A vector with norm < ZERO_NORM (all zeros, in practice) has cosine exactly 0 with every
    other vector. The query relation's own vector must not be one (prepare_problem checks).
    """
    z = embeddings.to(torch.float32)
    norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    z = torch.where(norm < ZERO_NORM, torch.zeros_like(z), z / norm.clamp_min(ZERO_NORM))
    if z.dim() == 2:
        return z[query_relation] @ z.T
    rows = torch.arange(z.shape[0], device=z.device)
    return torch.einsum("bd,brd->br", z[rows, query_relation], z)


def relation_weights_from_similarity(
    sim: torch.Tensor,
    query_relation: torch.Tensor,
    temperature: float,
    top_relations: int | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """w (B, R) float32 from similarities sim (B, R) to each row's query relation.

    ``top_relations`` = m keeps the min(m, R) most similar relations: m >= R keeps all of them (one
    setting can serve graphs with different numbers of relations). ``allowed`` (B, R) bool, e.g.
    the relations of the query's direction: the others get weight 0 and the top m are taken among
    the allowed ones (r_b must be allowed in its own row).
    """
    logits = sim / temperature
    num_relations = sim.shape[1]
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    if top_relations is not None and top_relations < num_relations:
        rank_key = sim.clone() if allowed is None else sim.masked_fill(~allowed, float("-inf"))
        rank_key.scatter_(1, query_relation[:, None], float("inf"))  # r_b always kept
        keep = torch.sort(rank_key, dim=1, descending=True, stable=True).indices[:, :top_relations]
        mask = torch.zeros_like(sim, dtype=torch.bool).scatter_(1, keep, True)
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=1)


def relation_weights_from_embeddings(
    embeddings: torch.Tensor,
    query_relation: torch.Tensor,
    temperature: float,
    top_relations: int | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """w (B, R) float32 from relation embeddings Z: (R, d) shared, or (B, R, d) one set per row."""
    sim = cosine_to_query(embeddings, query_relation)
    return relation_weights_from_similarity(sim, query_relation, temperature, top_relations, allowed)


def one_hot_weights(query_relation: torch.Tensor, num_relations: int) -> torch.Tensor:
    """w (B, R) with all weight on the query relation: negatives from its own tail set (its range)."""
    return F.one_hot(query_relation, num_relations).to(torch.float32)


def same_direction_mask(query_relation: torch.Tensor, num_relations: int, inverse_offset: int | None) -> torch.Tensor:
    """(B, R) bool: relation r' runs in the direction of row b's query relation (both in [0, R0), or both not).

    Forward relations are [0, R0), their inverses [R0, 2 R0): a tail row (forward query) mixes tail
    sets of forward relations only, a head row (inverse query) tail sets of inverses, i.e. head sets.
    """
    if inverse_offset is None or 2 * inverse_offset != num_relations:
        raise ValueError("directions='separate' needs a graph indexed with inverse relations (r + R0 the inverse of r)")
    forward = torch.arange(num_relations, device=query_relation.device) < inverse_offset  # (R,)
    return forward[None, :] == (query_relation < inverse_offset)[:, None]

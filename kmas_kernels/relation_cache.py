"""RelationSimilarityCache: what the drop-in remembers of a graph's relation encoder between steps.

KGFMs such as ULTRA condition relation representations on each row's query relation, so a forward
gives, for every row b, Z_b (R, d) conditioned on q_b. What carries over to later steps is one row
per query relation:

    similarity[q, r] = cos(Z_b[q], Z_b[r])      for the latest forward that had a row with q_b = q
    similarity[inv(q), r] = cos(Z_b[inv(q)], Z_b[r])   (from the same Z_b: head rows query inv(q))
    refreshed_at[q] = the training step whose forward refreshed row q
    seen[q] = row q holds something

A relation never refreshed has no row of its own. With ``fallback="shared"`` (the drop-in's
default) it borrows one: every forward also writes, for each such relation x,

    similarity[x, r] = cos(Z_b[x], Z_b[r])      from the batch's last row b (conditioned on q_b != x)
    borrowed[x] = True

until a forward conditioned on x itself replaces it. With ``fallback="one_hot"`` nothing is
borrowed and such a relation's weights are one-hot (its own tail set): the cache of earlier
versions, which the study found the worst mixture of all (docs/semantics.md, "The drop-in").
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from .core.relation_weights import DIRECTIONS, one_hot_weights, relation_weights_from_similarity, same_direction_mask

_STATE_KEYS = ("similarity", "seen", "refreshed_at", "borrowed")
FALLBACKS = ("shared", "one_hot")


class RelationSimilarityCache:
    """Per-query-relation cosine similarities of one graph (R × R float32), with refresh steps.

    Args:
        num_relations: R, inverses counted.
        inverse: maps relation ids to their inverses (a KGIndex's ``inverse``).
        device: where the cache lives (the graph's device).
    """

    def __init__(self, num_relations: int, inverse: Callable[[torch.Tensor], torch.Tensor], device: Any,
                 fallback: str = "one_hot", inverse_offset: int | None = None) -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.num_relations = num_relations
        self.inverse = inverse
        self.inverse_offset = inverse_offset
        self.fallback = fallback
        self.similarity = torch.zeros(num_relations, num_relations, device=device)  # (R, R) float32
        self.seen = torch.zeros(num_relations, dtype=torch.bool, device=device)  # (R,)
        self.refreshed_at = torch.full((num_relations,), -1, dtype=torch.int64, device=device)  # (R,) step, -1: never
        self.borrowed = torch.zeros(num_relations, dtype=torch.bool, device=device)  # (R,) row from another query's forward

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, query: torch.Tensor, step: int) -> None:
        """Refresh rows q_b and inv(q_b) from representations (B, R, d) conditioned on query (B,).

        Where several rows share a query relation, the last of them wins on every device: each row
        writes the similarities of that last row, so duplicate writes carry equal values. A row
        conditioned on q itself takes precedence over one conditioned on inv(q).
        """
        if embeddings.dim() != 3 or embeddings.shape[1] != self.num_relations:
            raise ValueError(
                f"relation representations must have shape (B, R, d) with R = {self.num_relations}, "
                f"got {tuple(embeddings.shape)}"
            )
        if query.dim() != 1 or query.numel() != embeddings.shape[0] or query.is_floating_point():
            raise ValueError(
                f"query relations must be a (B,) = ({embeddings.shape[0]},) integer tensor, got "
                f"{query.dtype} {tuple(query.shape)}"
            )
        z = F.normalize(embeddings.detach().to(device=self.similarity.device, dtype=torch.float32), dim=-1, eps=1e-12)
        query = query.to(device=z.device, dtype=torch.int64)
        rows = torch.arange(query.numel(), device=z.device)
        last = torch.full((self.num_relations,), -1, dtype=torch.int64, device=z.device)
        last = last.scatter_reduce(0, query, rows, reduce="amax")  # per relation: its last row in the batch
        winner = last[query]  # (B,): the row whose similarities every row with the same q writes
        # inverses first: where relation x is both some row's query and another's inverse, the
        # representation conditioned on x itself is the one kept
        for q in (self.inverse(query), query):
            sim = torch.einsum("bd,brd->br", z[winner, q], z[winner])
            self.similarity.index_copy_(0, q, sim)
            self.seen[q] = True
            self.refreshed_at[q] = step
        if self.fallback == "shared":
            # relations without a row of their own borrow one from the batch's last representation:
            # (R, R) cosines of one Z, R^2 d flops, no host sync
            z_last = z[-1]  # (R, d)
            unseen = ~self.seen
            borrowed = z_last @ z_last.T  # (R, R)
            self.similarity.copy_(torch.where(unseen[:, None], borrowed, self.similarity))
            self.borrowed.copy_(unseen)
            self.refreshed_at.copy_(torch.where(unseen, step, self.refreshed_at))

    def weights(
        self, query_relation: torch.Tensor, temperature: float, top_relations: int | None, directions: str = "mixed"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(w (B, R) float32, from_cache (B,) bool): softmax over cached similarities (own or
        borrowed rows), one-hot where there is neither; ``directions="separate"``: over relations of
        the query's direction only."""
        if directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {directions!r}")
        from_cache = self.seen[query_relation] | self.borrowed[query_relation]
        allowed = None
        if directions == "separate":
            allowed = same_direction_mask(query_relation, self.num_relations, self.inverse_offset)
        cached = relation_weights_from_similarity(self.similarity[query_relation], query_relation, temperature, top_relations,
                                                  allowed=allowed)
        one_hot = one_hot_weights(query_relation, self.num_relations)
        return torch.where(from_cache[:, None], cached, one_hot), from_cache

    def reset(self) -> None:
        self.similarity.zero_()
        self.seen.zero_()
        self.refreshed_at.fill_(-1)
        self.borrowed.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies of the cache (loadable with ``torch.load(weights_only=True)``)."""
        return {key: getattr(self, key).detach().cpu().clone() for key in _STATE_KEYS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore state_dict(); a state without ``borrowed`` (saved before borrowing existed) borrows nothing."""
        self.check_state(state, self.num_relations)
        for key in _STATE_KEYS:
            value = state.get(key)
            if value is None:  # "borrowed" only, check_state allows nothing else to be missing
                getattr(self, key).zero_()
            else:
                getattr(self, key).copy_(value.to(getattr(self, key).device))

    @staticmethod
    def check_state(state: dict[str, torch.Tensor], num_relations: int) -> None:
        """ValueError unless ``state`` is a cache of R = ``num_relations`` relations from state_dict()."""
        r = num_relations
        expected = {"similarity": ((r, r), torch.float32), "seen": ((r,), torch.bool), "refreshed_at": ((r,), torch.int64),
                    "borrowed": ((r,), torch.bool)}
        for key, (shape, dtype) in expected.items():
            value = state.get(key)
            if key == "borrowed" and value is None:  # older states
                continue
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or value.dtype != dtype:
                got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"KMASNegativeSampling state: graph cache {key!r} must be a {shape} {dtype} tensor, got {got}")
        if not torch.isfinite(state["similarity"]).all():
            raise ValueError("KMASNegativeSampling state: graph cache 'similarity' has NaN or inf values")

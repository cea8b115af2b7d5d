"""Uniform negatives by rejection: O(B * k) work and memory, never a B x N mask.

Used twice: for the uniform (random) share of the hybrid sampler — ULTRA's semantics, drawn with
replacement — and to fill hard-negative rows whose support is smaller than k — distinct from each
other and from the hard negatives already chosen (docs/semantics.md §5).

Excluded for row b: the positive a_b (when given) and, when strict, every known answer of
(q_b, r_b). A draw is a Philox counter (slot, row, draw, stream) mapped to [0, N); rejected slots
redraw with the next `draw`; the first accepted draw of a slot stands. After ``MAX_ROUNDS`` the few rows still short (those where almost every
entity is excluded) enumerate their allowed entities exactly, one row at a time.
"""

from __future__ import annotations

import torch

from .index import KGIndex
from .philox import STREAM_UNIFORM, uniform_below

MAX_ROUNDS = 16


def _excluded(index: KGIndex, query_entity, query_relation, positive, candidate, strict: bool) -> torch.Tensor:
    excluded = candidate == positive
    if strict:
        excluded |= index.is_known(query_entity, query_relation, candidate)
    return excluded


def _row_contains(sorted_rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Whether values (P, 1) occur in the matching sorted rows (P, L)."""
    pos = torch.searchsorted(sorted_rows, values).clamp_max(sorted_rows.shape[1] - 1)
    return torch.gather(sorted_rows, 1, pos) == values


def uniform_negatives(
    index: KGIndex,
    query_entity: torch.Tensor,
    query_relation: torch.Tensor,
    positive: torch.Tensor,
    num: int,
    *,
    seed: int,
    strict: bool = True,
    distinct: bool = False,
    partial: torch.Tensor | None = None,
    stream: int = STREAM_UNIFORM,
    row_ids: torch.Tensor | None = None,
    limit: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, num) int64 uniform non-excluded entities.

    query_entity, query_relation, positive: (B,) int64 (positive -1 = none). ``partial`` (B, num)
    keeps its ids >= 0 and only its -1 slots are drawn. With ``distinct``, each row ends up with
    distinct ids (the caller guarantees enough allowed entities exist). ``row_ids`` (B,) are the
    rows' numbers in the random stream (default 0..B-1), so a row's draws do not depend on which
    other rows are sampled with it. ``limit`` (B,) int64: only the -1 slots in columns
    [0, limit[b]) of row b are drawn; the others stay -1.
    """
    n = index.num_entities
    batch = query_entity.numel()
    device = query_entity.device
    if partial is None:
        out = torch.full((batch, num), -1, dtype=torch.int64, device=device)
    else:
        out = partial.clone()
    empty = out < 0
    if limit is not None:
        empty &= torch.arange(num, device=device)[None, :] < limit[:, None]
    pending = torch.nonzero(empty.view(-1)).squeeze(1)  # flat slots still to fill, ascending
    if pending.numel() == 0:
        return out
    if row_ids is None:
        row_ids = torch.arange(batch, device=device)
    for draw in range(MAX_ROUNDS):
        row, slot = pending // num, pending % num
        candidate = uniform_below(seed, row_ids[row], slot, draw, n, stream)
        reject = _excluded(index, query_entity[row], query_relation[row], positive[row], candidate, strict)
        if distinct:
            reject |= _taken(out, row, candidate, n)
            reject |= _repeated_within(row, candidate, n)
        out.view(-1)[pending[~reject]] = candidate[~reject]
        pending = pending[reject]
        if pending.numel() == 0:
            return out
    short_rows = torch.unique(pending // num).tolist()
    for b in short_rows:  # rare: rows where rejection keeps failing
        width = num if limit is None else int(limit[b])
        _fill_row_exactly(index, query_entity, query_relation, positive, out, b, int(row_ids[b]), seed, stream, strict, distinct, width)
    return out


def _taken(out: torch.Tensor, row: torch.Tensor, candidate: torch.Tensor, n: int) -> torch.Tensor:
    """Whether each candidate already stands in its row of ``out``."""
    taken = torch.where(out < 0, torch.full_like(out, n), out)  # n never matches an id
    taken = torch.sort(taken, dim=1).values
    return _row_contains(taken[row], candidate[:, None]).squeeze(1)


def _repeated_within(row: torch.Tensor, candidate: torch.Tensor, n: int) -> torch.Tensor:
    """Drawn twice in one row this round: keep the earliest slot (pending is in slot order)."""
    key = row * n + candidate
    order = torch.sort(key, stable=True).indices
    sorted_key = key[order]
    repeat = torch.zeros_like(candidate, dtype=torch.bool)
    repeat[order[1:]] = sorted_key[1:] == sorted_key[:-1]
    return repeat


def _fill_row_exactly(index, query_entity, query_relation, positive, out, b, row_id, seed, stream, strict, distinct, width) -> None:
    """Fill row b's empty slots in columns [0, width) by enumerating its allowed entities (O(N), this row only)."""
    n = index.num_entities
    device = out.device
    allowed = torch.ones(n, dtype=torch.bool, device=device)
    if positive[b] >= 0:
        allowed[positive[b]] = False
    if strict:
        start, end = index.known_slices(query_entity[b : b + 1], query_relation[b : b + 1])
        allowed[index.known_answers[start:end].to(torch.int64)] = False
    empty = torch.nonzero(out[b, :width] < 0).squeeze(1)
    if distinct:
        allowed[out[b][out[b] >= 0]] = False
    candidates = torch.nonzero(allowed).squeeze(1)
    if distinct and candidates.numel() < empty.numel():
        raise RuntimeError(f"row {b} has {candidates.numel()} allowed entities for {empty.numel()} distinct draws")
    if candidates.numel() == 0:
        raise RuntimeError(f"row {b} has no allowed entity")
    row = torch.full_like(empty, row_id)
    if distinct:  # a uniform permutation: sort the allowed entities by a random key
        keys = uniform_below(seed, torch.full_like(candidates, row_id), candidates, MAX_ROUNDS, 1 << 52, stream)
        chosen = candidates[torch.sort(keys, stable=True).indices[: empty.numel()]]
    else:
        chosen = candidates[uniform_below(seed, row, empty, MAX_ROUNDS, candidates.numel(), stream)]
    out[b, empty] = chosen

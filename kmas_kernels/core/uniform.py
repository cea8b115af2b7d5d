"""Uniform negatives by rejection: O(B * k) work and memory, never a B x N mask.

Used twice: for the uniform (random) share of the hybrid sampler — ULTRA's semantics, drawn with
replacement — and to fill hard-negative rows whose support is smaller than k — distinct from each
other and from the hard negatives already chosen (docs/semantics.md §5).

Excluded for row b: the positive a_b (when given) and, when strict, every known answer of
(q_b, r_b). A draw is a Philox counter (slot, row, draw, stream) mapped to [0, N); rejected slots
redraw with the next `draw`; the first accepted draw of a slot stands (without ``distinct`` the
draws of a slot are tested in groups, :func:`draw_groups`: same result, fewer passes). After ``MAX_ROUNDS`` the
rows still short (those where almost every entity is excluded) enumerate their allowed entities
exactly: all such rows at once, as an (S, N) allowed mask, in chunks of at most ``EXACT_CHUNK``
mask entries.
"""

from __future__ import annotations

import torch

from .index import KGIndex
from .philox import STREAM_UNIFORM, uniform_below

MAX_ROUNDS = 16
EXACT_CHUNK = 1 << 22  # (rows x entities) per chunk of the exact fill: 4 Mi mask entries


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
    if distinct:  # one draw per round: a slot's acceptance depends on what other slots took before
        groups = [(draw, draw + 1) for draw in range(MAX_ROUNDS)]
    else:  # acceptance is per slot, so several draws of a pending slot can be tested in one pass
        groups = draw_groups(MAX_ROUNDS)
    for first_draw, end_draw in groups:
        row, slot = pending // num, pending % num
        width = end_draw - first_draw
        draws = torch.arange(first_draw, end_draw, device=device)[None, :].expand(pending.numel(), width)
        candidate = uniform_below(seed, row_ids[row][:, None].expand_as(draws), slot[:, None].expand_as(draws), draws, n, stream)
        reject = _excluded(index, query_entity[row][:, None], query_relation[row][:, None], positive[row][:, None], candidate,
                           strict)
        if distinct:
            reject[:, 0] |= _taken(out, row, candidate[:, 0], n)
            reject[:, 0] |= _repeated_within(row, candidate[:, 0], n)
        accepted = ~reject
        done = accepted.any(1)
        first_ok = accepted.to(torch.int8).argmax(1)  # the first accepted draw of the group stands
        out.view(-1)[pending[done]] = candidate[done, first_ok[done]]
        pending = pending[~done]
        if pending.numel() == 0:
            return out
    short_rows = torch.unique(pending // num)  # rare: rows where rejection keeps failing
    widths = torch.full_like(short_rows, num) if limit is None else limit[short_rows]
    _fill_rows_exactly(index, query_entity, query_relation, positive, out, short_rows, row_ids[short_rows], widths,
                       seed, stream, strict, distinct)
    return out


def draw_groups(max_rounds: int) -> list[tuple[int, int]]:
    """Draws [first, end) tested per pass: 0, 1, 2-3, 4-7, ... (5 passes for 16 draws).

    Doubling keeps the work within 2x of testing one draw per pass (a slot accepted at draw d has
    paid for at most 2d + 2 draws) while the number of passes, each a few dozen small torch ops,
    grows only with log(max_rounds).
    """
    groups, first = [], 0
    while first < max_rounds:
        end = min(max_rounds, first + max(1, first))
        groups.append((first, end))
        first = end
    return groups


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


def _fill_rows_exactly(index, query_entity, query_relation, positive, out, rows, row_ids, widths, seed, stream, strict,
                       distinct) -> None:
    """Fill the empty slots in columns [0, widths[i]) of rows[i] by enumerating their allowed entities.

    rows, row_ids, widths: (S,) int64. Builds an (S, N) allowed mask per chunk of rows (O(S * N)),
    so it is only for the few rows rejection could not fill. Draw for slot c of row b: with
    ``distinct``, row b's allowed entities ordered by the key ``uniform_below(seed, row_id, e,
    MAX_ROUNDS, 2**52)`` (ties by id), the i-th empty slot taking the i-th; otherwise the
    ``uniform_below(seed, row_id, c, MAX_ROUNDS, count_b)``-th allowed entity in id order.
    """
    n = index.num_entities
    step = max(1, EXACT_CHUNK // n)
    for first in range(0, rows.numel(), step):
        _fill_chunk_exactly(index, query_entity, query_relation, positive, out, rows[first:first + step],
                            row_ids[first:first + step], widths[first:first + step], seed, stream, strict, distinct)


def _fill_chunk_exactly(index, query_entity, query_relation, positive, out, rows, row_ids, widths, seed, stream, strict,
                        distinct) -> None:
    n, num = index.num_entities, out.shape[1]
    device = out.device
    s = rows.numel()
    local = torch.arange(s, device=device)
    allowed = torch.ones(s, n, dtype=torch.bool, device=device)
    pos = positive[rows]
    has_positive = pos >= 0
    allowed[local[has_positive], pos[has_positive]] = False
    if strict:  # every known answer of each row's query, gathered from its contiguous slice
        start, end = index.known_slices(query_entity[rows], query_relation[rows])
        lengths = end - start
        owner = torch.repeat_interleave(local, lengths)
        within = torch.arange(owner.numel(), device=device) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        allowed[owner, index.known_answers[start[owner] + within].to(torch.int64)] = False
    current = out[rows]  # (S, num)
    empty = (current < 0) & (torch.arange(num, device=device)[None, :] < widths[:, None])
    if distinct:
        taken_row, taken_col = torch.nonzero(current >= 0, as_tuple=True)
        allowed[taken_row, current[taken_row, taken_col]] = False
    count = allowed.sum(1)
    need = empty.sum(1)
    short = (count < need) if distinct else ((count == 0) & (need > 0))
    if bool(short.any()):
        i = int(torch.nonzero(short)[0])
        if int(count[i]) == 0:
            raise RuntimeError(f"row {int(rows[i])} has no allowed entity")
        raise RuntimeError(f"row {int(rows[i])} has {int(count[i])} allowed entities for {int(need[i])} distinct draws")
    slot_row, slot_col = torch.nonzero(empty, as_tuple=True)  # row-major: each row's empty slots in column order
    if slot_row.numel() == 0:
        return
    if distinct:  # a uniform permutation of each row's allowed entities: sort by a random key, excluded ones last
        entities = torch.arange(n, device=device)
        keys = uniform_below(seed, row_ids[:, None].expand(s, n), entities[None, :].expand(s, n), MAX_ROUNDS, 1 << 52, stream)
        keys = torch.where(allowed, keys, torch.full_like(keys, 1 << 53))
        order = torch.sort(keys, dim=1, stable=True).indices
        rank = (torch.cumsum(empty, 1) - 1)[slot_row, slot_col]
        chosen = order[slot_row, rank]
    else:  # the j-th allowed entity of the row, j uniform in [0, count)
        j = uniform_below(seed, row_ids[slot_row], slot_col, MAX_ROUNDS, count[slot_row], stream)
        running = torch.cumsum(allowed, 1)[slot_row]  # (P, N) non-decreasing
        chosen = torch.searchsorted(running, (j + 1)[:, None]).squeeze(1)
    out[rows[slot_row], slot_col] = chosen

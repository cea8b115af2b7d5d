"""The exact fill of core/uniform.py (rows rejection could not fill), all short rows at once,
against a row-at-a-time enumeration written next to it: the same integers, draw for draw."""

import pytest
import torch

from kmas_kernels.core import uniform
from kmas_kernels.core.index import KGIndex
from kmas_kernels.core.philox import STREAM_UNIFORM, uniform_below


def fill_row_reference(index, q, r, a, out, b, row_id, seed, stream, strict, distinct, width, draw):
    """Row b alone: list its allowed entities, then draw from them (the documented rule)."""
    n = index.num_entities
    allowed = torch.ones(n, dtype=torch.bool)
    if a[b] >= 0:
        allowed[a[b]] = False
    if strict:
        for e in range(n):
            if index.is_known(q[b : b + 1], r[b : b + 1], torch.tensor([e])).item():
                allowed[e] = False
    empty = torch.nonzero(out[b, :width] < 0).squeeze(1)
    if distinct:
        allowed[out[b][out[b] >= 0]] = False
    candidates = torch.nonzero(allowed).squeeze(1)
    if distinct:
        keys = uniform_below(seed, torch.full_like(candidates, row_id), candidates, draw, 1 << 52, stream)
        chosen = candidates[torch.sort(keys, stable=True).indices[: empty.numel()]]
    else:
        chosen = candidates[uniform_below(seed, torch.full_like(empty, row_id), empty, draw, candidates.numel(), stream)]
    out[b, empty] = chosen


def dense_graph(seed, n, relations, density):
    g = torch.Generator().manual_seed(seed)
    h, r, t = torch.meshgrid(torch.arange(n), torch.arange(relations), torch.arange(n), indexing="ij")
    triples = torch.stack([h.reshape(-1), r.reshape(-1), t.reshape(-1)], 1)
    keep = torch.rand(triples.shape[0], generator=g) < density
    return KGIndex.from_triples(triples[keep], num_entities=n, num_relations=relations), g


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("distinct", [True, False])
def test_batched_exact_fill_matches_rows_one_at_a_time(monkeypatch, seed, strict, distinct):
    n, relations, batch, num = 12, 2, 9, 5
    index, g = dense_graph(seed, n, relations, density=0.5)
    q = torch.randint(0, n, (batch,), generator=g)
    r = torch.randint(0, index.num_relations, (batch,), generator=g)
    a = torch.randint(0, n, (batch,), generator=g)
    a[0] = -1  # a row without a positive
    row_ids = torch.randperm(100, generator=g)[:batch]
    limit = torch.randint(0, num + 1, (batch,), generator=g)
    partial = torch.full((batch, num), -1, dtype=torch.int64)
    partial[:, 0] = torch.randint(0, n, (batch,), generator=g)  # a standing id in column 0 of every row
    # Keep only rows that can be filled (distinct needs enough allowed entities).
    rows_ok = []
    for b in range(batch):
        allowed = set(range(n)) - ({int(a[b])} if a[b] >= 0 else set())
        if strict:
            allowed -= {e for e in range(n) if index.is_known(q[b : b + 1], r[b : b + 1], torch.tensor([e])).item()}
        if distinct:
            allowed -= {int(partial[b, 0])}
        need = int(((partial[b] < 0) & (torch.arange(num) < limit[b])).sum())
        rows_ok.append(len(allowed) >= need if distinct else len(allowed) > 0 or need == 0)
    keep = torch.tensor(rows_ok)
    q, r, a, row_ids, limit, partial = q[keep], r[keep], a[keep], row_ids[keep], limit[keep], partial[keep]
    monkeypatch.setattr(uniform, "MAX_ROUNDS", 0)  # every row goes to the exact fill
    monkeypatch.setattr(uniform, "EXACT_CHUNK", 3 * n)  # several chunks of 3 rows
    got = uniform.uniform_negatives(index, q, r, a, num, seed=seed + 5, strict=strict, distinct=distinct,
                                    partial=partial, row_ids=row_ids, limit=limit)
    expected = partial.clone()
    for b in range(q.numel()):
        fill_row_reference(index, q, r, a, expected, b, int(row_ids[b]), seed + 5, STREAM_UNIFORM, strict, distinct,
                           int(limit[b]), draw=0)
    assert torch.equal(got, expected)
    filled = (partial < 0) & (torch.arange(num)[None, :] < limit[:, None])
    assert bool((got[filled] >= 0).all()) and bool((got[~filled] == partial[~filled]).all())


def test_exact_fill_names_a_row_without_allowed_entities(monkeypatch):
    # (0, r0, ·) knows 1 and 2; with positive 0 nothing is left for row 1 (row 0 keeps entity 0).
    index = KGIndex.from_triples(torch.tensor([[0, 0, 1], [0, 0, 2]]), num_entities=3, num_relations=1)
    monkeypatch.setattr(uniform, "MAX_ROUNDS", 0)
    q, r = torch.tensor([0, 0]), torch.tensor([0, 0])
    with pytest.raises(RuntimeError, match="row 1 has no allowed entity"):
        uniform.uniform_negatives(index, q, r, torch.tensor([-1, 0]), 2, seed=0, strict=True)


def test_tensor_bound_draws_equal_int_bound_draws():
    row = torch.arange(50).repeat_interleave(4)
    slot = torch.arange(4).repeat(50)
    bounds = torch.tensor([1, 2, 7, 135, 10**6, 2**40]).repeat(34)[: row.numel()]
    got = uniform_below(3, row, slot, 2, bounds, STREAM_UNIFORM)
    for bound in bounds.unique().tolist():
        at = bounds == bound
        assert torch.equal(got[at], uniform_below(3, row[at], slot[at], 2, int(bound), STREAM_UNIFORM))
    assert bool((got >= 0).all()) and bool((got < bounds).all())


def uniform_reference(index, q, r, a, num, seed, strict, distinct):
    """One draw per slot per round, in slot order, as core/uniform.py's docstring defines; then the exact fill."""
    n = index.num_entities
    out = torch.full((q.numel(), num), -1, dtype=torch.int64)
    row_ids = torch.arange(q.numel())
    for draw in range(uniform.MAX_ROUNDS):
        taken_now = [set(out[b][out[b] >= 0].tolist()) for b in range(q.numel())]
        round_draws = {}
        for b in range(q.numel()):
            for c in range(num):
                if out[b, c] >= 0:
                    continue
                e = int(uniform_below(seed, torch.tensor([b]), torch.tensor([c]), draw, n, STREAM_UNIFORM))
                bad = e == int(a[b]) or (strict and index.is_known(q[b : b + 1], r[b : b + 1], torch.tensor([e])).item())
                if distinct:
                    bad = bad or e in taken_now[b] or e in round_draws.setdefault(b, set())
                    round_draws.setdefault(b, set()).add(e)  # a repeat within the round loses to the earlier slot
                if not bad:
                    out[b, c] = e
    for b in range(q.numel()):
        if bool((out[b] < 0).any()):
            fill_row_reference(index, q, r, a, out, b, int(row_ids[b]), seed, STREAM_UNIFORM, strict, distinct, num,
                               draw=uniform.MAX_ROUNDS)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("distinct", [True, False])
@pytest.mark.parametrize("density", [0.3, 0.85])
def test_grouped_draws_equal_one_draw_per_round(seed, distinct, density):
    n, relations, batch, num = 12, 2, 8, 3
    index, g = dense_graph(100 + seed, n, relations, density=density)
    q = torch.randint(0, n, (batch,), generator=g)
    r = torch.randint(0, index.num_relations, (batch,), generator=g)
    a = torch.randint(0, n, (batch,), generator=g)
    known = [{e for e in range(n) if index.is_known(q[b : b + 1], r[b : b + 1], torch.tensor([e])).item()} for b in range(batch)]
    fits = torch.tensor([len(set(range(n)) - known[b] - {int(a[b])}) >= (num if distinct else 1) for b in range(batch)])
    q, r, a = q[fits], r[fits], a[fits]
    got = uniform.uniform_negatives(index, q, r, a, num, seed=seed, strict=True, distinct=distinct)
    assert torch.equal(got, uniform_reference(index, q, r, a, num, seed, True, distinct))


@pytest.mark.parametrize("max_rounds", [0, 1, 2, 3, 5, 16, 17])
def test_draw_groups_cover_every_draw_once(max_rounds):
    groups = uniform.draw_groups(max_rounds)
    assert [d for lo, hi in groups for d in range(lo, hi)] == list(range(max_rounds))
    assert len(groups) <= 2 + max(0, max_rounds - 1).bit_length()

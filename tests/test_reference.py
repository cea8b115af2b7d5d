"""The reference backend against the brute-force statement of docs/semantics.md §2–§5."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from brute_force import edges_with_inverses, excluded, probability, relation_weights
from conftest import queries_from_edges, random_triples
from kmas_kernels import KGIndex, hard_negatives
from kmas_kernels.core.problem import prepare_problem
from kmas_kernels.core.reference import candidate_probability


def _edges(triples, num_relations):
    return edges_with_inverses([tuple(t) for t in triples.tolist()], num_relations)


def test_probability_matches_brute_force(small_graph):
    triples, index = small_graph
    q, r, a = queries_from_edges(index, 6, seed=1)
    w = torch.rand(6, index.num_relations, dtype=torch.float64).float()
    problem = prepare_problem(index, q, r, relation_weights=w, num_negatives=3, positive=a, seed=0)
    p = candidate_probability(problem)
    edges = _edges(triples, 4)
    for b in range(6):
        expected = torch.tensor(probability(edges, w[b].tolist(), index.num_entities), dtype=torch.float32)
        torch.testing.assert_close(p[b], expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("top_relations", [None, 1, 3])
def test_relation_weights_match_brute_force(small_graph, per_row, top_relations):
    _, index = small_graph
    q, r, a = queries_from_edges(index, 5, seed=2)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, index.num_relations, 6, generator=g) if per_row else torch.randn(index.num_relations, 6, generator=g)
    problem = prepare_problem(
        index, q, r, relation_embeddings=z, num_negatives=2, positive=a, temperature=0.3, top_relations=top_relations, seed=0
    )
    for b in range(5):
        rows = (z[b] if per_row else z).tolist()
        expected = torch.tensor(relation_weights(rows, int(r[b]), 0.3, top_relations), dtype=torch.float32)
        torch.testing.assert_close(problem.weights[b], expected, rtol=1e-5, atol=1e-7)
        assert problem.weights[b, r[b]] > 0  # the query relation is always kept


def test_shared_embeddings_equal_repeated_per_row(small_graph):
    _, index = small_graph
    q, r, a = queries_from_edges(index, 8, seed=4)
    z = torch.randn(index.num_relations, 5)
    shared = hard_negatives(index, q, r, relation_embeddings=z, num_negatives=5, positive=a, seed=9, backend="reference")
    per_row = hard_negatives(index, q, r, relation_embeddings=z.expand(8, -1, -1), num_negatives=5, positive=a, seed=9, backend="reference")
    assert torch.equal(shared, per_row)


graphs = st.tuples(
    st.integers(min_value=8, max_value=40),  # entities
    st.integers(min_value=1, max_value=4),  # original relations
    st.integers(min_value=1, max_value=80),  # triples
    st.integers(min_value=0, max_value=2**31),  # seed
)


@settings(max_examples=60, deadline=None)
@given(graphs, st.integers(min_value=1, max_value=6), st.booleans(), st.sampled_from([0.0, 1.0]), st.booleans())
def test_invariants(graph, k, strict, temperature_gumbel, with_embeddings):
    n, r0, e, seed = graph
    triples = random_triples(n, r0, e, seed)
    index = KGIndex.from_triples(triples, num_entities=n, num_relations=r0)
    q, r, a = queries_from_edges(index, 7, seed)
    edges = _edges(triples, r0)
    worst = max(len(excluded(edges, int(q[b]), int(r[b]), int(a[b]), strict)) for b in range(7))
    k = min(k, n - worst)
    assume(k >= 1)
    z = torch.randn(index.num_relations, 4, generator=torch.Generator().manual_seed(seed)) if with_embeddings else None
    out = hard_negatives(
        index, q, r, relation_embeddings=z, num_negatives=k, positive=a, strict=strict,
        temperature_gumbel=temperature_gumbel, seed=seed, backend="reference",
    )
    assert out.shape == (7, k) and out.dtype == torch.int64
    assert int(out.min()) >= 0 and int(out.max()) < n
    for b in range(7):
        row = out[b].tolist()
        assert len(set(row)) == k, "negatives of a row must be distinct"
        assert not set(row) & excluded(edges, int(q[b]), int(r[b]), int(a[b]), strict)
        assert int(a[b]) not in row


@settings(max_examples=40, deadline=None)
@given(graphs, st.integers(min_value=1, max_value=10), st.booleans())
def test_deterministic_mode_is_top_k_of_p(graph, k, strict):
    n, r0, e, seed = graph
    triples = random_triples(n, r0, e, seed)
    index = KGIndex.from_triples(triples, num_entities=n, num_relations=r0)
    q, r, a = queries_from_edges(index, 5, seed + 1)
    w = torch.rand(5, index.num_relations, generator=torch.Generator().manual_seed(seed))
    edges = _edges(triples, r0)
    worst = max(len(excluded(edges, int(q[b]), int(r[b]), int(a[b]), strict)) for b in range(5))
    k = min(k, n - worst)
    assume(k >= 1)
    out = hard_negatives(index, q, r, relation_weights=w, num_negatives=k, positive=a, strict=strict,
                         temperature_gumbel=0.0, seed=seed, backend="reference")
    for b in range(5):
        p = probability(edges, w[b].tolist(), n)
        drop = excluded(edges, int(q[b]), int(r[b]), int(a[b]), strict)
        support = sorted((e for e in range(n) if p[e] > 0 and e not in drop), key=lambda e: (-p[e], e))
        head = out[b, : min(k, len(support))].tolist()
        # float32 may merge nearly equal P values: compare the P values in order, then the set
        assert [p[e] for e in head] == pytest.approx([p[e] for e in support[: len(head)]], rel=1e-6)
        if len(support) >= k:
            kth = p[support[k - 1]]
            strictly_above = {e for e in support if p[e] > kth * (1 + 1e-6)}
            assert strictly_above <= set(head)
        else:  # fill: the rest are allowed entities outside the support
            rest = out[b, len(support):].tolist()
            assert not set(rest) & (set(support) | drop)


def test_gumbel_top1_follows_p():
    """Top-1 over many independent rows (each its own noise) is distributed as P (chi-square)."""
    triples = random_triples(25, 3, 60, seed=5)
    index = KGIndex.from_triples(triples, num_entities=25, num_relations=3)
    q, r, a = queries_from_edges(index, 1, seed=6)
    rows = 6000
    w = torch.rand(1, index.num_relations, generator=torch.Generator().manual_seed(7)).expand(rows, -1).contiguous()
    edges = _edges(triples, 3)
    p = probability(edges, w[0].tolist(), 25)
    drop = excluded(edges, int(q[0]), int(r[0]), int(a[0]), True)
    support = [e for e in range(25) if p[e] > 0 and e not in drop]
    assert len(support) >= 4
    for seed in (11, 12):
        top1 = hard_negatives(index, q.expand(rows), r.expand(rows), relation_weights=w, num_negatives=1,
                              positive=a.expand(rows), seed=seed, backend="reference")[:, 0]
        counts = torch.bincount(top1, minlength=25)
        assert counts[[e for e in range(25) if e not in support]].sum() == 0
        total = sum(p[e] for e in support)
        expected = [rows * p[e] / total for e in support]
        result = stats.chisquare([int(counts[e]) for e in support], expected)
        assert result.pvalue > 1e-4, result


def test_top2_inclusion_matches_sampling_without_replacement():
    """Pairs from Gumbel-top-2 follow successive sampling without replacement (Kool et al. 2019)."""
    probs = [0.5, 0.3, 0.15, 0.05]
    # one relation per entity, weights = probs: P(e) = probs[e]
    triples = torch.tensor([[4, e, e] for e in range(4)])
    index = KGIndex.from_triples(triples, num_entities=5, num_relations=4)
    rows = 6000
    w = torch.zeros(rows, 8)
    w[:, :4] = torch.tensor(probs)
    out = hard_negatives(index, torch.full((rows,), 4), torch.zeros(rows, dtype=torch.long), relation_weights=w,
                         num_negatives=2, strict=False, seed=3, backend="reference")
    observed, expected = [], []
    for i in range(4):
        for j in range(4):
            if i != j:
                observed.append(int(((out[:, 0] == i) & (out[:, 1] == j)).sum()))
                expected.append(rows * probs[i] * probs[j] / (1 - probs[i]))
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_short_rows_are_filled_with_distinct_allowed_entities():
    # relation 0 has tails {1, 2}; the query (0, 0) knows answer 1, so its support is {2}
    triples = torch.tensor([[0, 0, 1], [3, 0, 2], [4, 1, 5]])
    index = KGIndex.from_triples(triples, num_entities=10, num_relations=2)
    out = hard_negatives(index, torch.tensor([0, 0]), torch.tensor([0, 0]), num_negatives=6,
                         positive=torch.tensor([1, 1]), seed=1, backend="reference")
    for row in out.tolist():
        assert row[0] == 2  # the only hard candidate comes first
        assert len(set(row)) == 6 and 1 not in row


def test_row_with_every_candidate_excluded_is_all_fill():
    # relation 0's only tail is the known answer 1: nothing hard is left, all fill
    triples = torch.tensor([[0, 0, 1], [2, 1, 3]])
    index = KGIndex.from_triples(triples, num_entities=8, num_relations=2)
    out = hard_negatives(index, torch.tensor([0]), torch.tensor([0]), num_negatives=7, positive=torch.tensor([1]), seed=2)
    assert sorted(out[0].tolist()) == [0, 2, 3, 4, 5, 6, 7]


def test_seed_reproducibility(small_graph):
    _, index = small_graph
    q, r, a = queries_from_edges(index, 6, seed=8)
    z = torch.randn(index.num_relations, 4)
    run = lambda seed: hard_negatives(index, q, r, relation_embeddings=z, num_negatives=8, positive=a, seed=seed)  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    torch.manual_seed(0)
    first = hard_negatives(index, q, r, relation_embeddings=z, num_negatives=8, positive=a)
    torch.manual_seed(0)
    assert torch.equal(first, hard_negatives(index, q, r, relation_embeddings=z, num_negatives=8, positive=a))


def test_non_strict_may_return_known_answers_but_never_the_positive():
    # (0, 0) has answers 1..5; non-strict only drops the positive 1
    triples = torch.tensor([[0, 0, t] for t in range(1, 6)])
    index = KGIndex.from_triples(triples, num_entities=6, num_relations=1)
    out = hard_negatives(index, torch.tensor([0]), torch.tensor([0]), num_negatives=4, positive=torch.tensor([1]),
                         strict=False, temperature_gumbel=0.0, seed=0)
    assert sorted(out[0].tolist()) == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="num_negatives"):
        hard_negatives(index, torch.tensor([0]), torch.tensor([0]), num_negatives=4, positive=torch.tensor([1]), strict=True)


def test_head_corruption_goes_through_the_inverse_relation(small_graph):
    triples, index = small_graph
    h, r, t = triples[:10].unbind(1)
    out = hard_negatives(index, t, index.inverse(r), num_negatives=4, positive=h, seed=0)
    known_heads = {(int(tt), int(rr)): set() for tt, rr in zip(t, r)}
    for hh, rr, tt in triples.tolist():
        if (tt, rr) in known_heads:
            known_heads[(tt, rr)].add(hh)
    for b in range(10):
        assert not set(out[b].tolist()) & known_heads[(int(t[b]), int(r[b]))]


def test_reference_keys_have_no_nan_and_gumbel_temperature_scales(small_graph):
    _, index = small_graph
    q, r, a = queries_from_edges(index, 3, seed=9)
    from kmas_kernels.core.reference import candidate_keys

    base = prepare_problem(index, q, r, num_negatives=2, positive=a, seed=4, temperature_gumbel=0.0)
    keys = candidate_keys(base)
    assert not torch.isnan(keys).any()
    finite = torch.isfinite(keys)
    noisy = candidate_keys(prepare_problem(index, q, r, num_negatives=2, positive=a, seed=4, temperature_gumbel=2.0))
    assert torch.equal(torch.isfinite(noisy), finite)
    assert not math.isclose(float((noisy - keys)[finite].abs().sum()), 0.0)


def test_reference_does_not_depend_on_the_thread_count():
    """P (and so every key) is summed in the same order whatever torch's intra-op thread count."""
    index = KGIndex.from_triples(random_triples(5000, 6, 40000, seed=3), num_entities=5000, num_relations=6)
    q, r, a = queries_from_edges(index, 12, seed=4)
    w = torch.rand(12, index.num_relations, generator=torch.Generator().manual_seed(5))
    problem = prepare_problem(index, q, r, relation_weights=w, num_negatives=20, positive=a, seed=6)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            results.append((candidate_probability(problem), hard_negatives(index, q, r, relation_weights=w, num_negatives=20,
                                                                           positive=a, seed=6, backend="reference")))
    finally:
        torch.set_num_threads(before)
    for p, negatives in results[1:]:
        assert torch.equal(p, results[0][0]) and torch.equal(negatives, results[0][1])

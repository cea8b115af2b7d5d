"""KGIndex against sets built by hand from the triples."""

import types

import pytest
import torch

from brute_force import edges_with_inverses, tails_by_relation
from conftest import random_triples
from kmas_kernels import KGIndex


def test_arrays_match_brute_force():
    triples = random_triples(30, 3, 90, seed=1)
    triples = torch.cat([triples, triples[:10]])  # duplicates are merged
    index = KGIndex.from_triples(triples, num_entities=30, num_relations=3)
    edges = edges_with_inverses([tuple(t) for t in triples.tolist()], 3)
    tails = tails_by_relation(edges)
    assert index.num_relations == 6 and index.inverse_offset == 3 and index.num_edges == len(edges)
    for r in range(6):
        assert index.tails(r).tolist() == sorted(tails.get(r, ()))
        expected_inv = 1.0 / len(tails[r]) if tails.get(r) else 0.0
        assert float(index.rel_inv_count[r]) == pytest.approx(expected_inv)
    for e in range(30):
        rels = index.ent_rels[index.ent_ptr[e] : index.ent_ptr[e + 1]].tolist()
        assert rels == sorted(r for r, members in tails.items() if e in members)
    q = torch.tensor([h for h, _, _ in sorted(edges)])
    r = torch.tensor([rr for _, rr, _ in sorted(edges)])
    start, end = index.known_slices(q, r)
    for b in range(len(q)):
        answers = index.known_answers[start[b] : end[b]].tolist()
        assert answers == sorted(e for qq, rr, e in edges if qq == int(q[b]) and rr == int(r[b]))
    candidates = torch.arange(30).expand(len(q), -1)
    known = index.is_known(q[:, None], r[:, None], candidates)
    for b in range(0, len(q), 7):
        assert set(torch.nonzero(known[b]).flatten().tolist()) == {
            e for qq, rr, e in edges if qq == int(q[b]) and rr == int(r[b])
        }


def test_from_data_equals_from_triples_with_inverses():
    triples = random_triples(20, 2, 50, seed=2)
    h, r, t = triples.unbind(1)
    data = types.SimpleNamespace(
        edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
        edge_type=torch.cat([r, r + 2]),
        num_nodes=20,
        num_relations=4,
    )
    a = KGIndex.from_data(data)
    b = KGIndex.from_triples(triples, num_entities=20, num_relations=2)
    assert a.inverse_offset == b.inverse_offset == 2
    for name in ("rel_ptr", "rel_tails", "rel_inv_count", "ent_ptr", "ent_rels", "known_keys", "known_answers"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_without_inverses_and_sizes():
    index = KGIndex.from_triples([[0, 0, 1], [1, 1, 2]], add_inverse=False)
    assert (index.num_entities, index.num_relations, index.num_edges, index.inverse_offset) == (3, 2, 2, None)
    with pytest.raises(ValueError, match="inverse"):
        index.inverse(torch.tensor([0]))


def test_to_moves_every_tensor():
    index = KGIndex.from_triples([[0, 0, 1]]).to("meta")
    assert all(t.device.type == "meta" for t in (index.rel_ptr, index.ent_rels, index.known_keys))


@pytest.mark.parametrize(
    "triples, kwargs, error, match",
    [
        ([[0, 0]], {}, ValueError, r"\(E, 3\)"),
        ([], {}, ValueError, "shape|empty"),
        ([[0.5, 0, 1]], {}, TypeError, "integer"),
        ([[0, 0, 5]], {"num_entities": 3}, ValueError, "tail"),
        ([[-1, 0, 1]], {}, ValueError, "head"),
        ([[0, 2, 1]], {"num_relations": 2}, ValueError, "relation"),
        ([[0, 0, 1]], {"num_entities": 0}, ValueError, "num_entities"),
        ([[0, 0, 1]], {"num_entities": 10**7, "num_relations": 10**6}, ValueError, "too large"),
    ],
)
def test_bad_triples(triples, kwargs, error, match):
    with pytest.raises(error, match=match):
        KGIndex.from_triples(triples, **kwargs)


def test_bad_data_object():
    with pytest.raises(TypeError, match="edge_index"):
        KGIndex.from_data(object())
    data = types.SimpleNamespace(edge_index=torch.zeros(3, 2, dtype=torch.long), edge_type=torch.zeros(2, dtype=torch.long), num_nodes=2)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        KGIndex.from_data(data)


def test_is_tail_matches_the_tail_sets():
    triples = random_triples(20, 2, 40, seed=3)
    index = KGIndex.from_triples(triples, num_entities=20, num_relations=2)
    relation = torch.arange(index.num_relations)[:, None]
    got = index.is_tail(relation, torch.arange(20)[None, :])
    for r in range(index.num_relations):
        assert set(torch.nonzero(got[r]).flatten().tolist()) == set(index.tails(r).tolist())

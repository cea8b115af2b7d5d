"""KMASSampler and the ULTRA drop-in never run out of candidates (docs/semantics.md, "The hybrid sampler").

ULTRA's strict sampler draws with replacement from each row's non-excluded entities, so it only
fails where a row has none at all (and then only at the end of a batch half). Ours caps each row's
hard share at A_b, the number of entities the row may return, fills the rest uniformly with
replacement, and relaxes (with a warning) the rows that have no candidate at all: it never fails.
Checked on tiny graphs, where every cap and every relaxation is reached, for every ratio and k up
to 4 N.
"""

import types
import warnings

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from brute_force import edges_with_inverses, excluded
from kmas_kernels import KGIndex, KMASSampler, hard_negatives
from kmas_kernels.core.philox import mix_seed
from kmas_kernels.core.problem import prepare_problem
from kmas_kernels.core.reference import candidate_keys
from kmas_kernels.ultra import KMASNegativeSampling


@st.composite
def tiny_cases(draw):
    n = draw(st.integers(1, 7))
    r0 = draw(st.integers(1, 3))
    triples = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, r0 - 1), st.integers(0, n - 1)), min_size=1, max_size=3 * n))
    batch = draw(st.integers(1, 5))
    k = draw(st.integers(1, 4 * n))
    ratio = draw(st.floats(0.0, 1.0))
    strict = draw(st.booleans())
    weights = draw(st.sampled_from(["one_hot", "embeddings", "weights"]))
    seed = draw(st.integers(0, 2**40))
    return n, r0, triples, batch, k, ratio, strict, weights, seed


def _queries(index, triples, batch, seed):
    """Rows from known edges (tails and, through the inverse, heads) and arbitrary (q, r, a) rows."""
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor(triples)
    pick = torch.randint(len(triples), (batch,), generator=g)
    h, r, a = t[pick].unbind(1)
    flip = torch.rand(batch, generator=g) < 0.5
    q = torch.where(flip, a, h)
    positive = torch.where(flip, h, a)
    rel = torch.where(flip, index.inverse(r), r)
    arbitrary = torch.rand(batch, generator=g) < 0.3  # may query a relation with no tails
    q = torch.where(arbitrary, torch.randint(index.num_entities, (batch,), generator=g), q)
    rel = torch.where(arbitrary, torch.randint(index.num_relations, (batch,), generator=g), rel)
    return q, rel, positive


@settings(max_examples=120, deadline=None)
@given(tiny_cases())
def test_sampler_never_runs_out(case):
    n, r0, triples, batch, k, ratio, strict, weights, seed = case
    index = KGIndex.from_triples(torch.tensor(triples), num_entities=n, num_relations=r0)
    q, r, a = _queries(index, triples, batch, seed)
    g = torch.Generator().manual_seed(seed)
    kwargs = {}
    if weights == "embeddings":
        kwargs["relation_embeddings"] = torch.randn(index.num_relations, 4, generator=g)
    elif weights == "weights":
        kwargs["relation_weights"] = torch.rand(batch, index.num_relations, generator=g)
    sampler = KMASSampler(index, k, ratio, strict=strict, seed=seed)
    num_hard = sampler.num_hard()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sampler.sample(q, r, a, **kwargs)
    assert out.shape == (batch, k) and out.dtype == torch.int64
    assert int(out.min()) >= 0 and int(out.max()) < n

    edges = edges_with_inverses(triples, r0)
    problem = prepare_problem(index, q, r, num_negatives=1, positive=a, strict=strict, seed=0, allow_short_rows=True, **kwargs)
    support_keys = candidate_keys(problem)  # finite: P > 0 and not excluded
    relaxed = 0
    for b in range(batch):
        drop = excluded(edges, int(q[b]), int(r[b]), int(a[b]), strict)
        allowed = [e for e in range(n) if e not in drop]
        row = out[b].tolist()
        if not allowed:  # no candidate at all: relaxed to every entity but the positive
            relaxed += 1
            assert n == 1 or int(a[b]) not in row
            continue
        assert not set(row) & drop, "an excluded entity"
        cap = min(num_hard, len(allowed))
        hard = row[:cap]
        assert len(set(hard)) == cap, "hard columns are distinct"
        support = set(torch.nonzero(torch.isfinite(support_keys[b])).flatten().tolist())
        if cap <= len(support):
            assert set(hard) <= support, "hard columns come from P's support first"
        else:
            assert set(hard[: len(support)]) == support
        if cap == len(allowed):
            assert set(hard) == set(allowed), "a row with fewer candidates than its hard share gives all of them"
    assert (relaxed > 0) == any("no non-excluded entity" in str(w.message) for w in caught)


def test_hard_columns_are_hard_negatives_where_every_row_has_room():
    triples = [(h, h % 3, (h * 7 + 1) % 40) for h in range(40)] + [(h, 1, (h + 5) % 40) for h in range(0, 40, 2)]
    index = KGIndex.from_triples(torch.tensor(triples), num_entities=40, num_relations=3)
    q, r, a = _queries(index, triples, 6, seed=3)
    z = torch.randn(index.num_relations, 5, generator=torch.Generator().manual_seed(1))
    sampler = KMASSampler(index, 20, 0.5, seed=11)
    out = sampler.sample(q, r, a, relation_embeddings=z)
    expected = hard_negatives(index, q, r, relation_embeddings=z, num_negatives=10, positive=a, seed=mix_seed(11, 0),
                              temperature=sampler.temperature, top_relations=sampler.top_relations)
    assert torch.equal(out[:, :10], expected)


def test_readme_crash_case_a_row_with_fewer_candidates_than_the_hard_share():
    """The case kmas-train hit (47 hard of 512 on 60 entities, a row with 45 candidates)."""
    triples = [(0, 0, t) for t in range(1, 16)] + [(h, 1, (h + 1) % 60) for h in range(60)]
    index = KGIndex.from_triples(torch.tensor(triples), num_entities=60, num_relations=2)
    q, r, a = torch.tensor([0, 5]), torch.tensor([0, 1]), torch.tensor([1, 6])
    sampler = KMASSampler(index, 512, 0.1, seed=0)  # 51 hard; row 0 may return 60 - 15 = 45 entities
    out = sampler.sample(q, r, a)
    assert set(out[0, :45].tolist()) == set(range(16, 60)) | {0}
    assert not set(out[0].tolist()) & set(range(1, 16))
    assert len(set(out[1, :51].tolist())) == 51


@settings(max_examples=40, deadline=None)
@given(tiny_cases())
def test_ultra_drop_in_never_fails_where_ultra_does_not(case):
    """ULTRA's sampler fails only where a row has no candidate; the drop-in never does."""
    n, r0, triples, batch, k, ratio, strict, _, seed = case
    t = torch.tensor(triples)
    h, r, tail = t.unbind(1)
    data = types.SimpleNamespace(
        edge_index=torch.stack([torch.cat([h, tail]), torch.cat([tail, h])]),
        edge_type=torch.cat([r, r + r0]),
        num_nodes=n,
        num_relations=2 * r0,
    )
    model = torch.nn.Module()
    model.relation_model = torch.nn.Identity()
    pick = torch.randint(len(triples), (batch,), generator=torch.Generator().manual_seed(seed))
    ultra_batch = torch.stack([h[pick], tail[pick], r[pick]], dim=1)
    sampler = KMASNegativeSampling(model, data, total_steps=10, schedule=ratio, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = sampler(data, ultra_batch, k, strict=strict)
    assert out.shape == (batch, 1 + k, 3)
    assert torch.equal(out[:, 0], ultra_batch)
    assert int(out[..., :2].max()) < n

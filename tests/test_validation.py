"""docs/semantics.md, "Bad input": every bad input raises a ValueError/TypeError naming the argument."""

import math

import pytest
import torch

from conftest import queries_from_edges
from kmas_kernels import HardRatioSchedule, KGIndex, KMASSampler, hard_negatives


@pytest.fixture
def setup(small_graph):
    _, index = small_graph
    q, r, a = queries_from_edges(index, 4, seed=0)
    return index, q, r, a


def call(index, q, r, a, **overrides):
    kwargs = dict(num_negatives=3, positive=a, seed=0)
    kwargs.update(overrides)
    return hard_negatives(index, q, r, **kwargs)


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        # ids out of range
        (lambda i, q, r, a: dict(q=q + i.num_entities), ValueError, "query_entity"),
        (lambda i, q, r, a: dict(r=r - 100), ValueError, "query_relation"),
        (lambda i, q, r, a: dict(a=a * 0 + i.num_entities), ValueError, "positive"),
        # k larger than the non-excluded entities
        (lambda i, q, r, a: dict(num_negatives=i.num_entities), ValueError, "num_negatives"),
        (lambda i, q, r, a: dict(num_negatives=0), ValueError, "num_negatives"),
        (lambda i, q, r, a: dict(num_negatives=2.0), TypeError, "num_negatives"),
        # NaN / inf embeddings and weights
        (lambda i, q, r, a: dict(relation_embeddings=torch.full((i.num_relations, 4), math.nan)), ValueError, "relation_embeddings"),
        (lambda i, q, r, a: dict(relation_weights=torch.full((4, i.num_relations), math.inf)), ValueError, "relation_weights"),
        (lambda i, q, r, a: dict(relation_weights=-torch.ones(4, i.num_relations)), ValueError, "non-negative"),
        # the query relation's own embedding has no direction: cosine undefined
        (lambda i, q, r, a: dict(relation_embeddings=torch.zeros(i.num_relations, 4)), ValueError, "all zeros"),
        (lambda i, q, r, a: dict(relation_embeddings=torch.ones(4, i.num_relations, 3).index_put_((torch.tensor([2]), r[2:3]), torch.zeros(3))),
         ValueError, "all zeros"),
        # shapes and dtypes
        (lambda i, q, r, a: dict(relation_embeddings=torch.randn(i.num_relations + 1, 4)), ValueError, "relation_embeddings"),
        (lambda i, q, r, a: dict(relation_embeddings=torch.randn(3, i.num_relations, 4)), ValueError, "relation_embeddings"),
        (lambda i, q, r, a: dict(relation_embeddings=torch.ones(i.num_relations, 4, dtype=torch.long)), TypeError, "relation_embeddings"),
        (lambda i, q, r, a: dict(relation_weights=torch.ones(4, 2)), ValueError, "relation_weights"),
        (lambda i, q, r, a: dict(relation_weights=torch.ones(4, i.num_relations), relation_embeddings=torch.ones(i.num_relations, 2)), ValueError, "not both"),
        (lambda i, q, r, a: dict(q=q.float()), TypeError, "query_entity"),
        (lambda i, q, r, a: dict(q=q[:, None]), ValueError, "query_entity"),
        (lambda i, q, r, a: dict(r=r[:2]), ValueError, "query_relation"),
        # empty batch
        (lambda i, q, r, a: dict(q=q[:0], r=r[:0], a=a[:0]), ValueError, "empty"),
        # mismatched devices
        (lambda i, q, r, a: dict(q=q.to("meta")), ValueError, "query_entity is on meta"),
        (lambda i, q, r, a: dict(relation_embeddings=torch.ones(i.num_relations, 2, device="meta")), ValueError, "relation_embeddings is on meta"),
        # scalar options
        (lambda i, q, r, a: dict(temperature=0.0), ValueError, "temperature"),
        (lambda i, q, r, a: dict(temperature_gumbel=-1.0), ValueError, "temperature_gumbel"),
        (lambda i, q, r, a: dict(top_relations=0), ValueError, "top_relations"),
        (lambda i, q, r, a: dict(seed=-1), ValueError, "seed"),
        (lambda i, q, r, a: dict(seed=2**63), ValueError, "seed"),
        (lambda i, q, r, a: dict(seed="1"), TypeError, "seed"),
        (lambda i, q, r, a: dict(strict=1), TypeError, "strict"),
        (lambda i, q, r, a: dict(backend="gpu"), ValueError, "backend"),
    ],
)
def test_bad_input(setup, mutate, error, match):
    index, q, r, a = setup
    change = mutate(index, q, r, a)
    q, r, a = change.pop("q", q), change.pop("r", r), change.pop("a", a)
    with pytest.raises(error, match=match):
        call(index, q, r, a, **change)


def test_relation_without_tails():
    # relation 1 exists (num_relations=2) but has no edges, nor does its inverse 3
    index = KGIndex.from_triples([[0, 0, 1]], num_entities=4, num_relations=2)
    with pytest.raises(ValueError, match="no tails"):
        hard_negatives(index, torch.tensor([0]), torch.tensor([1]), num_negatives=1)


def test_index_must_be_an_index():
    with pytest.raises(TypeError, match="index"):
        hard_negatives("graph", torch.tensor([0]), torch.tensor([0]), num_negatives=1)


def test_unavailable_backend_is_a_clear_error(setup):
    index, q, r, a = setup
    from kmas_kernels import available_backends

    missing = [name for name, reason in available_backends().items() if reason is not None]
    if not missing:
        pytest.skip("every backend is available here")
    with pytest.raises(ValueError, match=f"backend='{missing[0]}' is not available"):
        call(index, q, r, a, backend=missing[0])


def test_sampler_and_schedule_bad_input(setup):
    index, q, r, a = setup
    with pytest.raises(TypeError, match="schedule"):
        KMASSampler(index, 4, schedule="fast")
    with pytest.raises(ValueError, match="schedule"):
        KMASSampler(index, 4, schedule=1.5)
    with pytest.raises(ValueError, match="peak_step"):
        HardRatioSchedule(total_steps=10, warmup_steps=5, peak_step=2)
    with pytest.raises(ValueError, match="max_ratio"):
        HardRatioSchedule(total_steps=10, max_ratio=2.0)
    with pytest.raises(ValueError, match="total_steps"):
        HardRatioSchedule(total_steps=0)
    sampler = KMASSampler(index, 4, schedule=lambda step: 3.0, seed=0)
    with pytest.raises(ValueError, match="ratio"):
        sampler.sample(q, r, a)
    sampler = KMASSampler(index, 4, schedule=0.0, seed=0)
    with pytest.raises(ValueError, match="query_entity"):
        sampler.sample(q + index.num_entities, r, a)


def test_sampler_validates_every_input_whatever_the_hard_share(setup):
    """During warm-up (no hard column) bad embeddings and weights are still errors."""
    index, q, r, a = setup
    warmup = KMASSampler(index, 4, schedule=0.0, seed=0)
    bad = [
        dict(relation_embeddings=torch.full((index.num_relations, 4), math.nan)),
        dict(relation_embeddings=torch.zeros(index.num_relations, 4)),
        dict(relation_weights=-torch.ones(4, index.num_relations)),
        dict(relation_weights=torch.ones(4, 1)),
    ]
    for kwargs in bad:
        with pytest.raises(ValueError, match="relation_"):
            warmup.sample(q, r, a, **kwargs)
    assert warmup.step == 0, "a failed call does not advance the step"
    with pytest.raises(ValueError, match="temperature"):
        KMASSampler(index, 4, schedule=0.0, temperature=0.0)
    with pytest.raises(ValueError, match="top_relations"):
        KMASSampler(index, 4, schedule=0.0, top_relations=0)
    with pytest.raises(ValueError, match="temperature_gumbel"):
        KMASSampler(index, 4, schedule=0.0, temperature_gumbel=-1.0)


def test_inverse_checks_its_range(setup):
    index = setup[0]
    big = index.num_relations
    assert index.inverse(0) == index.inverse_offset
    assert torch.equal(index.inverse(torch.tensor([0, big - 1])), torch.tensor([index.inverse_offset, index.inverse_offset - 1]))
    for bad in (big, big + 3, -1):
        with pytest.raises(ValueError, match="relation"):
            index.inverse(bad)
        with pytest.raises(ValueError, match="relation"):
            index.inverse(torch.tensor([0, bad]))
    with pytest.raises(TypeError, match="relation"):
        index.inverse(torch.tensor([0.0]))
    with pytest.raises(TypeError, match="relation"):
        index.inverse("1")


def test_top_relations_at_least_r_keeps_every_relation(setup):
    """Documented meaning (docs/semantics.md, "Relation weights"): min(m, R) relations."""
    index, q, r, a = setup
    z = torch.randn(index.num_relations, 4, generator=torch.Generator().manual_seed(0))
    every = call(index, q, r, a, relation_embeddings=z)
    for m in (index.num_relations, index.num_relations + 5):
        assert torch.equal(call(index, q, r, a, relation_embeddings=z, top_relations=m), every)


def test_zero_vector_of_another_relation_has_cosine_zero(setup):
    from kmas_kernels.core.relation_weights import cosine_to_query

    index, q, r, a = setup
    z = torch.randn(index.num_relations, 4, generator=torch.Generator().manual_seed(1))
    other = (int(r[0]) + 1) % index.num_relations
    z[other] = 0.0
    sim = cosine_to_query(z, r)
    assert (sim[r != other, other] == 0).all()
    call(index, q[r != other], r[r != other], a[r != other], relation_embeddings=z)  # accepted


def test_all_zero_relation_weights_rows_warn_once_and_draw_the_same(setup, monkeypatch):
    """An all-zero relation_weights row is not an error: it warns once (naming the argument and the
    number of such rows), its columns are the fill (uniform, non-excluded, distinct), and the draws
    are those of the same call without the warning."""
    import warnings

    from kmas_kernels.core import problem as problem_module

    index, q, r, a = setup
    w = torch.rand(4, index.num_relations, generator=torch.Generator().manual_seed(3))
    w[1] = 0
    w[3] = 0
    monkeypatch.setattr(problem_module, "_ZERO_ROWS_WARNED", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = call(index, q, r, a, relation_weights=w, seed=7)
        second = call(index, q, r, a, relation_weights=w, seed=7)
        KMASSampler(index, 3, schedule=1.0, seed=0).sample(q, r, a, relation_weights=w)
    zero_row_warnings = [c for c in caught if "all zero" in str(c.message)]
    assert len(zero_row_warnings) == 1, [str(c.message) for c in caught]
    message = str(zero_row_warnings[0].message)
    assert zero_row_warnings[0].category is RuntimeWarning
    assert "relation_weights" in message and "2 of 4 rows" in message
    assert zero_row_warnings[0].filename == __file__  # points at the caller's line
    assert torch.equal(first, second)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setattr(problem_module, "_ZERO_ROWS_WARNED", False)
        assert torch.equal(call(index, q, r, a, relation_weights=w, seed=7), first)
    for row in (1, 3):  # fill only: distinct, never the positive nor a known answer (strict)
        values = first[row]
        assert values.unique().numel() == values.numel() and int(a[row]) not in values.tolist()
        k = values.numel()
        assert not index.is_known(q[row].expand(k), r[row].expand(k), values).any()
    # rows with weight anywhere: no warning, however small the weights
    monkeypatch.setattr(problem_module, "_ZERO_ROWS_WARNED", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(index, q, r, a, relation_weights=torch.full((4, index.num_relations), 1e-45))
        call(index, q, r, a, relation_weights=w + 1e-3)

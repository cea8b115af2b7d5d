"""SPEC §8: every bad input raises a ValueError/TypeError naming the argument."""

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

"""KMASNegativeSampler (kmas_kernels.pykeen): PyKEEN's layout, strictness, schedule, pipeline.

Skips (with a message) when PyKEEN is not installed; ``pip install ".[pykeen]"`` brings it.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pykeen = pytest.importorskip("pykeen", reason="PyKEEN is not installed (pip install '.[pykeen]')")

from pykeen.models import DistMult  # noqa: E402
from pykeen.sampling import BasicNegativeSampler, negative_sampler_resolver  # noqa: E402
from pykeen.training.callbacks import callback_resolver  # noqa: E402
from pykeen.triples import CoreTriplesFactory  # noqa: E402

from conftest import random_triples  # noqa: E402
from kmas_kernels import hard_negatives  # noqa: E402
from kmas_kernels.core.philox import mix_seed  # noqa: E402
from kmas_kernels.pykeen import KMASNegativeSampler, KMASTrainingCallback, relation_matrix  # noqa: E402

N, R0 = 30, 4


@pytest.fixture(scope="module")
def toy():
    triples = torch.unique(random_triples(N, R0, 150, seed=3), dim=0)
    factory = CoreTriplesFactory.create(mapped_triples=triples, num_entities=N, num_relations=R0)
    model = DistMult(triples_factory=factory, embedding_dim=8, random_seed=0)
    return triples, model


def make(toy, **options):
    triples, model = toy
    options = {"num_negs_per_pos": 4, "model": model, "schedule": 0.5, "seed": 0, **options}
    return KMASNegativeSampler(mapped_triples=triples, num_entities=N, num_relations=R0, **options)


def known_set(triples):
    return {tuple(t) for t in triples.tolist()}


@pytest.mark.parametrize("batch, k, scheme", [(7, 4, None), (5, 3, None), (6, 1, None), (4, 5, ("tail",)), (3, 2, ("head",)), (5, 3, ("tail", "head"))])
def test_layout_matches_basic_sampler(toy, batch, k, scheme):
    """Same shape, same corrupted column per slot as PyKEEN's BasicNegativeSampler; r never changes."""
    triples, _ = toy
    positives = triples[:batch]
    ours = make(toy, num_negs_per_pos=k, corruption_scheme=scheme).corrupt_batch(positives)
    basic = BasicNegativeSampler(
        mapped_triples=triples, num_entities=N, num_relations=R0, num_negs_per_pos=k, corruption_scheme=scheme
    ).corrupt_batch(positives)
    assert ours.shape == basic.shape == (batch, k, 3)
    assert ours.dtype == torch.int64
    for column in (0, 2):  # the slots whose head (tail) differs from the positive's are the basic sampler's
        assert torch.equal(ours[..., column] != positives[:, None, column], basic[..., column] != positives[:, None, column])
    assert torch.equal(ours[..., 1], positives[:, None, 1].expand(batch, k))


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 12),
    k=st.integers(1, 6),
    ratio=st.floats(0.0, 1.0),
    scheme=st.sampled_from([("head", "tail"), ("tail", "head"), ("tail",), ("head",)]),
    seed=st.integers(0, 2**63 - 1),
    offset=st.integers(0, 100),
)
def test_layout_and_strictness_invariants(toy, batch, k, ratio, scheme, seed, offset):
    """Every slot corrupts exactly the side PyKEEN's split gives it, never into a training triple."""
    triples, _ = toy
    positives = triples[offset : offset + batch]
    batch = positives.shape[0]
    out = make(toy, num_negs_per_pos=k, schedule=ratio, corruption_scheme=scheme, seed=seed).corrupt_batch(positives)
    assert out.shape == (batch, k, 3)
    flat, repeated = out.reshape(-1, 3), positives.repeat_interleave(k, dim=0)
    part = math.ceil(batch * k / len(scheme))
    column = torch.tensor([{"head": 0, "tail": 2}[scheme[p // part]] for p in range(batch * k)])
    other = 2 - column
    slots = torch.arange(batch * k)
    assert torch.equal(flat[slots, other], repeated[slots, other])  # the other entity and r are kept
    assert torch.equal(flat[:, 1], repeated[:, 1])
    assert (flat[slots, column] != repeated[slots, column]).all()
    known = known_set(triples)
    assert not any(tuple(t) in known for t in flat.tolist())


def test_batch_dims_are_kept(toy):
    triples, _ = toy
    out = make(toy).corrupt_batch(triples[:6].view(2, 3, 3))
    assert out.shape == (2, 3, 4, 3)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_strict_negatives_are_never_training_triples(toy, ratio):
    triples, _ = toy
    known = known_set(triples)
    sampler = make(toy, schedule=ratio, num_negs_per_pos=6)
    for step in range(3):
        negatives, mask = sampler.sample(triples[step * 40 : (step + 1) * 40])
        assert mask is None
        assert not any(tuple(t) in known for t in negatives.reshape(-1, 3).tolist())


def test_not_strict_excludes_only_the_positive(toy):
    triples, _ = toy
    positives = triples[:40]
    negatives = make(toy, strict=False, schedule=1.0, num_negs_per_pos=6).corrupt_batch(positives)
    assert not (negatives == positives[:, None, :]).all(-1).any()


def test_hard_columns_are_hard_negatives_of_direction_kept_weights(toy):
    """ratio 1, deterministic: row = hard_negatives with w from the forward relations' cosines."""
    triples, model = toy
    k, positives = 3, triples[:10]
    sampler = make(toy, schedule=1.0, num_negs_per_pos=k, temperature_gumbel=0.0)
    out = sampler.corrupt_batch(positives)
    z = relation_matrix(model)
    sims = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(z, dim=1).T
    h, r, t = positives.unbind(1)
    forward = torch.softmax(sims[r] / 0.1, dim=1)  # (B, R0)
    zeros = torch.zeros_like(forward)
    # PyKEEN's split: the first ceil(B·k/2) slots corrupt heads (positives 0..4), the rest tails
    heads = hard_negatives(
        sampler.index, t, r + R0, relation_weights=torch.cat([zeros, forward], 1), num_negatives=k,
        positive=h, temperature_gumbel=0.0, seed=mix_seed(sampler.seed, 0),
    )
    assert torch.equal(out[:5, :, 0], heads[:5])
    tails = hard_negatives(
        sampler.index, h, r, relation_weights=torch.cat([forward, zeros], 1), num_negatives=k,
        positive=t, temperature_gumbel=0.0, seed=mix_seed(sampler.seed, 0),
    )
    assert torch.equal(out[5:, :, 2], tails[5:])


def test_hard_share_is_rounded_stochastically(toy):
    sampler = make(toy, schedule=0.3, num_negs_per_pos=1)
    counts = [sampler.num_hard(step) for step in range(2000)]
    assert set(counts) == {0, 1}
    assert abs(sum(counts) / 2000 - 0.3) < 0.04
    sampler = make(toy, schedule=0.5, num_negs_per_pos=4)
    assert {sampler.num_hard(step) for step in range(50)} == {2}


def test_steps_and_refresh(toy):
    triples, model = toy
    calls = []
    handle = model.relation_representations[0].register_forward_hook(lambda *args: calls.append(1))
    try:
        sampler = make(toy, refresh_every=3)
        for _ in range(7):
            sampler.corrupt_batch(triples[:8])
    finally:
        handle.remove()
    assert sampler.step == 7
    assert len(calls) == 1 + 3  # bind_model checks the shape once; refreshed at steps 0, 3, 6


def test_a_row_without_strict_negatives_is_masked():
    """(0, 0, e) for every e: (0, 0, ?) has no strict negative; PyKEEN's mask drops those slots."""
    full = torch.stack([torch.zeros(10, dtype=torch.int64), torch.zeros(10, dtype=torch.int64), torch.arange(10)], 1)
    triples = torch.cat([full, torch.tensor([[1, 1, 2], [3, 1, 4], [5, 1, 6]])])
    factory = CoreTriplesFactory.create(mapped_triples=triples, num_entities=10, num_relations=2)
    model = DistMult(triples_factory=factory, embedding_dim=4, random_seed=0)
    sampler = KMASNegativeSampler(
        mapped_triples=triples, num_negs_per_pos=2, model=model, schedule=1.0, seed=0, corruption_scheme=("tail",)
    )
    negatives, mask = sampler.sample(triples[[0, 10, 11]])
    assert mask.tolist() == [[False, False], [True, True], [True, True]]
    assert (negatives[0, :, 2] != 0).all()  # still never the positive
    known = known_set(triples)
    assert not any(tuple(t) in known for t in negatives[1:].reshape(-1, 3).tolist())


def test_bad_input(toy):
    triples, model = toy
    with pytest.raises(ValueError, match="total_steps"):
        KMASNegativeSampler(mapped_triples=triples, model=model)
    with pytest.raises(ValueError, match="corruption_scheme"):
        make(toy, corruption_scheme=("head", "relation", "tail"))
    with pytest.raises(ValueError, match="refresh_every"):
        make(toy, refresh_every=0)
    with pytest.raises(ValueError, match="temperature"):
        make(toy, temperature=0.0)
    with pytest.raises(TypeError, match="top_relations"):
        make(toy, top_relations=1.5)
    with pytest.raises(ValueError, match="no model"):
        make(toy, model=None).corrupt_batch(triples[:4])
    with pytest.raises(ValueError, match="relation representations"):
        KMASNegativeSampler(mapped_triples=triples, num_relations=R0 + 1, model=model, schedule=0.5)
    with pytest.raises(TypeError, match="relation representations"):
        make(toy, model=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="schedule returned"):
        make(toy, schedule=lambda step: 1.5).corrupt_batch(triples[:4])


def test_a_dataloader_worker_is_refused(toy):
    triples, _ = toy
    sampler = make(toy)

    class Batches(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, item):
            return sampler.corrupt_batch(triples[:4])

    loader = torch.utils.data.DataLoader(Batches(), batch_size=None, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(ValueError, match="num_workers=0"):
        next(iter(loader))


def test_registered_by_name():
    assert negative_sampler_resolver.lookup("kmas") is KMASNegativeSampler
    assert callback_resolver.lookup("kmas") is KMASTrainingCallback


@pytest.fixture(scope="module")
def nations():
    from pykeen.datasets import Nations

    return Nations()


def _train(dataset, epochs, **options):
    from pykeen.pipeline import pipeline

    training = dict(num_epochs=epochs, batch_size=256, use_tqdm=False, **options.pop("training_kwargs", {}))
    return pipeline(
        dataset=dataset,
        model="DistMult",
        model_kwargs=dict(embedding_dim=16),
        training_loop="sLCWA",
        training_kwargs=training,
        training_loop_kwargs=dict(automatic_memory_optimization=False),
        evaluation_kwargs=dict(use_tqdm=False, batch_size=256),
        random_seed=0,
        **options,
    )


def test_pipeline_with_an_instance_end_to_end(nations):
    """pipeline(dataset=Nations, model="DistMult", negative_sampler=<instance>) trains with that instance."""
    epochs = 3
    steps = epochs * math.ceil(nations.training.num_triples / 256)
    sampler = KMASNegativeSampler(mapped_triples=nations.training.mapped_triples, num_negs_per_pos=4, total_steps=steps, seed=0)
    result = _train(nations, epochs, negative_sampler=sampler, training_kwargs=dict(callbacks=sampler.callback()))
    assert sampler.model is result.model  # the pipeline's own model, bound by the callback
    assert sampler.step == steps  # every batch went through this instance
    assert len(result.losses) == epochs and all(math.isfinite(loss) for loss in result.losses)
    mrr = result.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank")
    assert 0.0 < mrr <= 1.0


def test_pipeline_by_name_end_to_end(nations):
    result = _train(
        nations,
        2,
        negative_sampler="kmas",
        negative_sampler_kwargs=dict(num_negs_per_pos=2, schedule=0.5, seed=1),
        training_kwargs=dict(callbacks="kmas"),
    )
    assert all(math.isfinite(loss) for loss in result.losses)


def test_pipeline_instance_without_callback_says_why(nations):
    sampler = KMASNegativeSampler(mapped_triples=nations.training.mapped_triples, total_steps=10)
    with pytest.raises(ValueError, match="callback"):
        _train(nations, 1, negative_sampler=sampler)

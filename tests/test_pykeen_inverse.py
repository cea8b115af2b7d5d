"""KMASNegativeSampler with PyKEEN's inverse triples, caching models, state, and short rows (Nations).

Every setup checks, over all drawn batches, that no strict negative is a training triple (with
PyKEEN's inverse triples: the triples the sLCWA loop itself trains on).
"""

import math
import warnings

import pytest
import torch

pytest.importorskip("pykeen", reason="PyKEEN is not installed (pip install '.[pykeen]')")

from pykeen.datasets import Nations  # noqa: E402
from pykeen.models import DistMult  # noqa: E402
from pykeen.pipeline import pipeline  # noqa: E402

from kmas_kernels.pykeen import KMASNegativeSampler  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def nations_inverse():
    return Nations(create_inverse_triples=True)


@pytest.fixture
def drawn(monkeypatch):
    """Every (negatives, mask) any KMASNegativeSampler returns during the test."""
    batches = []
    original = KMASNegativeSampler.sample

    def sample(self, positive_batch):
        negatives, mask = original(self, positive_batch)
        batches.append((negatives.clone(), None if mask is None else mask.clone()))
        return negatives, mask

    monkeypatch.setattr(KMASNegativeSampler, "sample", sample)
    return batches


def assert_strict(batches, factory):
    known = {tuple(t) for t in factory._add_inverse_triples_if_necessary(factory.mapped_triples).tolist()}
    assert batches
    for negatives, mask in batches:
        flat = negatives.reshape(-1, 3)
        keep = torch.ones(flat.shape[0], dtype=torch.bool) if mask is None else mask.reshape(-1)
        bad = [t for t, k in zip(flat.tolist(), keep.tolist()) if k and tuple(t) in known]
        assert not bad, f"{len(bad)} strict negatives are training triples, e.g. {bad[:3]}"


def _train(dataset, model, model_kwargs, epochs=1, **options):
    return pipeline(
        dataset=dataset, model=model, model_kwargs=model_kwargs, training_loop="sLCWA",
        training_kwargs=dict(num_epochs=epochs, batch_size=256, use_tqdm=False, **options.pop("training_kwargs", {})),
        training_loop_kwargs=dict(automatic_memory_optimization=False),
        evaluation_kwargs=dict(use_tqdm=False, batch_size=256), random_seed=0, **options,
    )


@pytest.mark.parametrize("model, model_kwargs", [
    ("CompGCN", dict(embedding_dim=16)),
    ("NodePiece", dict(embedding_dim=16, num_tokens=4)),
    ("DistMult", dict(embedding_dim=16)),
])
def test_caching_models_train_by_name_with_inverse_triples(nations_inverse, drawn, model, model_kwargs):
    """Reading the relation representations leaves no graph-less cache (CompGCN crashed so)."""
    result = _train(
        nations_inverse, model, model_kwargs, epochs=2, negative_sampler="kmas",
        negative_sampler_kwargs=dict(num_negs_per_pos=4, schedule=1.0, seed=0, refresh_every=2),
    )
    assert all(math.isfinite(loss) for loss in result.losses)
    assert_strict(drawn, nations_inverse.training)


@pytest.mark.parametrize("num_relations", [None, "factory"])
def test_instance_form_with_inverse_triples(nations_inverse, drawn, num_relations):
    """tf.mapped_triples (no inverses) + a model with 2R relations: PyKEEN's ids, strict."""
    tf = nations_inverse.training
    model = DistMult(triples_factory=tf, embedding_dim=16, random_seed=0)
    extra = {} if num_relations is None else {"num_relations": tf.num_relations}
    sampler = KMASNegativeSampler(mapped_triples=tf.mapped_triples, model=model, num_negs_per_pos=4, schedule=0.5, seed=0, **extra)
    assert sampler.num_relations == tf.num_relations == 2 * tf.real_num_relations
    result = _train(nations_inverse, model, None, negative_sampler=sampler, training_kwargs=dict(callbacks=sampler.callback()))
    assert all(math.isfinite(loss) for loss in result.losses)
    assert sampler.step == math.ceil(2 * tf.num_triples / 256)
    assert_strict(drawn, tf)


def test_mismatched_relation_ids_raise(nations_inverse):
    tf = nations_inverse.training
    model = DistMult(triples_factory=tf, embedding_dim=8, random_seed=0)
    with pytest.raises(ValueError, match="relation representations"):
        KMASNegativeSampler(mapped_triples=tf.mapped_triples, num_relations=tf.num_relations + 2, model=model, schedule=0.5)
    # triples in the model's 2R ids but missing their inverse triples
    half = tf._add_inverse_triples_if_necessary(tf.mapped_triples)[: tf.num_triples + 10]
    with pytest.raises(ValueError, match="inverse triple"):
        KMASNegativeSampler(mapped_triples=half, num_relations=tf.num_relations, model=model, schedule=0.5)


def test_short_rows_warn_once_and_are_counted(drawn):
    ds = Nations()
    model = DistMult(triples_factory=ds.training, embedding_dim=8, random_seed=0)
    sampler = KMASNegativeSampler(mapped_triples=ds.training.mapped_triples, model=model, num_negs_per_pos=14, schedule=1.0, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for start in (0, 64):
            sampler.sample(ds.training.mapped_triples[start : start + 64])
    short = [w for w in caught if "uniform negatives instead" in str(w.message)]
    assert len(short) == 1
    stats = sampler.stats()
    assert stats["rows"] == 128 and 0 < stats["short_rows"] <= 128
    assert stats["hard_replaced"] == 14 * stats["short_rows"]
    assert_strict(drawn, ds.training)


def test_state_dict_resumes_the_same_draws():
    ds = Nations()
    model = DistMult(triples_factory=ds.training, embedding_dim=8, random_seed=0)
    make = lambda: KMASNegativeSampler(mapped_triples=ds.training.mapped_triples, model=model, num_negs_per_pos=4, total_steps=8, refresh_every=3)  # noqa: E731
    batch = ds.training.mapped_triples[:50]
    first = make()
    first.corrupt_batch(batch)
    state = first.state_dict()
    with torch.no_grad():  # the cache must come from the state, not from a new read
        model.relation_representations[0]._embeddings.weight.add_(1.0)
    second = make()
    second.load_state_dict(state)
    assert second.seed == first.seed and second.step == 1
    for _ in range(2):  # steps 1 and 2 use the relations read at step 0
        assert torch.equal(first.corrupt_batch(batch), second.corrupt_batch(batch))
    with pytest.raises(ValueError, match="state"):
        second.load_state_dict({"step": 3})

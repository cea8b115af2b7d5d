"""The drop-in inside the real training code of ULTRA, TRIX, MOTIF and SEMMA.

For each model: its checkout (``ULTRA_PATH``, ``TRIX_PATH``, ``MOTIF_PATH``, ``SEMMA_PATH``), the
model built by its own classes, its own ``train_and_validate`` from its training script, unmodified,
with ``tasks.negative_sampling`` replaced by ``kmas_kernels.ultra.install`` — 2 training steps then
its validation, on GraIL fb237_v1 (MOTIF: WN18RR_v1, for memory; ../shared/data). Skipped with a message without a checkout or
the dependencies. SEMMA's text embeddings are deterministic stand-ins (the sentence model cannot be
downloaded here; see kmas_bench.kgfm). Checked on every training step, observed by a forward
pre-hook on the model: ULTRA's layout (against the original ``negative_sampling`` on the same
positives), strictness (no negative is a known triple), the schedule's hard share (the first
num_hard columns are exactly ``hard_negatives`` under the weights the cache held), and after
training that ``stats()["cached_relations"] > 0`` (the cache came from that model's own encoder).
"""

import importlib.util
import os
import warnings

import pytest
import torch

from conftest import shared_dir
from kmas_kernels import hard_negatives
from kmas_kernels.core.philox import mix_seed
from kmas_kernels.ultra import install

STEPS, BATCH, K, HARD = 2, 8, 16, 0.5
ENCODER_DIM = {"ultra": 64, "trix": 32, "motif": 64, "semma": 64}


def checkout(name):
    var = f"{name.upper()}_PATH"
    path = os.environ.get(var)
    if not path:
        pytest.skip(f"set {var} to a checkout of {name.upper()} to run the drop-in inside its training code")
    missing = [m for m in ("torch_scatter", "torch_geometric", "easydict", "yaml", "jinja2") if importlib.util.find_spec(m) is None]
    if name == "semma":
        missing += [m for m in ("transformers", "sentence_transformers", "sklearn", "nltk") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name.upper()}'s code needs {', '.join(missing)} (pip install kmas_kernels[kgfm])")
    from kmas_bench.kgfm import GRAPH

    data_dir = shared_dir() / "data" / "grail" / GRAPH[name]
    if not data_dir.is_dir():
        pytest.skip(f"needs {data_dir}")
    return path, data_dir


class StepChecker:
    """Forward pre-hook on the model: checks each training batch the drop-in produced."""

    def __init__(self, sampler, kgfm, original):
        self.sampler, self.kgfm, self.original = sampler, kgfm, original
        data = kgfm.train_data
        n, r = data.num_nodes, data.num_relations
        keys = (data.edge_index[0] * r + data.edge_type) * n + data.edge_index[1]
        self.known = set(keys.tolist())
        self.steps = 0
        self.encoder_shapes = []

    def __call__(self, module, args):
        if not module.training:
            return
        data, batch = args[0], args[1]
        sampler, state = self.sampler, self.sampler.graph(data)
        b, k = batch.shape[0], batch.shape[1] - 1
        positives = batch[:, 0]
        # ULTRA's layout: the original on the same positives fixes the same columns
        theirs = self.original(data, positives, k, strict=True)
        assert batch.shape == theirs.shape == (b, 1 + K, 3) and batch.dtype == torch.int64
        half = b // 2
        assert torch.equal(batch[:, :, 2], theirs[:, :, 2])
        assert torch.equal(batch[:half, :, 0], theirs[:half, :, 0]) and torch.equal(batch[half:, :, 1], theirs[half:, :, 1])
        # strictness: no negative is a known triple
        n, r = data.num_nodes, data.num_relations
        keys = ((batch[:, 1:, 0] * r + batch[:, 1:, 2]) * n + batch[:, 1:, 1]).flatten().tolist()
        assert not self.known.intersection(keys), "a known triple among the negatives"
        # the schedule's hard share, from the weights the cache held (unchanged since the call)
        stats = sampler.stats()
        num_hard = round(HARD * K)
        assert stats["num_hard"] == num_hard and stats["hard_fraction"] == HARD
        h, t, rel = positives.unbind(1)
        tail = torch.arange(b) < half
        qr = torch.where(tail, rel, state.index.inverse(rel))
        weights, _ = state.cache.weights(qr, sampler.temperature, sampler.top_relations, state.directions)
        expected = hard_negatives(state.index, torch.where(tail, h, t), qr, relation_weights=weights, num_negatives=num_hard,
                                  positive=torch.where(tail, t, h), seed=mix_seed(sampler.stream_seed(), stats["step"] - 1))
        got = torch.where(tail[:, None], batch[:, 1:1 + num_hard, 1], batch[:, 1:1 + num_hard, 0])
        assert torch.equal(got, expected)
        self.steps += 1


@pytest.mark.parametrize("name", ["ultra", "trix", "motif", "semma"])
def test_drop_in_inside_the_models_own_training_code(name, tmp_path):
    path, data_dir = checkout(name)
    from kmas_bench import kgfm

    if name == "trix" and kgfm.trix_supported() is not None:
        pytest.skip(kgfm.trix_supported())
    setup = kgfm.setup(name, path, data_dir, depth=2)
    model = setup.model
    original = setup.tasks.negative_sampling
    sampler = install(setup.tasks, model, schedule=HARD, relation_module=setup.relation_module, seed=0)
    checker = StepChecker(sampler, setup, original)
    handles = [model.register_forward_pre_hook(checker)]
    encoder = sampler._resolve_module(model, setup.relation_module)
    handles.append(encoder.register_forward_hook(lambda m, a, out: checker.encoder_shapes.append(tuple(out.shape)) if m.training else None))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="KMASNegativeSampling")  # no rejection, no empty cache
            kgfm.run_training(setup, STEPS, BATCH, K, tmp_path)
    finally:
        for handle in handles:
            handle.remove()
        sampler.close()
    assert setup.tasks.negative_sampling is original  # close() undid install()
    stats = sampler.stats()
    print(name, "encoder output", checker.encoder_shapes[0], "stats", stats)
    assert checker.steps == STEPS and stats["step"] == STEPS
    assert checker.encoder_shapes[0] == (BATCH, setup.train_data.num_relations, ENCODER_DIM[name])
    assert stats["cached_relations"] > 0, "nothing came from the model's own relation encoder"
    assert stats["captured_outputs"] >= STEPS and stats["rejected_outputs"] == 0
    assert stats["eval_outputs_skipped"] > 0  # its validation ran in eval mode and left the cache alone


@pytest.mark.parametrize("name", ["ultra", "trix", "motif", "semma"])
def test_readme_loss_change_inside_the_models_own_training_code(name, tmp_path):
    """README.md's loss change, made to the checkout's own train_and_validate source: each step's
    loss is kmas_kernels.loss.link_prediction_loss of the model's logits, with the drop-in's
    per-row hard counts, equal to a float64 recomputation of the share weighting."""
    path, data_dir = checkout(name)
    from kmas_bench import kgfm
    from kmas_kernels.loss import link_prediction_loss

    if name == "trix" and kgfm.trix_supported() is not None:
        pytest.skip(kgfm.trix_supported())
    setup = kgfm.setup(name, path, data_dir, depth=2)
    sampler = install(setup.tasks, setup.model, schedule=HARD, relation_module=setup.relation_module, seed=0)
    calls = []

    def recorded(pred, hard_counts, **options):
        loss = link_prediction_loss(pred, hard_counts, **options)
        calls.append((pred.detach().double(), hard_counts.clone(), options, float(loss)))
        return loss

    train_and_validate, replaced = kgfm.with_kmas_loss(setup, recorded)
    assert replaced[0].strip() == kgfm.LOSS_FIRST_LINE and replaced[-1].strip() == kgfm.LOSS_LAST_LINE and len(replaced) >= 4
    try:
        kgfm.run_training(setup, STEPS, BATCH, K, tmp_path, train_and_validate=train_and_validate)
    finally:
        sampler.close()
    assert len(calls) == STEPS
    for pred, counts, options, value in calls:
        assert options == {"adversarial_temperature": 1, "hard_weighting": "share"}
        assert pred.shape == (BATCH, 1 + K) and torch.equal(counts, torch.full((BATCH,), round(HARD * K)))
        # share weighting written out: hard columns 1/k each, ULTRA's softmax over the rest at their share
        h = round(HARD * K)
        soft = torch.softmax(pred[:, 1 + h:], dim=1) * (K - h) / K
        weight = torch.cat([torch.ones(BATCH, 1, dtype=pred.dtype), torch.full((BATCH, h), 1 / K, dtype=pred.dtype), soft], 1)
        target = torch.zeros_like(pred)
        target[:, 0] = 1
        bce = torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none")
        expected = ((bce * weight).sum(1) / weight.sum(1)).mean()
        assert value == pytest.approx(float(expected), rel=1e-4, abs=1e-6)

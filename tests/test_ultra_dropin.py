"""KMASNegativeSampling: ULTRA's layout, strictness, the hook cache, on an ULTRA-shaped toy model.

The toy model has ULTRA's interface (``relation_model(rel_graph, query=...)`` -> (B, R, d)
conditioned on the query relation, ``forward(data, batch)`` with batch (B, 1+k, 3) [h, t, r]).
"""

import types

import pytest
import torch
from torch import nn

from conftest import random_triples
from kmas_kernels import HardRatioSchedule
from kmas_kernels.ultra import KMASNegativeSampling


class ToyRelationModel(nn.Module):
    def __init__(self, num_relations, dim=8):
        super().__init__()
        self.base = nn.Parameter(torch.randn(num_relations, dim))
        self.condition = nn.Parameter(torch.randn(num_relations, dim))

    def forward(self, rel_graph, query):
        return self.base[None] + 0.5 * self.condition[query][:, None]  # (B, R, d), conditioned on query


class ToyUltra(nn.Module):
    def __init__(self, num_entities, num_relations, dim=8):
        super().__init__()
        self.relation_model = ToyRelationModel(num_relations, dim)
        self.entity = nn.Parameter(torch.randn(num_entities, dim))

    def forward(self, data, batch):
        query_rels = batch[:, 0, 2]
        z = self.relation_model(data.relation_graph, query=query_rels)
        h, t, r = batch.unbind(-1)
        rel = z[torch.arange(len(batch))[:, None], r]
        return (self.entity[h] * rel * self.entity[t]).sum(-1)  # DistMult, (B, 1+k)


def ultra_data(triples, num_entities, num_relations):
    h, r, t = triples.unbind(1)
    return types.SimpleNamespace(
        edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
        edge_type=torch.cat([r, r + num_relations]),
        num_nodes=num_entities,
        num_relations=2 * num_relations,
        target_edge_index=torch.stack([h, t]),
        target_edge_type=r,
        relation_graph=types.SimpleNamespace(name="relation graph"),
    )


@pytest.fixture
def setup():
    triples = random_triples(60, 3, 300, seed=0)
    data = ultra_data(triples, 60, 3)
    model = ToyUltra(60, 6)
    batch = torch.stack([triples[:8, 0], triples[:8, 2], triples[:8, 1]], dim=1)  # (B, 3) [h, t, r]
    return triples, data, model, batch


def test_layout_and_strictness(setup):
    triples, data, model, batch = setup
    sampler = KMASNegativeSampling(model, data, total_steps=10, schedule=0.5, seed=0)
    out = sampler(data, batch, 16, strict=True)
    assert out.shape == (8, 17, 3) and out.dtype == torch.int64
    assert torch.equal(out[:, 0], batch)
    known = {tuple(x) for x in triples.tolist()}  # (h, r, t)
    for b in range(8):
        h, t, r = batch[b].tolist()
        assert (out[b, :, 2] == r).all()
        if b < 4:  # tail corruption
            assert (out[b, :, 0] == h).all()
            assert not any((h, r, tt) in known for tt in out[b, 1:, 1].tolist())
        else:  # head corruption
            assert (out[b, :, 1] == t).all()
            assert not any((hh, r, t) in known for hh in out[b, 1:, 0].tolist())
    assert sampler.step == 1


def test_hook_fills_the_per_query_relation_cache(setup):
    _, data, model, batch = setup
    sampler = KMASNegativeSampling(model, data, total_steps=10, seed=0)
    state = sampler.graph(data).cache
    assert not state.seen.any()
    negatives = sampler(data, batch, 4)
    model(data, negatives)  # ULTRA's forward on the sampled batch fires the hook
    query = batch[:, 2].unique()
    assert state.seen[query].all() and state.seen[query + 3].all()
    assert int(state.seen.sum()) == 2 * query.numel()
    z = model.relation_model(None, query=query).detach()
    zn = torch.nn.functional.normalize(z, dim=-1)
    for i, q in enumerate(query.tolist()):
        torch.testing.assert_close(state.similarity[q], zn[i, q] @ zn[i].T)
        torch.testing.assert_close(state.similarity[q + 3], zn[i, q + 3] @ zn[i].T)
    # forwards inside paused() leave the cache alone
    before = state.similarity.clone()
    with torch.no_grad():
        model.relation_model.base.add_(1.0)
    with sampler.paused():
        model(data, negatives)
    assert torch.equal(state.similarity, before)
    # a graph the sampler does not train on is ignored by the hook
    other = ultra_data(random_triples(60, 3, 50, seed=1), 60, 3)
    model(other, negatives)
    assert int(state.seen.sum()) == 2 * query.numel()
    sampler.close()


def test_unseen_relations_fall_back_to_their_own_tail_set(setup):
    triples, data, model, batch = setup
    sampler = KMASNegativeSampling(model, data, total_steps=10, schedule=1.0, seed=1)
    out = sampler(data, batch[:2], 5)  # one tail row, one head row, nothing cached: one-hot weights
    index = sampler.graph(data).index
    h, t, r = batch[0].tolist()
    assert set(out[0, 1:, 1].tolist()) <= set(index.tails(r).tolist())
    h, t, r = batch[1].tolist()
    assert set(out[1, 1:, 0].tolist()) <= set(index.tails(r + 3).tolist())


def test_explicit_embeddings_and_schedule(setup):
    _, data, model, batch = setup
    schedule = HardRatioSchedule(total_steps=4, warmup_steps=1, peak_step=2, max_ratio=1.0, final_ratio=0.5)
    sampler = KMASNegativeSampling(model, data, total_steps=4, schedule=schedule, seed=2)
    z = model.relation_model(None, query=batch[:, 2]).detach()
    for step in range(5):
        out = sampler(data, batch, 8, relation_embeddings=z)
        assert out.shape == (8, 9, 3)
        assert sampler.step == step + 1
    assert sampler.graph(data).cache.seen[batch[:, 2]].all()


def test_a_training_step_runs_through_the_drop_in(setup):
    _, data, model, batch = setup
    sampler = KMASNegativeSampling(model, data, total_steps=3, schedule=0.5, seed=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    for _ in range(3):
        pred = model(data, sampler(data, batch, 8))
        target = torch.zeros_like(pred)
        target[:, 0] = 1
        loss = nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none")
        neg_weight = torch.ones_like(pred)
        neg_weight[:, 1:] = torch.softmax(pred[:, 1:].detach(), dim=-1)  # self-adversarial, temperature 1
        loss = ((loss * neg_weight).sum(-1) / neg_weight.sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)


def test_bad_arguments(setup):
    _, data, model, batch = setup
    with pytest.raises(ValueError, match="relation_module"):
        KMASNegativeSampling(model, data, total_steps=3, relation_module="encoder")
    sampler = KMASNegativeSampling(model, data, total_steps=3)
    with pytest.raises(ValueError, match="batch"):
        sampler(data, batch[:, :2], 4)
    with pytest.raises(ValueError, match="num_negative"):
        sampler(data, batch, 0)

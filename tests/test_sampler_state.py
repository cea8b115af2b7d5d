"""state_dict / load_state_dict of KMASSampler and KMASNegativeSampling (docs/semantics.md, "Checkpoints").

A state saved with torch.save and read back with weights_only=True, loaded into a freshly built
sampler (other seed, empty cache), makes it draw integer-identical negatives to the original from
then on; bad states raise errors that name the entry.
"""

import io
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import random_triples
from kmas_kernels import KGIndex, KMASSampler
from kmas_kernels.ultra import KMASNegativeSampling


def _through_a_file(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), before=st.integers(0, 4), ratio=st.sampled_from([0.0, 0.5, 1.0]))
def test_kmas_sampler_resumes_exactly(seed, before, ratio):
    triples = random_triples(40, 3, 150, seed=1)
    index = KGIndex.from_triples(triples, num_entities=40, num_relations=3)
    query = triples[:6, 0]
    relation = triples[:6, 1]
    original = KMASSampler(index, 5, ratio, seed=seed, backend="reference")
    for _ in range(before):
        original.sample(query, relation)
    copy = KMASSampler(index, 5, ratio, seed=0, backend="reference")
    copy.load_state_dict(_through_a_file(original.state_dict()))
    assert copy.state_dict() == {"seed": seed, "step": before}
    for _ in range(2):
        assert torch.equal(original.sample(query, relation), copy.sample(query, relation))


def test_kmas_sampler_rejects_bad_states():
    index = KGIndex.from_triples(random_triples(20, 2, 50, seed=0), num_entities=20, num_relations=2)
    sampler = KMASSampler(index, 3, 0.5, seed=1)
    with pytest.raises(ValueError, match=r"missing keys \['step'\]"):
        sampler.load_state_dict({"seed": 1})
    with pytest.raises(ValueError, match=r"unexpected keys \['cache'\]"):
        sampler.load_state_dict({"seed": 1, "step": 0, "cache": 3})
    with pytest.raises(TypeError, match="seed"):
        sampler.load_state_dict({"seed": 1.5, "step": 0})
    with pytest.raises(ValueError, match="step"):
        sampler.load_state_dict({"seed": 1, "step": -1})
    with pytest.raises(TypeError, match="state must be a dict"):
        sampler.load_state_dict([1, 2])
    assert sampler.state_dict() == {"seed": 1, "step": 0}  # untouched by the failed loads


# ----------------------------------------------------------------------------- the ULTRA drop-in

class RelationEncoder(nn.Module):
    """(B, R, d) representations conditioned on the query relation, like ULTRA's relation model."""

    def __init__(self, num_relations, dim=6):
        super().__init__()
        self.base = nn.Parameter(torch.randn(num_relations, dim))
        self.condition = nn.Parameter(torch.randn(num_relations, dim))

    def forward(self, rel_graph, query):
        return self.base[None] + self.condition[query][:, None]


class Model(nn.Module):
    def __init__(self, num_relations):
        super().__init__()
        self.relation_model = RelationEncoder(num_relations)

    def forward(self, data, batch):
        return self.relation_model(data.relation_graph, query=batch[:, 0, 2]).sum(-1)


def graph(num_entities, num_relations, num_edges, seed):
    triples = random_triples(num_entities, num_relations, num_edges, seed=seed)
    h, r, t = triples.unbind(1)
    return types.SimpleNamespace(
        edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]), edge_type=torch.cat([r, r + num_relations]),
        num_nodes=num_entities, num_relations=2 * num_relations, relation_graph=types.SimpleNamespace(),
        batch=torch.stack([h[:8], t[:8], r[:8]], dim=1),
    )


def _step(sampler, model, data, k=5):
    """One training-like step: draw, then a forward that refreshes the cache through the hook."""
    drawn = sampler(data, data.batch, k)
    model(data, drawn)
    return drawn


def test_dropin_state_carries_the_cache_and_resumes_exactly():
    torch.manual_seed(0)
    g1, g2 = graph(30, 3, 120, seed=1), graph(25, 3, 90, seed=2)
    model = Model(6)
    original = KMASNegativeSampling(model, g1, 20, schedule=0.6, seed=11)
    for data in (g1, g2, g1):  # g2 is indexed on first use
        _step(original, model, data)
    state = _through_a_file(original.state_dict())
    assert state["step"] == 3 and len(state["graphs"]) == 2
    assert state["graphs"][0]["seen"].any() and state["graphs"][1]["seen"].any()

    # a new run: other seed, the graphs in another order, g2 registered up front, g1 only on use
    copy_model = Model(6)
    copy_model.load_state_dict(model.state_dict())
    copy = KMASNegativeSampling(copy_model, [g2], 20, schedule=0.6, seed=5)
    copy.load_state_dict(state)
    for data in (g1, g2, g1, g1):
        assert torch.equal(_step(original, model, data), _step(copy, copy_model, data))
    saved, again = original.state_dict(), copy.state_dict()
    assert (saved["seed"], saved["step"]) == (again["seed"], again["step"])
    by_graph = {entry["graph"]["checksum"]: entry for entry in again["graphs"]}
    for entry in saved["graphs"]:
        assert torch.equal(entry["similarity"], by_graph[entry["graph"]["checksum"]]["similarity"])
        assert torch.equal(entry["seen"], by_graph[entry["graph"]["checksum"]]["seen"])
    original.close()
    copy.close()


def test_dropin_without_the_cache_would_draw_otherwise():
    """The cache is state that matters: restoring seed and step alone does not reproduce the draws."""
    torch.manual_seed(0)
    g1 = graph(30, 3, 120, seed=1)
    model = Model(6)
    original = KMASNegativeSampling(model, g1, 20, schedule=1.0, seed=11)
    for _ in range(3):
        _step(original, model, g1)
    state = original.state_dict()
    fresh = KMASNegativeSampling(Model(6), g1, 20, schedule=1.0, seed=11)
    fresh.load_state_dict({**state, "graphs": []})  # seed and step only: empty cache (one-hot weights)
    assert not torch.equal(original(g1, g1.batch, 5), fresh(g1, g1.batch, 5))


def test_dropin_rejects_bad_states():
    g1 = graph(30, 3, 120, seed=1)
    sampler = KMASNegativeSampling(Model(6), g1, 20, seed=1)
    state = sampler.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['graphs'\]"):
        sampler.load_state_dict({"seed": 1, "step": 0})
    with pytest.raises(TypeError, match="graphs must be a list"):
        sampler.load_state_dict({**state, "graphs": 3})
    with pytest.raises(ValueError, match="each graph entry needs 'graph'"):
        sampler.load_state_dict({**state, "graphs": [{"similarity": torch.zeros(6, 6)}]})
    bad = {**state["graphs"][0], "similarity": torch.zeros(5, 5)}
    with pytest.raises(ValueError, match=r"'similarity' must be a \(6, 6\) torch.float32 tensor, got \(5, 5\)"):
        sampler.load_state_dict({**state, "graphs": [bad]})
    with pytest.raises(ValueError, match="seed"):
        sampler.load_state_dict({**state, "seed": -3})

"""KMASNegativeSampling: which graph an encoder output belongs to, stats(), the empty-cache warning,
install(), state_dict, per-rank streams (docs/semantics.md, "The drop-in").

Toy models mimic how each KGFM calls its relation encoder:
ULTRA ``relation_model(data.relation_graph, query=r)``; TRIX ``relation_model(data, batch, ...)``;
MOTIF ``relation_model(<graph rebuilt this step>, query=r or inverse)``; SEMMA a fusion module
``combiner(structural, semantic)`` that sees neither the graph nor the query.
"""

import copy
import io
import types
import warnings

import pytest
import torch
from torch import nn

from conftest import random_triples
from kmas_kernels import hard_negatives
from kmas_kernels.core.philox import mix_seed
from kmas_kernels.ultra import KMASNegativeSampling, install, rank_seed

N, R0 = 50, 3
R = 2 * R0


def ultra_data(seed=0, num_edges=250):
    triples = random_triples(N, R0, num_edges, seed=seed)
    h, r, t = triples.unbind(1)
    return types.SimpleNamespace(
        edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
        edge_type=torch.cat([r, r + R0]),
        num_nodes=N,
        num_relations=R,
        relation_graph=types.SimpleNamespace(num_nodes=R),
        triples=triples,
    )


def batch_of(data, size=8, offset=0):
    tr = data.triples[offset:offset + size]
    return torch.stack([tr[:, 0], tr[:, 2], tr[:, 1]], dim=1)  # (B, 3) [h, t, r]


class Encoder(nn.Module):
    """(B, R, d) conditioned on the query relation; ``graph`` is ignored, as a real one would use it."""

    def __init__(self, dim=8):
        super().__init__()
        self.base = nn.Parameter(torch.randn(R, dim))
        self.condition = nn.Parameter(torch.randn(R, dim))

    def forward(self, graph, query):
        return self.base[None] + 0.5 * self.condition[query][:, None]


class UltraLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.relation_model = Encoder()

    def forward(self, data, batch):
        return self.relation_model(data.relation_graph, query=batch[:, 0, 2]).sum()


class TrixLike(nn.Module):
    class RelNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Encoder()

        def forward(self, data, batch, entity_model):
            return self.inner(data, batch[:, 0, 2])

    def __init__(self):
        super().__init__()
        self.relation_model = self.RelNet()

    def forward(self, data, batch):
        return self.relation_model(data, batch, None).sum()


class MotifLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.relation_model = Encoder()

    def forward(self, data, batch):
        data = copy.copy(data)  # rebuilt on every step, as MOTIF's remove_easy_edges + hypergraph do
        data.relation_hypergraph = types.SimpleNamespace(num_nodes=R)
        r = batch[:, 0, 2]
        is_tail = (batch[:, :, 0] == batch[:, :1, 0]).all(1)
        r = torch.where(is_tail, r, (r + R0) % R)  # head rows already turned into inverse tail queries
        return self.relation_model(data.relation_hypergraph, query=r).sum()


class SemmaLike(nn.Module):
    class Combiner(nn.Module):
        def forward(self, structural, semantic):
            return structural + semantic

    def __init__(self):
        super().__init__()
        self.relation_model = Encoder()
        self.semantic_model = Encoder()
        self.combiner = self.Combiner()

    def forward(self, data, batch):
        q = batch[:, 0, 2]
        self.final_relation_representations = self.combiner(self.relation_model(data, query=q), self.semantic_model(data, query=q))
        return self.final_relation_representations.sum()


MODELS = {
    "ultra": (UltraLike, "relation_model"),
    "trix": (TrixLike, "relation_model"),
    "motif": (MotifLike, "relation_model"),
    "semma": (SemmaLike, "combiner"),
}


def train(sampler, model, data, steps, k=8, offset=0):
    for step in range(steps):
        out = sampler(data, batch_of(data, offset=offset + 8 * step), k)
        model(data, out)
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_encoder_call_style_fills_the_cache(name):
    cls, module = MODELS[name]
    torch.manual_seed(0)
    model, data = cls(), ultra_data()
    sampler = KMASNegativeSampling(model, data, schedule=0.5, relation_module=module, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no rejection, no empty-cache warning
        train(sampler, model, data, steps=3)
    stats = sampler.stats()
    assert stats["captured_outputs"] == 3 and stats["rejected_outputs"] == 0
    assert stats["cached_relations"] > 0 and stats["num_relations"] == R
    assert stats["hard_fraction"] == 0.5 and stats["num_hard"] == 4 and stats["graphs"] == 1
    cache = sampler.graph(data).cache
    queried = torch.cat([batch_of(data, offset=8 * s)[:, 2] for s in range(3)]).unique()
    assert cache.seen[queried].all() and cache.seen[queried + R0].all()
    sampler.close()


def test_the_cache_holds_the_encoders_own_similarities():
    torch.manual_seed(1)
    model, data = MotifLike(), ultra_data()
    sampler = KMASNegativeSampling(model, data, schedule=0.5, seed=0)
    train(sampler, model, data, steps=1)
    cache = sampler.graph(data).cache
    rows = batch_of(data)[:, 2]
    q = torch.where(torch.arange(8) < 4, rows, rows + R0)  # what MotifLike conditions on
    z = torch.nn.functional.normalize(model.relation_model(None, q).detach(), dim=-1)
    last = {}
    for b, qb in enumerate(q.tolist()):
        last[qb] = b  # the last row with a given query relation wins
    for qb, b in last.items():
        torch.testing.assert_close(cache.similarity[qb], z[b, qb] @ z[b].T)
        inverse = (qb + R0) % R
        if inverse not in last:  # a row conditioned on the inverse itself takes precedence
            torch.testing.assert_close(cache.similarity[inverse], z[b, inverse] @ z[b].T)
        assert int(cache.refreshed_at[qb]) == 0 and int(cache.refreshed_at[inverse]) == 0
    assert int(cache.seen.sum()) == len(set(last) | {(x + R0) % R for x in last})


def test_graphs_are_told_apart_and_rebuilt_copies_recognised():
    torch.manual_seed(2)
    model = UltraLike()
    g1, g2 = ultra_data(seed=1), ultra_data(seed=2)
    sampler = KMASNegativeSampling(model, [g1, g2], schedule=0.5, seed=0)
    train(sampler, model, g1, steps=1)
    assert sampler.graph(g1).cache.seen.any() and not sampler.graph(g2).cache.seen.any()
    # a rebuilt copy (new object, new relation graph, same edges): the same graph, not a new cache
    g1_again = copy.copy(g1)
    g1_again.relation_graph = types.SimpleNamespace(num_nodes=R)
    sampler(g1_again, batch_of(g1), 4)
    assert sampler.stats()["graphs"] == 2 and sampler.stats()["cached_relations"] > 0
    # MotifLike-style forward on g2 goes to g2 (the latest call), not to g1
    before = sampler.graph(g1).cache.similarity.clone()
    sampler(g2, batch_of(g2), 4)
    model(g2, torch.zeros(8, 5, 3, dtype=torch.long))
    assert torch.equal(sampler.graph(g1).cache.similarity, before)
    assert sampler.graph(g2).cache.seen[0] and sampler.graph(g2).cache.seen[R0]


def test_eval_mode_and_foreign_calls_are_not_cached():
    torch.manual_seed(3)
    model, data = MotifLike(), ultra_data()
    sampler = KMASNegativeSampling(model, data, schedule=0.5, seed=0)
    model.relation_model(None, torch.zeros(2, dtype=torch.long))  # before any drop-in call: not ours
    out = sampler(data, batch_of(data), 4)
    model.eval()
    model(data, out)
    assert not sampler.graph(data).cache.seen.any()
    stats = sampler.stats()
    assert stats["eval_outputs_skipped"] == 1 and stats["unattributed_outputs"] == 1 and stats["captured_outputs"] == 0


def test_stats_fallback_rows_and_cache_age():
    torch.manual_seed(4)
    model, data = UltraLike(), ultra_data()
    sampler = KMASNegativeSampling(model, data, schedule=1.0, seed=0)
    assert sampler.stats()["cached_relations"] == 0 and sampler.stats()["mean_cache_age"] is None
    batch = batch_of(data)
    model(data, sampler(data, batch, 4))
    first = sampler.stats()
    assert first["fallback_rows"] == 8 and first["cached_relations"] == 0 and first["mean_cache_age"] is None
    sampler(data, batch, 4)  # the same relations: every row from the cache, refreshed one step ago
    second = sampler.stats()
    assert second["fallback_rows"] == 0 and second["mean_cache_age"] == 1.0
    assert second["cached_relations"] == 2 * batch[:, 2].unique().numel() and second["step"] == 2
    sampler(data, batch, 4)  # no forward in between: one step older
    assert sampler.stats()["mean_cache_age"] == 2.0


def test_hard_columns_come_from_the_cached_weights():
    torch.manual_seed(5)
    model, data = TrixLike(), ultra_data()
    sampler = KMASNegativeSampling(model, data, schedule=0.5, seed=7, backend="reference")
    train(sampler, model, data, steps=2)
    batch = batch_of(data, offset=8)
    h, t, r = batch.unbind(1)
    state = sampler.graph(data)
    tail = torch.arange(8) < 4
    qr = torch.where(tail, r, state.index.inverse(r))
    assert state.directions == "separate"  # the default on ULTRA's inverse layout
    weights, _ = state.cache.weights(qr, sampler.temperature, sampler.top_relations, state.directions)
    step = sampler.step
    out = sampler(data, batch, 8)
    expected = hard_negatives(state.index, torch.where(tail, h, t), qr, relation_weights=weights, num_negatives=4,
                              positive=torch.where(tail, t, h), seed=mix_seed(rank_seed(7, 0), step), backend="reference")
    got = torch.where(tail[:, None], out[:, 1:5, 1], out[:, 1:5, 0])
    assert torch.equal(got, expected)


def test_an_empty_cache_with_hard_negatives_due_warns_once():
    torch.manual_seed(6)
    model, data = SemmaLike(), ultra_data()
    # hooking the wrong module with an output_transform that cannot find the (B, R, d) tensor
    sampler = KMASNegativeSampling(model, data, schedule=0.5, relation_module="combiner", output_transform=lambda out: out[0], seed=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        train(sampler, model, data, steps=6)
    messages = [str(w.message) for w in record if w.category is RuntimeWarning]
    assert len(messages) == 2 and "was not cached" in messages[0]  # the first rejection, then the empty cache once
    assert "KMAS is not what runs" in messages[1] and "6 rejected" not in messages[1] and "3 rejected" in messages[1]
    assert sampler.stats()["rejected_outputs"] == 6 and sampler.stats()["fallback_rows"] == 8


def test_no_warning_while_the_schedule_asks_for_no_hard_negatives():
    model, data = UltraLike(), ultra_data()
    sampler = KMASNegativeSampling(model, data, schedule=0.0, relation_module="relation_model", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(6):
            sampler(data, batch_of(data), 4)  # no forward at all: the cache stays empty
    assert sampler.stats()["hard_fraction"] == 0.0


def test_install_patches_the_module_and_close_restores_it():
    def negative_sampling(data, batch, num_negative, strict=True):
        raise AssertionError("the original ran")

    tasks = types.SimpleNamespace(negative_sampling=negative_sampling)
    script_globals = {"negative_sampling": negative_sampling}
    model, data = UltraLike(), ultra_data()
    sampler = install(tasks, model, schedule=0.5, seed=0, namespaces=[script_globals])
    assert tasks.negative_sampling is sampler and script_globals["negative_sampling"] is sampler
    with pytest.raises(ValueError, match="already"):
        install(tasks, model, schedule=0.5)
    model(data, tasks.negative_sampling(data, batch_of(data), 4, strict=True))
    assert sampler.stats()["captured_outputs"] == 1
    sampler.close()
    assert tasks.negative_sampling is negative_sampling and script_globals["negative_sampling"] is negative_sampling


def test_a_class_hook_finds_models_built_after_install():
    tasks = types.SimpleNamespace(negative_sampling=lambda *a, **k: None)
    sampler = install(tasks, None, schedule=0.5, seed=0, relation_module=Encoder)
    try:
        model, data = UltraLike(), ultra_data()  # built after install, as a training script does
        train(tasks.negative_sampling, model, data, steps=2)
        assert sampler.stats()["cached_relations"] > 0
    finally:
        sampler.close()
    with pytest.raises(ValueError, match="attribute path"):
        KMASNegativeSampling(None, data, schedule=0.5, relation_module="relation_model")


def test_state_dict_resumes_the_same_draws():
    torch.manual_seed(7)
    model, data = UltraLike(), ultra_data()
    run = KMASNegativeSampling(model, data, schedule=0.5, seed=3)
    train(run, model, data, steps=3)
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    expected = [run(data, batch_of(data, offset=8 * s), 8) for s in range(2)]
    run.close()
    # a fresh process: new model object (same weights not needed: no forward before the draws)
    resumed = KMASNegativeSampling(UltraLike(), None, schedule=0.5, seed=0)
    resumed.load_state_dict(state)  # the graph is not known yet: its cache waits for it
    assert resumed.step == 3 and resumed.seed == 3
    got = [resumed(copy.copy(data), batch_of(data, offset=8 * s), 8) for s in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert resumed.stats()["mean_cache_age"] is not None  # refresh steps came back too
    with pytest.raises(ValueError, match="similarity"):
        bad = run.state_dict()
        bad["graphs"][0]["similarity"] = bad["graphs"][0]["similarity"][:2]
        KMASNegativeSampling(UltraLike(), data, schedule=0.5).load_state_dict(bad)


def test_ranks_draw_independent_reproducible_streams():
    data = ultra_data()
    batch = batch_of(data)
    draws = {}
    for rank in (0, 1, 2):
        sampler = KMASNegativeSampling(UltraLike(), data, schedule=0.5, seed=11, rank=rank)
        draws[rank] = sampler(data, batch, 16)
        assert torch.equal(draws[rank], KMASNegativeSampling(UltraLike(), data, schedule=0.5, seed=11, rank=rank)(data, batch, 16))
    assert not torch.equal(draws[0][:, 1:], draws[1][:, 1:]) and not torch.equal(draws[1][:, 1:], draws[2][:, 1:])
    single = KMASNegativeSampling(UltraLike(), data, schedule=0.5, seed=11)  # no process group: rank 0
    assert torch.equal(single(data, batch, 16), draws[0])
    assert rank_seed(11, 0) == 11 and len({rank_seed(11, r) for r in range(64)}) == 64


def test_default_directions_separate_on_inverse_layout_else_mixed_with_one_warning():
    model, data = UltraLike(), ultra_data()
    assert KMASNegativeSampling(model, data, schedule=0.5, seed=0).graph(data).directions == "separate"
    odd = ultra_data()
    odd.num_relations = R + 1  # no r + R/2 inverse layout
    odd.relation_graph = types.SimpleNamespace(num_nodes=R + 1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sampler = KMASNegativeSampling(model, odd, schedule=0.5, seed=0)
        sampler.graph(odd)
        sampler.graph(odd)
    messages = [str(w.message) for w in record if "directions='mixed'" in str(w.message)]
    assert len(messages) == 1 and sampler.graph(odd).directions == "mixed"
    with pytest.raises(ValueError, match="directions='separate'"):
        KMASNegativeSampling(model, odd, schedule=0.5, seed=0, directions="separate").graph(odd)

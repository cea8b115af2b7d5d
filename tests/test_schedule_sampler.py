"""HardRatioSchedule shape, KMASSampler's hard/uniform split, and the uniform rejection sampler."""

import pytest
import torch
from scipy import stats

from brute_force import edges_with_inverses, excluded
from conftest import queries_from_edges, random_triples
from kmas_kernels import HardRatioSchedule, KGIndex, KMASSampler, hard_negatives
from kmas_kernels.core.uniform import uniform_negatives


def test_schedule_shape():
    s = HardRatioSchedule(total_steps=100, warmup_steps=10, peak_step=40, max_ratio=0.6, final_ratio=0.2)
    assert [s(t) for t in (0, 5, 9, 10)] == [0.0, 0.0, 0.0, 0.0]
    assert s(25) == pytest.approx(0.3)
    assert s(40) == pytest.approx(0.6)
    assert s(70) == pytest.approx(0.4)
    assert s(100) == s(1000) == pytest.approx(0.2)
    rise = [s(t) for t in range(10, 41)]
    fall = [s(t) for t in range(40, 101)]
    assert rise == sorted(rise) and fall == sorted(fall, reverse=True)
    assert s.num_hard(25, 512) == round(0.3 * 512)
    assert s.num_hard(40, 5) == 3  # 0.6 * 5 = 3.0
    assert HardRatioSchedule(total_steps=10, max_ratio=0.5).num_hard(4, 3) == 2  # 1.5 rounds up


def test_schedule_defaults_and_degenerate_phases():
    s = HardRatioSchedule(total_steps=1000)
    assert (s.warmup_steps, s.peak_step, s.max_ratio, s.final_ratio) == (100, 400, 0.5, 0.1)
    jump = HardRatioSchedule(total_steps=10, warmup_steps=5, peak_step=5, max_ratio=0.8, final_ratio=0.8)
    assert [jump(t) for t in (4, 5, 9, 10)] == [0.0, 0.8, 0.8, 0.8]


def test_sampler_splits_hard_and_uniform_and_advances(small_graph):
    triples, index = small_graph
    q, r, a = queries_from_edges(index, 5, seed=1)
    schedule = HardRatioSchedule(total_steps=10, warmup_steps=2, peak_step=4, max_ratio=0.5, final_ratio=0.25)
    sampler = KMASSampler(index, 8, schedule, seed=3)
    z = torch.randn(index.num_relations, 4)
    edges = edges_with_inverses([tuple(t) for t in triples.tolist()], 4)
    for step in range(12):
        assert sampler.step == step
        num_hard = sampler.num_hard()
        assert num_hard == schedule.num_hard(step, 8)
        out = sampler.sample(q, r, a, relation_embeddings=z)
        assert out.shape == (5, 8)
        for b in range(5):
            assert not set(out[b].tolist()) & excluded(edges, int(q[b]), int(r[b]), int(a[b]), True)
        if num_hard:  # the hard columns are exactly hard_negatives with the step's seed
            from kmas_kernels.core.philox import mix_seed

            expected = hard_negatives(index, q, r, relation_embeddings=z, num_negatives=num_hard, positive=a, seed=mix_seed(3, step),
                                      temperature=sampler.temperature, top_relations=sampler.top_relations)
            assert torch.equal(out[:, :num_hard], expected)
    assert sampler.step == 12
    resumed = KMASSampler(index, 8, schedule, seed=0)
    resumed.load_state_dict({"seed": 3, "step": 5})
    fresh = KMASSampler(index, 8, schedule, seed=3, step=5)
    assert torch.equal(resumed.sample(q, r, a, relation_embeddings=z), fresh.sample(q, r, a, relation_embeddings=z))


def test_uniform_strict_is_uniform_over_allowed_entities():
    triples = random_triples(30, 2, 200, seed=4)
    index = KGIndex.from_triples(triples, num_entities=30, num_relations=2)
    q, r, a = queries_from_edges(index, 1, seed=5)
    edges = edges_with_inverses([tuple(t) for t in triples.tolist()], 2)
    drop = excluded(edges, int(q[0]), int(r[0]), int(a[0]), True)
    rows = 400
    out = uniform_negatives(index, q.expand(rows), r.expand(rows), a.expand(rows), 50, seed=1, strict=True)
    counts = torch.bincount(out.flatten(), minlength=30)
    assert counts[sorted(drop)].sum() == 0
    allowed = [e for e in range(30) if e not in drop]
    assert stats.chisquare(counts[allowed].numpy()).pvalue > 1e-4


def test_uniform_distinct_fills_only_empty_slots_and_handles_dense_exclusion():
    # entity 0 knows every other entity but 9 and 10 under relation 0: rejection fails often,
    # the exact per-row path must finish the job
    triples = torch.tensor([[0, 0, t] for t in range(1, 9)] + [[11, 1, 12]])
    index = KGIndex.from_triples(triples, num_entities=13, num_relations=1 + 1)
    partial = torch.tensor([[11, -1, -1, -1]])
    out = uniform_negatives(index, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), 4,
                            seed=0, strict=True, distinct=True, partial=partial)
    assert out[0, 0] == 11
    assert sorted(out[0].tolist()) == sorted(set(out[0].tolist()))
    assert set(out[0, 1:].tolist()) <= {0, 9, 10, 12}


def test_training_samplers_share_the_studys_defaults():
    """KMASSampler, the ULTRA drop-in and the PyKEEN sampler default to the relation weights the
    pre-training study chose on validation; hard_negatives, the op, keeps its own (docs/semantics.md §2)."""
    import inspect

    from kmas_kernels import sampler as sampler_module
    from kmas_kernels import ultra

    expected = {"temperature": sampler_module.SAMPLER_TEMPERATURE, "top_relations": sampler_module.SAMPLER_TOP_RELATIONS}
    entries = [KMASSampler.__init__, ultra.KMASNegativeSampling.__init__]
    try:
        from kmas_kernels import pykeen as pykeen_module

        entries.append(pykeen_module.KMASNegativeSampler.__init__)
    except ImportError:  # PyKEEN not installed
        pass
    for entry in entries:
        params = inspect.signature(entry).parameters
        assert {name: params[name].default for name in expected} == expected, entry.__qualname__
    op = inspect.signature(hard_negatives).parameters
    assert op["top_relations"].default is None and op["temperature"].default == 0.1

"""The public defaults, pinned: what a user gets when leaving each option out.

Every value is written here as a literal, so changing a default (core/options.py, schedule.py, the
drop-in's stage-3 choices in sampler.py) fails this test until it is changed here too, deliberately,
with README.md and docs/semantics.md.
"""

import inspect

import pytest
import torch

from kmas_kernels import HardRatioSchedule, KGIndex, KMASSampler, hard_negatives
from kmas_kernels.core.options import MiningOptions, SamplerOptions
from kmas_kernels.schedule import hard_count
from kmas_kernels.ultra import KMASNegativeSampling

MINING = dict(strict=True, temperature=0.1, top_relations=None, temperature_gumbel=1.0, backend="auto")
SAMPLER = dict(strict=True, temperature=0.3, top_relations=10, temperature_gumbel=1.0, backend="auto")


def defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


def test_hard_negatives_defaults():
    assert defaults(hard_negatives) == dict(relation_embeddings=None, relation_weights=None, positive=None, seed=None, **MINING)
    assert MiningOptions() == MiningOptions(**MINING)


def test_kmas_sampler_defaults():
    assert defaults(KMASSampler.__init__) == dict(seed=None, step=0, directions="mixed", **SAMPLER)
    assert SamplerOptions() == SamplerOptions(directions="mixed", **SAMPLER)
    index = KGIndex.from_triples(torch.tensor([[0, 0, 1], [1, 0, 2], [2, 1, 0]]))
    sampler = KMASSampler(index, 4, 0.5)
    got = {name: getattr(sampler, name) for name in (*SAMPLER, "directions", "step")}
    assert got == dict(directions="mixed", step=0, **SAMPLER)
    assert 0 <= sampler.seed < 2**63  # drawn from torch's generator


def test_dropin_defaults():
    expected = dict(train_data=None, total_steps=None, schedule=None, relation_module="relation_model", seed=None, rank=None,
                    step=0, fallback="shared", directions=None,
                    **{k: v for k, v in SAMPLER.items() if k != "strict"})  # fmt: skip
    got = defaults(KMASNegativeSampling.__init__)
    got.pop("output_transform"), got.pop("query_from_inputs")
    assert got == expected
    sampling = KMASNegativeSampling(torch.nn.Module(), total_steps=100, relation_module=torch.nn.Identity())
    try:
        assert sampling.directions == "separate" and sampling.fallback == "shared"
        assert (sampling.temperature, sampling.top_relations) == (0.3, 10)
        assert sampling.schedule == HardRatioSchedule(100)
    finally:
        sampling.close()


def test_pykeen_sampler_defaults():
    pykeen = pytest.importorskip("kmas_kernels.pykeen")
    got = defaults(pykeen.KMASNegativeSampler.__init__)
    for name, value in dict(refresh_every=1, step=0, seed=None, filtered=False, **SAMPLER).items():
        assert got[name] == value, name


def test_schedule_defaults_and_rounding():
    schedule = HardRatioSchedule(100)
    assert (schedule.warmup_steps, schedule.peak_step, schedule.max_ratio, schedule.final_ratio) == (10, 40, 0.5, 0.1)
    # one rounding rule: halves up; a ratio outside [0, 1] is an error
    assert [hard_count(0.5, k) for k in (1, 2, 3, 5)] == [1, 1, 2, 3]
    assert hard_count(0.25, 2) == 1 and hard_count(0.0, 7) == 0 and hard_count(1.0, 7) == 7
    with pytest.raises(ValueError, match="ratio must be in"):
        hard_count(1.5, 4)
    # stochastic rounding (the PyKEEN sampler): up below the fractional part
    assert hard_count(0.3, 5, draw=0.49) == 2 and hard_count(0.3, 5, draw=0.51) == 1

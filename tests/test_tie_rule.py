"""tests/tie_rule.py can fail: a swap of two keys that differ by more than float rounding is rejected,
also for small keys (deterministic mode ranks by P ~ 1e-3, where a tolerance floored at 1 would
accept any swap)."""

import pytest
import torch

from conftest import random_triples
from kmas_kernels import KGIndex
from kmas_kernels.core.problem import prepare_problem
from kmas_kernels.core.reference import candidate_keys, reference_top_k
from tie_rule import assert_matches_reference, key_tolerance


def _problem(tg: float):
    index = KGIndex.from_triples(random_triples(3000, 40, 12000, seed=1), num_entities=3000, num_relations=40, add_inverse=True)
    z = torch.randn(2, index.num_relations, 8, generator=torch.Generator().manual_seed(0))
    return prepare_problem(index, [0, 1], [0, 1], num_negatives=64, seed=3, temperature_gumbel=tg, relation_embeddings=z)


@pytest.mark.parametrize("tg", [0.0, 1.0])
def test_a_real_swap_is_rejected(tg):
    problem = _problem(tg)
    ref = reference_top_k(problem)
    assert assert_matches_reference(problem, ref.clone()) == 0
    keys = candidate_keys(problem).double()
    tol = key_tolerance(problem)
    # the first adjacent pair whose keys differ by more than their tolerances
    row = ref[0]
    gap = keys[0, row[:-1]] - keys[0, row[1:]]
    allowed = tol[0, row[:-1]] + tol[0, row[1:]]
    i = int(torch.nonzero(gap > allowed)[0])
    if tg == 0:
        # the case the old rule (1e-5 * max(|k-th key|, 1)) accepted: keys ~1e-3 apart by < 1e-5
        small = torch.nonzero((gap > allowed) & (gap < 1e-5))
        assert small.numel(), "no pair of small keys closer than 1e-5: the test graph lost its point"
        i = int(small[0])
    swapped = ref.clone()
    swapped[0, i], swapped[0, i + 1] = ref[0, i + 1], ref[0, i]
    with pytest.raises(AssertionError, match="beyond float ties"):
        assert_matches_reference(problem, swapped)


def test_tolerance_scales_with_the_terms():
    problem = _problem(1.0)
    tol = key_tolerance(problem)
    assert (tol > 0).all() and (tol < 1e-3).all()
    det = key_tolerance(_problem(0.0))
    assert det.max() < 1e-6  # P <= 1 here: relative to P, not floored at 1

"""Host syncs of hard_negatives (docs/semantics.md): two read-backs in the validation; the fill of
short rows reads back only when the support lower bound (MiningProblem.min_support) cannot rule
short rows out."""

import pytest
import torch

from conftest import queries_from_edges, random_triples
from kmas_kernels import KGIndex, hard_negatives
from kmas_kernels.core.problem import prepare_problem
from kmas_kernels.core.reference import candidate_keys, reference_top_k
from kmas_kernels.hard_negatives import fill_short_rows


@pytest.mark.parametrize("mode", ["one_hot", "shared", "weights", "sparse_weights"])
@pytest.mark.parametrize("strict", [True, False])
def test_min_support_is_a_lower_bound(mode, strict):
    n, batch = 300, 12
    index = KGIndex.from_triples(random_triples(n, 4, 900, 3), num_entities=n, num_relations=4)
    q, r, a = queries_from_edges(index, batch, 4)
    g = torch.Generator().manual_seed(5)
    kwargs = {}
    if mode == "shared":
        kwargs = dict(relation_embeddings=torch.randn(index.num_relations, 8, generator=g), top_relations=2)
    elif mode == "weights":
        kwargs = dict(relation_weights=torch.rand(batch, index.num_relations, generator=g))
    elif mode == "sparse_weights":  # zeros and a subnormal weight: neither counts
        w = torch.zeros(batch, index.num_relations)
        w[:, 1] = 1e-45
        w[::2, 2] = 0.5
        kwargs = dict(relation_weights=w)
    problem = prepare_problem(index, q, r, num_negatives=3, positive=a, strict=strict, seed=1, **kwargs)
    support = torch.isfinite(candidate_keys(problem)).sum(dim=1)
    assert 0 <= problem.min_support <= int(support.min())
    if mode in ("one_hot", "weights"):
        assert problem.min_support > 0  # informative, not just 0


def test_fill_is_skipped_only_when_no_row_can_be_short():
    index = KGIndex.from_triples(random_triples(400, 2, 300, 7), num_entities=400, num_relations=2)
    q, r, a = queries_from_edges(index, 6, 8)
    full = prepare_problem(index, q, r, num_negatives=4, positive=a, seed=2)
    assert full.min_support >= 4
    top = reference_top_k(full)
    assert fill_short_rows(full, top) is top  # returned as is: nothing read back
    # k above the support of some rows: the fill runs and leaves no -1
    big = prepare_problem(index, q, r, num_negatives=150, positive=a, seed=2)
    assert big.min_support < 150 and (reference_top_k(big) < 0).any()
    out = hard_negatives(index, q, r, num_negatives=150, positive=a, seed=2, backend="reference")
    assert (out >= 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_call_syncs_only_in_validation():
    """On CUDA, a call whose rows cannot be short syncs twice (the validation read-backs)."""
    from kmas_kernels.backends import native

    index = KGIndex.from_triples(random_triples(5000, 4, 20000, 1), num_entities=5000, num_relations=4).to("cuda")
    q, r, a = (x.to("cuda") for x in queries_from_edges(index.to("cpu"), 16, 2))
    backends = ["reference"] + (["cuda"] if native.cuda_available() is None else [])
    try:
        import kmas_kernels.backends.triton_topk as tt

        if tt.triton_available("cuda") is None:
            backends.append("triton")
    except ImportError:
        pass
    for backend in backends:
        hard_negatives(index, q, r, num_negatives=64, positive=a, seed=1, backend=backend)  # compile, warm up
        torch.cuda.synchronize()
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                hard_negatives(index, q, r, num_negatives=64, positive=a, seed=1, backend=backend)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        assert len(syncs) <= 2, (backend, [str(w.message) for w in syncs])

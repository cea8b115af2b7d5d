"""The Triton backend against the reference (docs/semantics.md, "Selection").

CI runs this file on CPU tensors under ``TRITON_INTERPRET=1`` (shapes kept tiny: the interpreter
is slow); on a GPU machine (TRITON_INTERPRET unset) the same grid runs on CUDA tensors, plus a
memory test. Equality rule (tests/tie_rule.py): identical ids, except at positions where the
reference keys of the two ids agree within float rounding (``log`` may differ by an ulp between
torch, numpy and libdevice, and how often depends on the CPU; the CUDA reference sums P with
atomics in no fixed order). Deterministic mode on CPU tensors takes no log and must be exact.
"""

from __future__ import annotations

import os

import pytest
import torch
from scipy import stats

from conftest import queries_from_edges, random_triples, weight_inputs
from tie_rule import assert_matches_reference
from kmas_kernels import KGIndex
from kmas_kernels.core.problem import prepare_problem
from kmas_kernels.core.reference import candidate_keys, candidate_probability

triton_topk = pytest.importorskip("kmas_kernels.backends.triton_topk")
_REASON = triton_topk.triton_available()
if _REASON is not None:
    pytest.skip(f"triton backend unavailable: {_REASON}", allow_module_level=True)

triton_top_k = triton_topk.triton_top_k

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRET, reason="CPU tensors need TRITON_INTERPRET=1")),
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(), reason="needs a CUDA GPU (TRITON_INTERPRET unset)"),
    ),
]

def _problem(index, q, r, a, *, k, strict, tg, seed, mode, top_relations, batch):
    kwargs = weight_inputs(mode, batch, index.num_relations, seed, index.device)
    return prepare_problem(
        index, q, r, num_negatives=k, positive=a, strict=strict, temperature_gumbel=tg, seed=seed,
        top_relations=top_relations if mode in ("shared", "per_row") else None, **kwargs,
    )


# (entities, original relations, triples, batch, k, strict, temperature_gumbel, mode, top_relations, heads)
GRID = [
    (200, 3, 600, 8, 5, True, 1.0, "shared", None, False),
    (200, 3, 600, 8, 5, True, 0.0, "shared", None, False),
    (333, 2, 700, 6, 100, True, 1.0, "per_row", None, True),  # N not a tile multiple, k not pow2
    (333, 2, 700, 6, 100, False, 0.0, "per_row", 2, False),
    (300, 4, 900, 5, 200, True, 1.0, "weights", None, False),  # k > the 128-entity base tile
    (300, 4, 900, 5, 129, False, 1.0, "onehot", None, True),
    (257, 1, 400, 8, 1, True, 1.0, "onehot", None, False),  # k = 1
    (257, 1, 400, 8, 1, False, 0.0, "onehot", None, True),
    (160, 6, 500, 7, 24, True, 1.0, "shared", 3, True),
    (160, 6, 500, 7, 24, False, 0.0, "weights", None, False),
    (500, 5, 1500, 4, 64, True, 1.0, "per_row", 4, False),
    (480, 2, 300, 3, 70, True, 0.0, "onehot", None, False),  # sparse: support < k in most rows
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GRID, ids=lambda c: "n{}-r{}-b{}-k{}-{}-t{}-{}-top{}-{}".format(
    c[0], c[1], c[3], c[4], "strict" if c[5] else "loose", c[6], c[7], c[8], "head" if c[9] else "tail"))
def test_matches_reference(case, device):
    n, r0, e, batch, k, strict, tg, mode, top_relations, heads = case
    seed = 1000 * n + 10 * k + r0
    triples = random_triples(n, r0, e, seed)
    index = KGIndex.from_triples(triples, num_entities=n, num_relations=r0).to(device)
    if heads:  # corrupt heads of (h, r, t): query (t, inverse(r)) with positive h
        pick = torch.randperm(e, generator=torch.Generator().manual_seed(seed))[:batch]
        h, r, t = triples[pick].unbind(1)
        q, rel, a = t.to(device), index.inverse(r.to(device)), h.to(device)
    else:
        q, rel, a = (x.to(device) for x in queries_from_edges(index.to("cpu"), batch, seed))
    problem = _problem(index, q, rel, a, k=k, strict=strict, tg=tg, seed=seed, mode=mode,
                       top_relations=top_relations, batch=batch)
    out = triton_top_k(problem)
    assert out.device == index.device
    # with Gumbel noise only log's last ulp can differ (how often depends on the libm: not
    # counted); without it the key is P itself, summed in the same order as the reference on CPU
    # tensors, so the result is exact there
    assert_matches_reference(problem, out, max_rows=0 if (tg == 0 and device == "cpu") else None)
    # invariants: distinct, in range, never excluded (docs/semantics.md, "Candidate distribution")
    known = candidate_keys(problem) == float("-inf")
    for b in range(batch):
        row = out[b][out[b] >= 0]
        assert row.unique().numel() == row.numel()
        assert row.numel() == 0 or int(row.max()) < n
        assert not known[b, row].any()
        assert int(a[b]) not in row.tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_short_support_and_fully_excluded_rows(device):
    # relation 0 has tails {1, 2} (+ 3 via another head); query (0, 0) knows 1 and 3 -> support {2}.
    # relation 1's only tail is 5, the known answer of (4, 1): nothing left -> all -1.
    triples = torch.tensor([[0, 0, 1], [0, 0, 3], [6, 0, 2], [6, 0, 3], [4, 1, 5], [7, 2, 8]])
    index = KGIndex.from_triples(triples, num_entities=10, num_relations=3).to(device)
    q = torch.tensor([0, 4, 0, 6], device=device)
    r = torch.tensor([0, 1, 0, 0], device=device)
    a = torch.tensor([1, 5, 1, 2], device=device)
    for strict in (True, False):
        for tg in (0.0, 1.0):
            problem = prepare_problem(index, q, r, num_negatives=5, positive=a, strict=strict, temperature_gumbel=tg, seed=3)
            out = triton_top_k(problem)
            assert_matches_reference(problem, out, max_rows=0 if tg == 0 else None)
            if strict:
                assert out[0].tolist() == [2, -1, -1, -1, -1]
                assert out[1].tolist() == [-1] * 5
                assert out[3].tolist() == [1, -1, -1, -1, -1]


@pytest.mark.parametrize("device", DEVICES)
def test_seed_changes_noise_and_zero_temperature_ignores_it(device):
    triples = random_triples(150, 2, 400, seed=4)
    index = KGIndex.from_triples(triples, num_entities=150, num_relations=2).to(device)
    q, r, a = (x.to(device) for x in queries_from_edges(index.to("cpu"), 4, seed=5))
    run = lambda seed, tg: triton_top_k(prepare_problem(index, q, r, num_negatives=8, positive=a, seed=seed, temperature_gumbel=tg))  # noqa: E731
    assert torch.equal(run(1, 1.0), run(1, 1.0))
    assert not torch.equal(run(1, 1.0), run(2, 1.0))
    assert torch.equal(run(1, 0.0), run(2 ** 62 + 7, 0.0))
    big = prepare_problem(index, q, r, num_negatives=8, positive=a, seed=2 ** 63 - 1)
    assert_matches_reference(big, triton_top_k(big))


@pytest.mark.parametrize("device", DEVICES)
def test_gumbel_top1_follows_p(device):
    """Top-1 over many rows of one query (each row its own noise) is distributed as P (chi-square)."""
    triples = random_triples(25, 3, 60, seed=5)
    index = KGIndex.from_triples(triples, num_entities=25, num_relations=3).to(device)
    q, r, a = (x.to(device) for x in queries_from_edges(index.to("cpu"), 1, seed=6))
    rows = 800  # the interpreter runs ~35 ms per row program
    w = torch.rand(1, index.num_relations, generator=torch.Generator().manual_seed(7)).expand(rows, -1).contiguous().to(device)
    problem = prepare_problem(index, q.expand(rows), r.expand(rows), relation_weights=w, num_negatives=1,
                              positive=a.expand(rows), seed=11)
    top1 = triton_top_k(problem)[:, 0]
    assert_matches_reference(problem, top1[:, None])
    p = candidate_probability(problem)[0].double().cpu()
    allowed = torch.isfinite(candidate_keys(problem)[0]).cpu()
    support = torch.nonzero(allowed & (p > 0)).squeeze(1)
    assert support.numel() >= 4
    counts = torch.bincount(top1.cpu(), minlength=25)
    assert int(counts.sum()) == int(counts[support].sum()) == rows
    expected = rows * p[support] / p[support].sum()
    assert stats.chisquare(counts[support].numpy(), expected.numpy()).pvalue > 1e-4


# ---------------------------------------------------------------------------------- CUDA only
cuda_only = pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(), reason="needs a CUDA GPU (TRITON_INTERPRET unset)")


def _extra_memory(num_entities: int, batch: int, k: int) -> int:
    """Peak bytes allocated by triton_top_k above what was allocated before the call."""
    g = torch.Generator().manual_seed(num_entities)
    edges = 2 * num_entities
    triples = torch.stack([torch.randint(num_entities, (edges,), generator=g), torch.randint(8, (edges,), generator=g),
                           torch.randint(num_entities, (edges,), generator=g)], dim=1).cuda()
    index = KGIndex.from_triples(triples, num_entities=num_entities, num_relations=8)
    q, r, a = triples[:batch, 0], triples[:batch, 1], triples[:batch, 2]
    z = torch.randn(16, 32, device="cuda")
    problem = prepare_problem(index, q, r, relation_embeddings=z, num_negatives=k, positive=a, seed=1)
    triton_top_k(problem)  # warm-up: compile outside the measurement
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = triton_top_k(problem)
    torch.cuda.synchronize()
    assert out.shape == (batch, k)
    return torch.cuda.max_memory_allocated() - before


@cuda_only
def test_cuda_extra_memory_is_independent_of_n():
    batch, k = 64, 512
    small = _extra_memory(10**5, batch, k)
    for n in (10**6, 10**7):
        large = _extra_memory(n, batch, k)
        # O(B k): a (B, SPLITS <= 64, K_PAD) int64 buffer and its top-k, far below a B x N matrix
        bound = 2 * batch * 64 * k * 8 + (1 << 20)
        assert large - small <= 1 << 20, (n, small, large)
        assert large <= bound < batch * n * 4, (n, large, bound)

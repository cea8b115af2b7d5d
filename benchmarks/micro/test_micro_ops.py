"""Per-op timings: hard_negatives per backend, the strict uniform sampler, relational_spmm fwd/bwd."""

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from inputs import SIZES, graph_and_queries  # noqa: E402

from kmas_kernels import available_backends, hard_negatives  # noqa: E402
from kmas_kernels.core.uniform import uniform_negatives  # noqa: E402
from kmas_kernels.graph_ops import cached_csr, relational_spmm  # noqa: E402
from kmas_kernels.graph_ops.relational_spmm import cpu_rspmm_available  # noqa: E402

USABLE = [name for name, reason in available_backends().items() if reason is None and name != "cuda"]


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_hard_negatives(benchmark, backend, size):
    if backend not in USABLE:
        pytest.skip(f"{backend}: {available_backends()[backend]}")
    if backend == "triton" and size != "small" and os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the Triton interpreter is far too slow at this size")
    index, q, r, a, z, k = graph_and_queries(size)
    benchmark.group = f"hard_negatives/{size}"
    out = benchmark(lambda: hard_negatives(
        index, q, r, relation_embeddings=z, num_negatives=k, positive=a, strict=True, temperature=0.3,
        top_relations=10, temperature_gumbel=1.0, seed=0, backend=backend))
    assert out.shape == (q.numel(), k)


@pytest.mark.parametrize("size", list(SIZES))
def test_uniform_strict(benchmark, size):
    index, q, r, a, _, k = graph_and_queries(size)
    benchmark.group = f"uniform_strict/{size}"
    out = benchmark(lambda: uniform_negatives(index, q, r, a, k, seed=0, strict=True))
    assert out.shape == (q.numel(), k)


RSPMM = {"small": (2, 1_000, 8, 5_000, 32), "large": (4, 20_000, 32, 200_000, 32)}  # B, N, R, E, d


def _rspmm_inputs(size):
    b, n, r, e, d = RSPMM[size]
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(n, (2, e), generator=g)
    edge_type = torch.randint(r, (e,), generator=g)
    csr = cached_csr(edge_index, edge_type, n, r)
    x = torch.randn(b, n, d, generator=g)
    rel = torch.randn(b, r, d, generator=g)
    return (edge_index, edge_type), csr, x, rel


@pytest.mark.parametrize("size", list(RSPMM))
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_relational_spmm(benchmark, direction, backend, size):
    if backend == "cpu" and cpu_rspmm_available() is not None:
        pytest.skip(cpu_rspmm_available())
    keep, csr, x, rel = _rspmm_inputs(size)
    benchmark.group = f"relational_spmm_{direction}/{size}"
    if direction == "forward":
        with torch.no_grad():
            out = benchmark(lambda: relational_spmm(x, rel, csr, backend=backend))
        assert out.shape == x.shape
        return
    x.requires_grad_(True)
    rel.requires_grad_(True)

    def forward_backward():
        x.grad = rel.grad = None
        relational_spmm(x, rel, csr, backend=backend).sum().backward()
        return x.grad

    grad = benchmark(forward_backward)
    assert grad.shape == x.shape

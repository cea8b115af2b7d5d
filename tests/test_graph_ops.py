"""Fused relational message passing (kmas_kernels.graph_ops) against its plain-torch reference.

    out[b, u] = boundary[b, u] + sum_{(u, v, r) in E} x[b, v] * rel[(b,) r]

Every fused path (C++ "cpu"; "triton" on CPU tensors under TRITON_INTERPRET=1, on CUDA tensors on a
GPU machine) is checked with ``torch.autograd.gradcheck`` in float64 on small random graphs
(B = 1, isolated nodes, duplicate edges, relations with no edges, an empty graph, shared and
per-row relation vectors, d beyond one 64-feature block), and in float32 against the reference
with a tolerance (the summation order differs). Results of the C++ kernels are the same on any
number of threads (each output element has one owner and a fixed order): checked bit for bit.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kmas_kernels.graph_ops import RelationalCSR, cached_csr, fused_backend, relational_spmm
from kmas_kernels.graph_ops.relational_spmm import cpu_rspmm_available
from kmas_kernels.graph_ops.rspmm_triton import triton_rspmm_available

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
CPU_REASON = cpu_rspmm_available()
TRITON_DEVICE = "cuda" if (torch.cuda.is_available() and not INTERPRET) else "cpu"
TRITON_REASON = triton_rspmm_available(TRITON_DEVICE)
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
FUSED = [
    pytest.param("cpu", "cpu", marks=pytest.mark.skipif(CPU_REASON is not None, reason=f"C++ kernels: {CPU_REASON}")),
    pytest.param("triton", TRITON_DEVICE, marks=pytest.mark.skipif(TRITON_REASON is not None, reason=f"Triton: {TRITON_REASON}")),
]


def random_graph(num_nodes: int, num_relations: int, num_edges: int, seed: int, *, used_nodes: int | None = None,
                 used_relations: int | None = None, duplicates: int = 0, device: str = "cpu"):
    """(dst, src, type) of random edges; nodes >= used_nodes are isolated, relations >= used_relations unused;
    the first ``duplicates`` edges appear twice."""
    g = torch.Generator().manual_seed(seed)
    n = used_nodes or num_nodes
    r = used_relations or num_relations
    dst = torch.randint(n, (num_edges,), generator=g)
    src = torch.randint(n, (num_edges,), generator=g)
    typ = torch.randint(r, (num_edges,), generator=g)
    if duplicates:
        dst, src, typ = (torch.cat([t, t[:duplicates]]) for t in (dst, src, typ))
    return dst.to(device), src.to(device), typ.to(device)


def inputs(batch, num_nodes, num_relations, dim, shared, seed, dtype=torch.float64, device="cpu", grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, num_nodes, dim, generator=g, dtype=dtype)
    rel = torch.randn(*(() if shared else (batch,)), num_relations, dim, generator=g, dtype=dtype)
    boundary = torch.randn(batch, num_nodes, dim, generator=g, dtype=dtype)
    return [t.to(device).requires_grad_(grad) for t in (x, rel, boundary)]


CASES = {  # name: (batch, nodes, relations, dim, edges, options)
    "random": (2, 7, 3, 3, 20, {}),
    "B=1": (1, 6, 3, 4, 15, {}),
    "isolated nodes": (2, 9, 3, 3, 14, {"used_nodes": 5}),
    "duplicate edges": (2, 6, 2, 3, 12, {"duplicates": 5}),
    "relations without edges": (2, 6, 5, 3, 14, {"used_relations": 2}),
    "no edges": (2, 4, 2, 3, 0, {}),
}


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-row"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_float64(backend, device, shared, case):
    batch, n, r, d, e, options = CASES[case]
    dst, src, typ = random_graph(n, r, e, seed=len(case), device=device, **options)
    csr = RelationalCSR.build(dst, src, typ, n, r, chunk_size=3)  # small chunks: several per relation
    x, rel, boundary = inputs(batch, n, r, d, shared, seed=1, device=device)

    def fused(x, rel, boundary):
        return relational_spmm(x, rel, csr, boundary, backend=backend)

    # the interpreter runs every program in Python: random-projection gradcheck there (the
    # comparison with the reference below checks every gradient element anyway)
    fast = backend == "triton" and INTERPRET
    assert torch.autograd.gradcheck(fused, (x, rel, boundary), atol=1e-8, rtol=1e-6, fast_mode=fast)
    out = fused(x, rel, boundary)
    ref = relational_spmm(x, rel, csr, boundary, backend="reference")
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, rel, boundary), grad)
    theirs = torch.autograd.grad(ref, (x, rel, boundary), grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_gradcheck_reference_float64():
    dst, src, typ = random_graph(6, 3, 15, seed=3, duplicates=3)
    csr = RelationalCSR.build(dst, src, typ, 6, 3)
    for shared in (True, False):
        x, rel, boundary = inputs(2, 6, 3, 3, shared, seed=4)
        assert torch.autograd.gradcheck(lambda *a: relational_spmm(*a[:2], csr, a[2], backend="reference"), (x, rel, boundary))


@pytest.mark.parametrize("backend,device", FUSED)
def test_without_boundary_and_shared_row_vector(backend, device):
    """boundary=None adds nothing; rel of shape (1, R, d) is shared by all rows (its gradient keeps that shape)."""
    dst, src, typ = random_graph(6, 3, 18, seed=5, device=device)
    csr = RelationalCSR.build(dst, src, typ, 6, 3, chunk_size=4)
    x, rel, _ = inputs(3, 6, 3, 4, True, seed=6, device=device)
    rel1 = rel.detach().unsqueeze(0).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, r: relational_spmm(x, r, csr, None, backend=backend), (x, rel1),
                                    fast_mode=backend == "triton" and INTERPRET)
    torch.testing.assert_close(relational_spmm(x, rel1, csr, backend=backend),
                               relational_spmm(x, rel, csr, backend="reference"))


@pytest.mark.skipif(CPU_REASON is not None, reason=f"C++ kernels: {CPU_REASON}")
@pytest.mark.parametrize("dim", [64, 70, 129])
def test_cpu_float32_matches_reference(dim):
    """Wider graphs and feature blocks (d = 64, and d not a multiple of the 64-feature block)."""
    n, r = 300, 6
    dst, src, typ = random_graph(n, r, 2500, seed=dim, used_relations=5, duplicates=50)
    csr = cached_csr(torch.stack([dst, src]), typ, n, r)
    for shared in (True, False):
        x, rel, boundary = inputs(5, n, r, dim, shared, seed=7, dtype=torch.float32)
        out = relational_spmm(x, rel, csr, boundary, backend="cpu")
        ref = relational_spmm(x, rel, csr, boundary, backend="reference")
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        grad = torch.randn_like(out)
        for a, b in zip(torch.autograd.grad(out, (x, rel, boundary), grad), torch.autograd.grad(ref, (x, rel, boundary), grad)):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


@pytest.mark.skipif(CPU_REASON is not None, reason=f"C++ kernels: {CPU_REASON}")
def test_cpu_results_do_not_depend_on_thread_count():
    n, r = 200, 4
    dst, src, typ = random_graph(n, r, 3000, seed=11)
    csr = RelationalCSR.build(dst, src, typ, n, r)
    before = torch.get_num_threads()
    results = []  # 4 rows x 200 nodes x 3000 edges x 64: enough work for several threads
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            row = []
            for shared in (True, False):
                x, rel, boundary = inputs(4, n, r, 64, shared, seed=12, dtype=torch.float32)
                out = relational_spmm(x, rel, csr, boundary, backend="cpu")
                row += [out.detach(), *torch.autograd.grad(out, (x, rel, boundary), torch.ones_like(out))]
            results.append(row)
    finally:
        torch.set_num_threads(before)
    for row in results[1:]:
        for a, b in zip(results[0], row):
            assert torch.equal(a, b)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12), r=st.integers(1, 5), e=st.integers(0, 40), batch=st.integers(1, 3), d=st.integers(1, 6),
    shared=st.booleans(), chunk=st.integers(1, 8), seed=st.integers(0, 2**16),
)
def test_cpu_random_graphs_property(n, r, e, batch, d, shared, chunk, seed):
    """Any graph, any chunking: the C++ kernels equal the reference (forward and all gradients)."""
    if CPU_REASON is not None:
        pytest.skip(f"C++ kernels: {CPU_REASON}")
    dst, src, typ = random_graph(n, r, e, seed=seed)
    csr = RelationalCSR.build(dst, src, typ, n, r, chunk_size=chunk)
    x, rel, boundary = inputs(batch, n, r, d, shared, seed=seed)
    out = relational_spmm(x, rel, csr, boundary, backend="cpu")
    ref = relational_spmm(x, rel, csr, boundary, backend="reference")
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (x, rel, boundary), grad), torch.autograd.grad(ref, (x, rel, boundary), grad)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_csr_layouts():
    dst, src, typ = random_graph(8, 3, 30, seed=13, used_relations=2, duplicates=4)
    csr = RelationalCSR.build(dst, src, typ, 8, 3, chunk_size=4)
    order = torch.argsort(dst, stable=True)
    assert torch.equal(csr.dst_src.long(), src[order]) and torch.equal(csr.dst_type.long(), typ[order])
    assert torch.equal(csr.dst_ptr, torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(dst, minlength=8).cumsum(0)]))
    assert torch.equal(csr.dst_of_sorted_edges(), dst[order])
    order = torch.argsort(src, stable=True)
    assert torch.equal(csr.src_dst.long(), dst[order]) and torch.equal(csr.src_type.long(), typ[order])
    # chunks: at most 4 edges, never across relations, relation 2 has none
    counts = torch.bincount(typ, minlength=3)
    sizes = csr.chunk_start[1:] - csr.chunk_start[:-1]
    assert int(sizes.max()) <= 4 and int(sizes.min()) >= 1 and int(csr.chunk_start[-1]) == 34
    for r in range(3):
        c0, c1 = int(csr.chunk_ptr[r]), int(csr.chunk_ptr[r + 1])
        assert c1 - c0 == (int(counts[r]) + 3) // 4
        if c1 > c0:
            e0, e1 = int(csr.chunk_start[c0]), int(csr.chunk_start[c1])
            assert e1 - e0 == int(counts[r])
            assert torch.equal(typ[torch.argsort(typ, stable=True)][e0:e1], torch.full((e1 - e0,), r))


def test_cached_csr_is_built_once_per_edge_tensor():
    dst, src, typ = random_graph(6, 2, 12, seed=14)
    edge_index = torch.stack([dst, src])
    csr = cached_csr(edge_index, typ, 6, 2)
    assert cached_csr(edge_index, typ, 6, 2) is csr
    assert cached_csr(edge_index.clone(), typ, 6, 2) is not csr  # another tensor
    flipped = cached_csr(edge_index, typ, 6, 2, flow="source_first")
    assert torch.equal(flipped.dst_ptr, csr.src_ptr)
    edge_index[0, 0] = (edge_index[0, 0] + 1) % 6  # in-place change: rebuilt
    rebuilt = cached_csr(edge_index, typ, 6, 2)
    assert rebuilt is not csr and rebuilt.dst_ptr.tolist() != csr.dst_ptr.tolist()


def test_bad_input_is_rejected():
    dst, src, typ = random_graph(5, 2, 10, seed=15)
    with pytest.raises(ValueError, match="node ids"):
        RelationalCSR.build(dst, src, typ, 4, 2) if int(torch.maximum(dst, src).max()) >= 4 else RelationalCSR.build(dst, src - 9, typ, 5, 2)
    with pytest.raises(ValueError, match="edge_type"):
        RelationalCSR.build(dst, src, typ + 2, 5, 2)
    with pytest.raises(TypeError, match="dst"):
        RelationalCSR.build(dst.float(), src, typ, 5, 2)
    with pytest.raises(ValueError, match="one length"):
        RelationalCSR.build(dst[:-1], src, typ, 5, 2)
    csr = RelationalCSR.build(dst, src, typ, 5, 2)
    x, rel, boundary = inputs(2, 5, 2, 3, False, seed=0, grad=False)
    with pytest.raises(ValueError, match="x must have shape"):
        relational_spmm(x[:, :4], rel, csr, boundary)
    with pytest.raises(ValueError, match="rel must"):
        relational_spmm(x, rel[:, :1], csr, boundary)
    with pytest.raises(ValueError, match="rel must"):
        relational_spmm(x, torch.cat([rel, rel]), csr, boundary)
    with pytest.raises(ValueError, match="boundary"):
        relational_spmm(x, rel, csr, boundary[:1])
    with pytest.raises(TypeError, match="x must be a floating-point"):
        relational_spmm(x.long(), rel, csr, boundary)
    with pytest.raises(TypeError, match="csr"):
        relational_spmm(x, rel, (dst, src, typ), boundary)
    with pytest.raises(ValueError, match="backend"):
        relational_spmm(x, rel, csr, boundary, backend="fast")
    if CPU_REASON is None:
        with pytest.raises(TypeError, match="float32"):
            relational_spmm(x.bfloat16(), rel.bfloat16(), csr, boundary.bfloat16(), backend="cpu")


def test_auto_falls_back_loudly_for_unsupported_dtype():
    dst, src, typ = random_graph(5, 2, 10, seed=16)
    csr = RelationalCSR.build(dst, src, typ, 5, 2)
    x, rel, boundary = inputs(2, 5, 2, 3, True, seed=0, dtype=torch.bfloat16, grad=False)
    chosen, reason = fused_backend("cpu", torch.bfloat16)
    assert chosen is None and reason
    with pytest.warns(RuntimeWarning, match="plain-torch reference"):
        out = relational_spmm(x, rel, csr, boundary)
    torch.testing.assert_close(out, relational_spmm(x, rel, csr, boundary, backend="reference"))

"""The native backends (csrc/: C++/OpenMP and CUDA) against the reference.

Equality rule (tests/tie_rule.py): P is summed in float32 in the same order as the reference, so
deterministic mode is exact; with Gumbel noise the platform's logf may differ from torch's log by
an ulp, so results are identical except where the reference keys of two entities agree to float
precision (near-ties). How often that happens depends on the CPU and libm, so it is not counted.
Philox words are integers and compared bit for bit.
"""

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from scipy import stats

from conftest import queries_from_edges, random_triples, weight_inputs
from tie_rule import assert_matches_reference
from kmas_kernels import KGIndex
from kmas_kernels.backends import native
from kmas_kernels.core import philox
from kmas_kernels.backends.registry import load_extension
from kmas_kernels.core.problem import prepare_problem
from kmas_kernels.core.reference import candidate_keys, candidate_probability

ROOT = Path(__file__).resolve().parents[1]
CPU_REASON = native.cpu_available()
CUDA_REASON = native.cuda_available()
needs_cpu = pytest.mark.skipif(CPU_REASON is not None, reason=f"cpu backend: {CPU_REASON}")
needs_cuda = pytest.mark.skipif(CUDA_REASON is not None, reason=f"cuda backend: {CUDA_REASON}")


def test_availability_reports():
    for reason in (CPU_REASON, CUDA_REASON):
        assert reason is None or (isinstance(reason, str) and reason)
    print(f"native cpu: {CPU_REASON or 'available'}; native cuda: {CUDA_REASON or 'available'}")
    if CPU_REASON is not None:
        index = KGIndex.from_triples(random_triples(10, 2, 20, 0), num_entities=10, num_relations=2)
        q, r, a = queries_from_edges(index, 2, 0)
        problem = prepare_problem(index, q, r, num_negatives=2, positive=a, seed=0)
        with pytest.raises(RuntimeError):
            native.native_top_k(problem)


def make_problem(n, r0, edges, batch, k, *, strict, tg, weights, heads, graph_seed, seed, device="cpu"):
    index = KGIndex.from_triples(random_triples(n, r0, edges, graph_seed), num_entities=n, num_relations=r0)
    q, r, a = queries_from_edges(index, batch, graph_seed + 1)
    if heads:  # corrupt heads of the same edges: query (answer, inverse(r)), positive = query
        q, r, a = a, index.inverse(r), q
    kwargs = weight_inputs(weights, batch, index.num_relations, graph_seed + 2, device)  # "one_hot": neither
    index = index.to(device)
    return prepare_problem(
        index, q.to(device), r.to(device), num_negatives=k, positive=a.to(device), strict=strict,
        temperature_gumbel=tg, seed=seed, **kwargs,
    )


# (entities, original relations, triples, batch, k): N not a multiple of any chunk (4096 on CPU,
# 256 * 16 on CUDA), k not a power of two, k larger than the support for one-hot weights
SHAPES = [(37, 2, 60, 5, 1), (501, 3, 900, 7, 33), (9001, 6, 12000, 3, 100), (2500, 4, 3000, 4, 1000)]


@needs_cpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("tg", [0.0, 1.0])
@pytest.mark.parametrize("weights, heads", [("shared", False), ("per_row", True), ("uniform", False), ("one_hot", True)])
def test_cpu_matches_reference(shape, strict, tg, weights, heads):
    n, r0, edges, batch, k = shape
    problem = make_problem(
        n, r0, edges, batch, k, strict=strict, tg=tg, weights=weights, heads=heads, graph_seed=n + batch, seed=n * 7919
    )
    # both sum P in float32 in the same order; only logf vs torch.log (an ulp) can reorder noisy
    # keys, and deterministic keys (P itself) must be exact
    assert_matches_reference(problem, native.native_top_k(problem), max_rows=0 if tg == 0 else None)


@needs_cpu
@pytest.mark.parametrize("threads", [1, 3, 8])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_cpu_chunking_does_not_change_result(threads, batch):
    """Many (row, chunk) tasks per row, merged: same as the reference and as one thread.

    Thread count must not change a single id: every entity's key is computed the same way
    whichever thread scores it (the skip tests only skip), and the merge is exact integer work.
    """
    problem = make_problem(
        13001, 5, 20000, batch, 77, strict=True, tg=1.0, weights="uniform", heads=False, graph_seed=batch, seed=99
    )
    got = native.native_cpu_top_k(problem, num_threads=threads)
    assert torch.equal(got, native.native_cpu_top_k(problem, num_threads=1))
    assert_matches_reference(problem, got)


def _all_excluded_problem(device="cpu"):
    # relation 0 has tails {1, 2}; entity 0 knows both: with strict, one-hot rows have no support
    triples = torch.tensor([[0, 0, 1], [0, 0, 2], [3, 1, 4], [5, 1, 6], [7, 1, 8], [9, 0, 2]])
    index = KGIndex.from_triples(triples, num_entities=12, num_relations=2).to(device)
    q = torch.tensor([0, 9, 0, 3], device=device)
    r = torch.tensor([0, 0, 0, 1], device=device)
    a = torch.tensor([1, 2, 2, 4], device=device)
    return prepare_problem(index, q, r, num_negatives=3, positive=a, strict=True, seed=5)


@needs_cpu
def test_rows_with_every_candidate_excluded():
    problem = _all_excluded_problem()
    got = native.native_top_k(problem)
    assert_matches_reference(problem, got)  # noisy keys (tg = 1): float ties allowed, not counted
    assert (got[0] == -1).all() and (got[2] == -1).all()
    assert got[1].tolist() == [1, -1, -1]  # (9, 0, ?) knows only 2: 1 is left


@needs_cpu
@pytest.mark.parametrize("strict", [True, False])
def test_invariants(strict):
    problem = make_problem(
        700, 4, 1500, 16, 40, strict=strict, tg=1.0, weights="one_hot", heads=False, graph_seed=3, seed=11
    )
    got = native.native_top_k(problem)
    p = candidate_probability(problem)
    keys = candidate_keys(problem)
    for b in range(problem.batch_size):
        row = got[b]
        valid = row[row >= 0]
        assert (row[len(valid):] == -1).all(), "-1 only after the chosen ids"
        assert len(set(valid.tolist())) == len(valid)
        assert (p[b, valid] > 0).all()
        assert torch.isfinite(keys[b, valid]).all(), "never an excluded entity"
        support = int(torch.isfinite(keys[b]).sum())
        assert len(valid) == min(problem.num_negatives, support)
        assert int(valid[0]) == int(torch.argmax(keys[b]))


@needs_cpu
def test_top1_follows_p():
    """Gumbel-max: over many rows with the same query, the top-1 entity is distributed as P."""
    triples = torch.tensor([[0, 0, t] for t in range(1, 7)] + [[7, 1, t] for t in (2, 3, 8)] + [[9, 2, 1]])
    index = KGIndex.from_triples(triples, num_entities=10, num_relations=3)
    rows = 6000
    q = torch.full((rows,), 0)
    r = torch.full((rows,), 0)
    w = torch.zeros(rows, index.num_relations)
    w[:, 0], w[:, 1], w[:, 2] = 1.0, 2.0, 0.5
    problem = prepare_problem(
        index, q, r, relation_weights=w, num_negatives=1, positive=torch.full((rows,), 1), strict=False, seed=2024
    )
    top = native.native_top_k(problem)[:, 0]
    p = candidate_probability(problem)[0].double()
    p[1] = 0  # the positive
    support = torch.nonzero(p > 0).flatten()
    expected = p[support] / p[support].sum() * rows
    observed = torch.bincount(top, minlength=index.num_entities)[support].double()
    assert int(observed.sum()) == rows
    _, pvalue = stats.chisquare(observed.numpy(), expected.numpy())
    assert pvalue > 1e-4, (observed.tolist(), expected.tolist())


@needs_cpu
def test_rng_hooks_match_python_stream():
    module = load_extension("_native_cpu")
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 2**20, (5000,), generator=g)
    ents = torch.randint(0, 2**31 - 1, (5000,), generator=g)
    for seed in (0, 1, 2**32 - 1, 2**32, (1 << 62) + 12345, 2**63 - 1):
        out = torch.empty(5000, dtype=torch.int64)
        module.random_uint32(seed, rows.data_ptr(), ents.data_ptr(), out.data_ptr(), 5000)
        assert torch.equal(out, philox.random_uint32(seed, rows, ents))
    x = torch.cat([torch.tensor([0, 1, 2, 2**24, 2**31, 2**32 - 2, 2**32 - 1]), out])
    got = torch.empty(x.numel(), dtype=torch.float32)
    module.gumbel_from_uint32(x.data_ptr(), got.data_ptr(), x.numel())
    expected = philox.gumbel_from_uint32(x)
    # floats went through two logs (glibc's logf here, torch's vectorised log there): which values
    # agree bit for bit depends on the CPU and libm, so only the distance is checked (a few ulps)
    torch.testing.assert_close(got, expected, rtol=2e-6, atol=2e-6)


@needs_cpu
def test_bad_input_never_reaches_native_code():
    problem = make_problem(50, 2, 80, 3, 2, strict=True, tg=1.0, weights="one_hot", heads=False, graph_seed=1, seed=1)
    wrong_dtype = dataclasses.replace(problem, index=dataclasses.replace(problem.index, ent_rels=problem.index.ent_rels.long()))
    with pytest.raises(TypeError, match="ent_rels"):
        native.native_top_k(wrong_dtype)
    wrong_shape = dataclasses.replace(problem, known_end=problem.known_end[:2])
    with pytest.raises(ValueError, match="known_end"):
        native.native_top_k(wrong_shape)
    out_of_range = dataclasses.replace(problem, known_end=problem.known_end + 10**6)
    with pytest.raises(ValueError, match="known_start/known_end"):
        native.native_top_k(out_of_range)
    non_contiguous = dataclasses.replace(problem, positive=torch.stack([problem.positive, problem.positive], 1)[:, 0])
    assert torch.equal(native.native_top_k(non_contiguous), native.native_top_k(problem))


def test_core_unit_test_in_cpp(tmp_path):
    """csrc/tests/test_core.cpp: Philox known answers, packed keys, heap + merge, exclusion."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++") or shutil.which("c++")
    source = ROOT / "csrc" / "tests" / "test_core.cpp"
    if cxx is None or not source.exists():
        pytest.skip("needs a C++ compiler and csrc/")
    binary = tmp_path / "test_core"
    subprocess.run(
        [cxx, "-std=c++17", "-O1", "-ffp-contract=off", "-fno-fast-math", "-I", str(ROOT / "csrc"), str(source), "-o", str(binary)],
        check=True,
    )
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr


# ---------------------------------------------------------------------------- CUDA


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES + [(200_003, 20, 400_000, 64, 512), (30_011, 8, 60_000, 3, 5000)])
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("tg", [0.0, 1.0])
@pytest.mark.parametrize("weights, heads", [("shared", False), ("per_row", True), ("one_hot", True)])
def test_cuda_matches_reference(shape, strict, tg, weights, heads):
    n, r0, edges, batch, k = shape
    problem = make_problem(
        n, r0, edges, batch, k, strict=strict, tg=tg, weights=weights, heads=heads, graph_seed=n + batch,
        seed=n * 7919, device="cuda",
    )
    got = native.native_top_k(problem)
    assert got.device.type == "cuda"
    assert_matches_reference(problem, got)
    # the CUDA reference sums P with atomics (no fixed order); the CPU reference sums in index
    # order, as the kernel does: judge the GPU result against it too (tie rule, no ulp counting)
    cpu_problem = dataclasses.replace(
        problem,
        index=problem.index.to("cpu"),
        **{f: getattr(problem, f).cpu() for f in ("query_entity", "query_relation", "positive", "weights", "known_start", "known_end")},
    )
    assert_matches_reference(cpu_problem, got.cpu(), max_rows=0 if tg == 0 else None)


@needs_cuda
@pytest.mark.parametrize("batch, k", [(1, 512), (1, 100), (2, 7)])
def test_cuda_small_batch_tree_merge(batch, k):
    """Small B: many select blocks per row (N / 4096 of them here, odd counts included), merged
    pairwise in log2(splits) levels (kmas_core.h: merge_level_slot)."""
    problem = make_problem(
        100_003, 8, 200_000, batch, k, strict=True, tg=1.0, weights="shared", heads=False, graph_seed=k, seed=k, device="cuda"
    )
    assert_matches_reference(problem, native.native_top_k(problem))


@needs_cuda
def test_cuda_rows_with_every_candidate_excluded():
    problem = _all_excluded_problem("cuda")
    assert_matches_reference(problem, native.native_top_k(problem))


@needs_cuda
def test_cuda_on_a_side_stream():
    problem = make_problem(5000, 4, 8000, 8, 64, strict=True, tg=1.0, weights="shared", heads=False, graph_seed=4, seed=4, device="cuda")
    expected = native.native_top_k(problem)
    stream = torch.cuda.Stream()
    # the problem's tensors were made on the default stream: order the side stream after them
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = native.native_top_k(problem)
        # the kernel ran on `stream` (asynchronously): the result is usable there before any sync
        same = torch.equal(got, expected)
        for tensor in (got, expected):
            tensor.record_stream(stream)
    torch.cuda.current_stream().wait_stream(stream)
    assert same
    assert torch.equal(got, expected)

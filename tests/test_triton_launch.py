"""The Triton launcher beyond one program per row: several programs per row (splits) sharing a
threshold through atomic_max, the (row * splits + split) * K_PAD output layout and the host merge;
tile-size overrides; the k limit and its routing; fixed launch configurations (no autotuning).

Under TRITON_INTERPRET=1 (CI) programs run one after another, so later splits of a row start
from the threshold earlier ones raised: the shared-threshold path runs. Shapes are tiny.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import queries_from_edges, random_triples
from tie_rule import assert_matches_reference
from kmas_kernels import KGIndex, hard_negatives
from kmas_kernels.hard_negatives import resolve_backend
from kmas_kernels.core.problem import prepare_problem

triton_topk = pytest.importorskip("kmas_kernels.backends.triton_topk")
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRET else "cuda"
runs_here = pytest.mark.skipif(
    triton_topk.triton_available(DEVICE) is not None, reason=f"triton backend: {triton_topk.triton_available(DEVICE)}"
)


def _problem(n, batch, k, *, tg, weights, seed, strict=True, r0=3, edges=None):
    triples = random_triples(n, r0, edges or 3 * n, seed)
    index = KGIndex.from_triples(triples, num_entities=n, num_relations=r0).to(DEVICE)
    q, r, a = (x.to(DEVICE) for x in queries_from_edges(index.to("cpu"), batch, seed))
    kwargs = {}
    if weights == "shared":
        kwargs["relation_embeddings"] = torch.randn(index.num_relations, 8, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
    return prepare_problem(index, q, r, num_negatives=k, positive=a, strict=strict, temperature_gumbel=tg, seed=seed, **kwargs)


# (N, B, k, temperature_gumbel, weights, splits, BLOCK_N): splits that do not divide N, chunks
# shorter than a tile, more splits than tiles, k not a power of two, deterministic and noisy keys
MULTI_SPLIT = [
    (300, 2, 5, 1.0, "shared", 3, 16),
    (300, 2, 5, 0.0, "shared", 7, 16),
    (257, 3, 12, 1.0, "one_hot", 5, 32),
    (200, 1, 16, 1.0, "shared", 64, 16),  # 64 splits of 4 entities: mostly empty buffers
    (400, 2, 33, 0.5, "shared", 2, 64),  # temperature != 1: no draw test
]


@runs_here
@pytest.mark.parametrize("case", MULTI_SPLIT, ids=lambda c: "n{}-b{}-k{}-t{}-{}-s{}-bn{}".format(*c))
def test_multi_split_matches_one_split_and_reference(case):
    n, batch, k, tg, weights, splits, block_n = case
    problem = _problem(n, batch, k, tg=tg, weights=weights, seed=n + splits)
    got = triton_topk.triton_top_k(problem, _splits=splits, _block_n=block_n)
    single = triton_topk.triton_top_k(problem, _splits=1, _block_n=block_n)
    assert torch.equal(got, single), "the work split changed the result"
    assert_matches_reference(problem, got, max_rows=0 if tg == 0 else None)  # noisy ties: libm-dependent, not counted


@runs_here
def test_shared_threshold_and_output_layout():
    """The raw kernel outputs: every (row, split) buffer ascending with keys of its own range only,
    and the row threshold equal to a K_PAD-th key of some split (atomic_max of the buffers')."""
    problem = _problem(240, 2, 4, tg=1.0, weights="shared", seed=9)
    captured = {}
    real = torch.topk

    def spy(x, k, *args, **kwargs):  # the host merge: capture the (B, splits * K_PAD) keys
        captured["keys"] = x.clone()
        return real(x, k, *args, **kwargs)

    torch.topk = spy
    try:
        got = triton_topk.triton_top_k(problem, _splits=3, _block_n=16)
    finally:
        torch.topk = real
    keys = captured["keys"].view(problem.batch_size, 3, 4).cpu()
    chunk = 80
    for b in range(problem.batch_size):
        for s in range(3):
            row = keys[b, s]
            assert torch.equal(row, torch.sort(row).values), "each buffer ascending"
            ids = 4294967295 - (row[row != -(1 << 63)] & 0xFFFFFFFF)
            assert ((ids >= s * chunk) & (ids < (s + 1) * chunk)).all(), (b, s, ids)
    assert_matches_reference(problem, got)  # tg = 1: ties depend on the libm, not counted


@runs_here
def test_overrides_are_checked():
    problem = _problem(50, 1, 5, tg=1.0, weights="one_hot", seed=1)
    with pytest.raises(ValueError, match="_block_n"):
        triton_topk.triton_top_k(problem, _block_n=4)  # < K_PAD = 8
    with pytest.raises(ValueError, match="_block_n"):
        triton_topk.triton_top_k(problem, _block_n=24)
    with pytest.raises(ValueError, match="_splits"):
        triton_topk.triton_top_k(problem, _splits=0)
    with pytest.raises(ValueError, match="_splits"):
        triton_topk.triton_top_k(problem, _splits=65)


def test_k_limit_and_routing():
    """k <= MAX_K runs on Triton; above, an explicit backend='triton' is a clear error and 'auto'
    never picks Triton."""
    limit = triton_topk.MAX_K
    triton_topk.check_k(limit)
    with pytest.raises(ValueError, match="num_negatives <= 1024.*backend='cuda'"):
        triton_topk.check_k(limit + 1)
    assert triton_topk.k_pad_of(limit) in triton_topk.LAUNCH_CONFIGS
    assert all(block >= k_pad for k_pad, (block, _) in triton_topk.LAUNCH_CONFIGS.items())
    n = limit + 50
    index = KGIndex.from_triples(random_triples(n, 2, 4 * n, 3), num_entities=n, num_relations=2)
    problem = prepare_problem(index, [0], [0], num_negatives=limit + 1, strict=False, seed=0)
    with pytest.raises(ValueError, match="backend='triton' takes num_negatives"):
        triton_topk.triton_top_k(problem)
    cpu = torch.device("cpu")
    if INTERPRET:  # Triton runs on CPU tensors: the limit is what refuses
        assert resolve_backend("triton", cpu, num_negatives=limit).name == "triton"
        with pytest.raises(ValueError, match="num_negatives"):
            resolve_backend("triton", cpu, num_negatives=limit + 1)
    assert resolve_backend("auto", cpu, num_negatives=limit + 1).name in ("cpu", "reference")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_routes_large_k_to_cuda():
    from kmas_kernels.backends import native

    importlib.import_module("kmas_kernels.hard_negatives")._WARNED_LARGE_K = False  # the warning is once per process
    cuda = torch.device("cuda")
    expected = "cuda" if native.cuda_available() is None else "reference"
    with pytest.warns(UserWarning) if expected == "reference" else _no_warning():
        assert resolve_backend("auto", cuda, num_negatives=triton_topk.MAX_K + 1).name == expected


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_no_autotuning():
    """One fixed configuration per K_PAD: the launcher never wraps the kernel in an autotuner."""
    import inspect

    source = inspect.getsource(triton_topk)
    assert "autotune(" not in source
    assert sorted(triton_topk.LAUNCH_CONFIGS) == [1 << i for i in range(1, 11)]


def test_offline_compile_of_the_training_variants(tmp_path):
    """The variants training launches (benchmarks/triton_offline.py binds real launch arguments)
    compile for sm_90a with their fixed configs, one key each and no register spills, with no GPU
    (Triton's bundled ptxas; a process without TRITON_INTERPRET). K_PAD 4 spilled at (256, 4 warps)
    on Triton 3.6, K_PAD 64 on 3.9."""
    pytest.importorskip("triton")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "triton_offline.py"
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    out = tmp_path / "offline.json"
    k_pads = ["4", "64"]
    result = subprocess.run([sys.executable, str(script), "--k-pads", *k_pads, "--out", str(out)], env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and not out.exists():
        if "ptxas" in result.stderr and ("No such file" in result.stderr or "not found" in result.stderr):
            pytest.skip(f"no bundled ptxas on this platform: {result.stderr[-300:]}")
        pytest.fail(result.stdout + result.stderr)
    rows = json.loads(out.read_text())["configs"]
    assert [row["k_pad"] for row in rows] == [int(k) for k in k_pads]
    for row in rows:
        assert "error" not in row, row
        meta = row["constexprs"]
        assert row["arch"] == "sm_90a" and (meta["BLOCK_N"], meta["num_warps"]) == triton_topk.LAUNCH_CONFIGS[row["k_pad"]]
        assert row["variants"] == 1 and row["signature"]["seed"] == "i64"
        assert row["registers"] is not None and row["registers"] <= 255, row
        assert row["spill_stores"] == 0 and row["spill_loads"] == 0, row
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(), reason="needs a CUDA GPU (TRITON_INTERPRET unset)")
@pytest.mark.parametrize("batch, k", [(1, 64), (3, 512)])
def test_cuda_many_splits_large_n(batch, k):
    """N >= 10^4 and a small batch: the default plan uses many splits per row on a GPU."""
    problem = _problem(30_011, batch, k, tg=1.0, weights="shared", seed=k, r0=8, edges=60_000)
    splits, _, _, _ = triton_topk._plan(problem, problem.index.device, None, None)
    assert splits > 1
    got = triton_topk.triton_top_k(problem)
    assert_matches_reference(problem, got)  # tg = 1: ties depend on the libm, not counted
    for splits in (1, 7):
        assert_matches_reference(problem, triton_topk.triton_top_k(problem, _splits=splits))
    out = hard_negatives(problem.index, problem.query_entity, problem.query_relation, num_negatives=k, positive=problem.positive, seed=1, backend="triton")
    assert out.shape == (batch, k)


@runs_here
def test_warm_up_compiles_the_requested_k_pads():
    """warm_up runs the kernel once per (K_PAD, noise mode) on a toy graph and returns nothing."""
    assert triton_topk.warm_up(DEVICE, k_values=[3]) is None

"""Kernels compile once per launch configuration: no recompiles at random training steps.

Triton compiles a new variant of a kernel whenever the *specialisation* of a launch changes (an
int argument equal to 1, divisible by 16, or fitting int32; a pointer's 16-byte alignment). Per-step
seeds from ``mix_seed`` are divisible by 16 one time in 16, batches and graphs change sizes: each
would cost a 1-4 s compile in the middle of training. Here the real launch code paths run with the
kernels replaced by recorders (no GPU, nothing executes), and the recorded arguments are bound
offline with Triton's own binder for sm_90 (kmas_kernels.backends.triton_specialize): 100
consecutive training seeds with varying B and N must give ONE key per (K_PAD, noise mode), the
very key ``warm_up`` compiles.
"""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")

from kmas_kernels import KGIndex, hard_negatives  # noqa: E402
from kmas_kernels.backends import triton_topk  # noqa: E402
from kmas_kernels.backends import triton_specialize as spec  # noqa: E402
from kmas_kernels.core.philox import mix_seed  # noqa: E402
from kmas_kernels.graph_ops import cached_csr, relational_spmm  # noqa: E402
from kmas_kernels.graph_ops import rspmm_triton  # noqa: E402

SMS = 132  # an H100/H200: the split rule depends on the SM count
BATCHES = (1, 2, 16, 17, 64)
SIZES = (600, 1024, 1025, 4096)


class Recorder:
    """Stands in for a @triton.jit kernel: ``kernel[grid](*args, **meta)`` records, runs nothing."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        return lambda *args, **meta: self.calls.append((grid, args, meta))

    def keys(self) -> set[str]:
        return {spec.bind(self.kernel, args, meta).key for _, args, meta in self.calls}

    def keys_per_config(self) -> dict[str, set[str]]:
        """Launch configuration (constexprs, num_warps) -> the keys launched with it."""
        out: dict[str, set[str]] = {}
        for _, args, meta in self.calls:
            out.setdefault(repr(sorted(meta.items())), set()).add(spec.bind(self.kernel, args, meta).key)
        return out


def _skip_without_binder():
    try:
        spec.jit_function(triton_topk._hard_negative_topk_kernel)
        spec.cuda_target()
    except spec.SpecializationUnsupported as exc:
        pytest.skip(f"Triton {triton.__version__} lacks the specialisation API this test drives: {exc}")


@pytest.fixture
def topk_recorder(monkeypatch):
    """The top-k kernel recorded, launches planned as on a GPU with SMS multiprocessors."""
    _skip_without_binder()
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the launcher accepts CPU tensors; the kernel never runs
    recorder = Recorder(triton_topk._hard_negative_topk_kernel)
    monkeypatch.setattr(triton_topk, "_hard_negative_topk_kernel", recorder)
    plan = triton_topk._plan
    monkeypatch.setattr(triton_topk, "_plan", lambda p, d, s, b, sms=None: plan(p, d, s, b, SMS))
    return recorder


def _graph(n: int, seed: int) -> KGIndex:
    g = torch.Generator().manual_seed(seed)
    e = 3 * n
    triples = torch.stack([torch.randint(n, (e,), generator=g), torch.randint(5, (e,), generator=g), torch.randint(n, (e,), generator=g)], 1)
    return KGIndex.from_triples(triples, num_entities=n, num_relations=5, add_inverse=True)


def _training_calls(k: int, base_seed: int = 2024):
    """100 consecutive training steps: seed mix_seed(base, step), B and N varying step by step."""
    graphs = {n: _graph(n, n) for n in SIZES}
    g = torch.Generator().manual_seed(k)
    for step in range(100):
        index = graphs[SIZES[step % len(SIZES)]]
        batch = BATCHES[step % len(BATCHES)]
        q = torch.randint(index.num_entities, (batch,), generator=g)
        r = torch.randint(index.num_relations, (batch,), generator=g)
        z = torch.randn(batch, index.num_relations, 8, generator=g)
        hard_negatives(index, q, r, relation_embeddings=z, num_negatives=k, strict=True, seed=mix_seed(base_seed, step), backend="triton")


@pytest.mark.parametrize("k", [8, 500])
def test_training_steps_reuse_one_variant(topk_recorder, k):
    _training_calls(k)
    assert len(topk_recorder.calls) == 100
    keys = topk_recorder.keys()
    assert len(keys) == 1, f"{len(keys)} compiled variants over 100 training steps:\n" + "\n".join(sorted(keys))
    # the variant warm_up compiles is that one
    warm = Recorder(topk_recorder.kernel)
    triton_topk._hard_negative_topk_kernel = warm  # undone by the fixture's monkeypatch
    triton_topk.warm_up("cpu", k_values=[k])
    assert warm.keys() == keys


def test_sizes_and_seed_are_typed_int64(topk_recorder):
    _training_calls(8)
    _, args, meta = topk_recorder.calls[0]
    bound = spec.bind(topk_recorder.kernel, args, meta)
    for name in ("num_entities", "num_relations", "chunk", "seed"):
        assert bound.signature[name] == "i64", bound.signature


def test_the_binder_sees_specialisations():
    """Control: without do_not_specialize, seeds divisible by 16, seed 1 and int32-sized seeds
    give other variants, so the single key above is not an artefact of the binder."""
    _skip_without_binder()
    import triton.language as tl

    @triton.jit
    def plain(out_ptr, seed, BLOCK: tl.constexpr):
        tl.store(out_ptr + tl.arange(0, BLOCK), tl.randint(seed, tl.arange(0, BLOCK)))

    out = torch.empty(16, dtype=torch.int32)
    keys = {spec.bind(plain, (out, seed), {"BLOCK": 16}).key for seed in (mix_seed(1, 0), 1, 5, 16 << 40, 3 << 40)}
    assert len(keys) == 4  # int64 plain, 1 (constant), int32, int64 divisible by 16 (3 << 40 is too)


def test_message_passing_reuses_one_variant(monkeypatch):
    """The relational-spmm kernels: one variant per launch configuration (constexprs: layout flags,
    BLOCK_B from the batch, BLOCK_D from d) over batches and graph sizes."""
    _skip_without_binder()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    recorders = {}
    for name in ("_gather_kernel", "_chunk_partial_kernel", "_chunk_reduce_kernel"):
        recorders[name] = Recorder(getattr(rspmm_triton, name))
        monkeypatch.setattr(rspmm_triton, name, recorders[name])
    g = torch.Generator().manual_seed(0)
    # BLOCK_B = 16 for batches 9..16 and 64 for 33 and more (d = 32): sizes vary within a configuration
    for batch, nodes in [(16, 17), (9, 64), (13, 1000), (64, 33), (100, 16), (70, 40)]:
        edges = 4 * nodes
        dst, src, typ = (torch.randint(nodes, (edges,), generator=g), torch.randint(nodes, (edges,), generator=g),
                         torch.randint(6, (edges,), generator=g))
        csr = cached_csr(torch.stack([src, dst]), typ, nodes, 6)
        x = torch.randn(batch, nodes, 32, generator=g, requires_grad=True)
        rel = torch.randn(batch, 6, 32, generator=g, requires_grad=True)
        relational_spmm(x, rel, csr, torch.randn(batch, nodes, 32, generator=g), backend="triton").sum().backward()
    for name, recorder in recorders.items():
        per_config = recorder.keys_per_config()
        assert len(per_config) >= 2 and len(recorder.calls) >= 2 * len(per_config), (name, len(recorder.calls), len(per_config))
        for config, keys in per_config.items():
            assert len(keys) == 1, (name, config, sorted(keys))

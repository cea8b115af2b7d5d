"""Triton kernels of the relational sparse-dense product (CUDA; CPU tensors under ``TRITON_INTERPRET=1``).

Same contract and summation order as the C++ kernel (csrc/cpu/rspmm_cpu.cpp):

- :func:`triton_gather`: ``out[b, u] = boundary[b, u] + sum_{e in CSR row u} x[b, col[e]] * rel[(b,) typ[e]]``;
  one program per (output node, block of rows) walks the node's edges in CSR order and keeps a
  (BLOCK_B, BLOCK_D) accumulator; ``x`` rows of one edge are contiguous d-vectors. Used on the
  destination CSR (forward) and on the source CSR with x = grad_out (gradient of x).
- :func:`triton_relation_grad`: one program per (chunk of relation-sorted edges, block of rows)
  writes the chunk's partial sum ``sum_e grad_out[b, dst[e]] * x[b, src[e]]`` into a (C, B, d)
  buffer; a second kernel sums each relation's chunks in order (and, for vectors shared by all
  rows, the rows too): no atomics, deterministic.

Accumulation in float32 (float64 for float64 inputs); fp16 / bf16 inputs are read and written in
their dtype. No ``tl.dot`` (broken for bf16 in the interpreter) and no libdevice. Works on Triton
3.6 .. 3.9.
"""

from __future__ import annotations

import contextlib

import torch

from ..backends.registry import triton_available

try:  # triton is optional: the op reports this path unavailable without it
    import triton
    import triton.language as tl

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    _IMPORT_ERROR = f"triton is not importable ({type(exc).__name__}: {exc})"

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def triton_rspmm_available(device: torch.device | str) -> str | None:
    """None when the Triton kernels can run on tensors on ``device``, else why not (the registry's probe)."""
    return triton_available(torch.device(device))


# Sizes that vary between calls (batch, graph sizes) are typed int64 and not specialised, so one
# variant serves every graph and batch (Triton would otherwise recompile when one equals 1, is
# divisible by 16 or fits int32). ``dim`` stays specialised: fixed per model, and its
# divisibility lets the d-vector loads vectorise.
_VARYING_SIZES = ("batch", "num_out", "num_in", "num_rel")

if triton is not None:

    @triton.jit(do_not_specialize=_VARYING_SIZES)
    def _gather_kernel(
        ptr_ptr,  # (N_out + 1,) int64 CSR pointers
        col_ptr,  # (E,) int32 node read by each edge
        typ_ptr,  # (E,) int32 edge type
        x_ptr,  # (B, N_in, D)
        rel_ptr,  # (R, D) shared, or (B, R, D)
        boundary_ptr,  # (B, N_out, D), read when HAS_BOUNDARY
        out_ptr,  # (B, N_out, D)
        batch: tl.int64, num_out: tl.int64, num_in: tl.int64, num_rel: tl.int64, dim,
        SHARED: tl.constexpr,
        HAS_BOUNDARY: tl.constexpr,
        F64: tl.constexpr,
        BLOCK_B: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        node = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
        feats = tl.arange(0, BLOCK_D)
        row_ok = rows < batch
        feat_ok = feats < dim
        mask = row_ok[:, None] & feat_ok[None, :]
        x_rows = x_ptr + rows[:, None] * num_in * dim + feats[None, :]
        if SHARED:
            rel_rows = rel_ptr + feats
        else:
            rel_rows = rel_ptr + rows[:, None] * num_rel * dim + feats[None, :]
        if F64:
            acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float64)
        else:
            acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
        out_offsets = rows[:, None] * num_out * dim + node * dim + feats[None, :]
        if HAS_BOUNDARY:  # the boundary first, then the messages in CSR order (the C++ kernel's order)
            acc += tl.load(boundary_ptr + out_offsets, mask=mask, other=0.0).to(acc.dtype)
        start = tl.load(ptr_ptr + node)
        end = tl.load(ptr_ptr + node + 1)
        for e in range(start, end):
            v = tl.load(col_ptr + e).to(tl.int64)
            r = tl.load(typ_ptr + e).to(tl.int64)
            xv = tl.load(x_rows + v * dim, mask=mask, other=0.0).to(acc.dtype)
            if SHARED:
                rv = tl.load(rel_rows + r * dim, mask=feat_ok, other=0.0).to(acc.dtype)[None, :]
            else:
                rv = tl.load(rel_rows + r * dim, mask=mask, other=0.0).to(acc.dtype)
            acc += xv * rv
        tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit(do_not_specialize=_VARYING_SIZES)
    def _chunk_partial_kernel(
        chunk_start_ptr,  # (C + 1,) int64
        dst_ptr,  # (E,) int32, relation-sorted
        src_ptr,  # (E,) int32
        grad_out_ptr,  # (B, N_out, D)
        x_ptr,  # (B, N_in, D)
        partial_ptr,  # (C, B, D) accumulation dtype
        batch: tl.int64, num_out: tl.int64, num_in: tl.int64, dim,
        F64: tl.constexpr,
        BLOCK_B: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        chunk = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
        feats = tl.arange(0, BLOCK_D)
        mask = (rows < batch)[:, None] & (feats < dim)[None, :]
        g_rows = grad_out_ptr + rows[:, None] * num_out * dim + feats[None, :]
        x_rows = x_ptr + rows[:, None] * num_in * dim + feats[None, :]
        if F64:
            acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float64)
        else:
            acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
        start = tl.load(chunk_start_ptr + chunk)
        end = tl.load(chunk_start_ptr + chunk + 1)
        for e in range(start, end):
            u = tl.load(dst_ptr + e).to(tl.int64)
            v = tl.load(src_ptr + e).to(tl.int64)
            g = tl.load(g_rows + u * dim, mask=mask, other=0.0).to(acc.dtype)
            xv = tl.load(x_rows + v * dim, mask=mask, other=0.0).to(acc.dtype)
            acc += g * xv
        tl.store(partial_ptr + chunk * batch * dim + rows[:, None] * dim + feats[None, :], acc, mask=mask)

    @triton.jit(do_not_specialize=_VARYING_SIZES)
    def _chunk_reduce_kernel(
        chunk_ptr_ptr,  # (R + 1,) int64
        partial_ptr,  # (C, B, D)
        grad_rel_ptr,  # (R, D) shared or (B, R, D)
        batch: tl.int64, num_rel: tl.int64, dim,
        SHARED: tl.constexpr,
        F64: tl.constexpr,
        BLOCK_B: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        rel = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1).to(tl.int64)
        feats = tl.arange(0, BLOCK_D)
        feat_ok = feats < dim
        first = tl.load(chunk_ptr_ptr + rel)
        last = tl.load(chunk_ptr_ptr + rel + 1)
        if F64:
            acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float64)
        else:
            acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
        if SHARED:
            # one program per relation: every chunk, every block of rows, in order
            for c in range(first, last):
                for b0 in range(0, batch, BLOCK_B):
                    rows = b0 + tl.arange(0, BLOCK_B).to(tl.int64)
                    mask = (rows < batch)[:, None] & feat_ok[None, :]
                    acc += tl.load(partial_ptr + c * batch * dim + rows[:, None] * dim + feats[None, :], mask=mask, other=0.0)
            total = tl.sum(acc, axis=0)
            tl.store(grad_rel_ptr + rel * dim + feats, total.to(grad_rel_ptr.dtype.element_ty), mask=feat_ok)
        else:
            rows = block * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
            mask = (rows < batch)[:, None] & feat_ok[None, :]
            for c in range(first, last):
                acc += tl.load(partial_ptr + c * batch * dim + rows[:, None] * dim + feats[None, :], mask=mask, other=0.0)
            out = grad_rel_ptr + rows[:, None] * num_rel * dim + rel * dim + feats[None, :]
            tl.store(out, acc.to(grad_rel_ptr.dtype.element_ty), mask=mask)


def _blocks(batch: int, dim: int) -> tuple[int, int]:
    block_d = triton.next_power_of_2(max(dim, 1))
    block_b = max(1, min(triton.next_power_of_2(max(batch, 1)), max(1, 2048 // block_d)))
    return block_b, block_d


def _on_device(device: torch.device):
    """Triton launches on the *current* CUDA device: make it the tensors' one (no-op on CPU)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _require(device: torch.device) -> None:
    reason = triton_rspmm_available(device)
    if reason is not None:
        raise RuntimeError(f"the Triton rspmm kernels cannot run here: {reason}")


def triton_gather(ptr: torch.Tensor, col: torch.Tensor, typ: torch.Tensor, x: torch.Tensor, rel: torch.Tensor,
                  boundary: torch.Tensor | None, shared: bool) -> torch.Tensor:
    """(B, N_out, d) = boundary + CSR gather of x (B, N_in, d) * rel ((R, d) shared or (B, R, d)); inputs checked by the caller."""
    _require(x.device)
    batch, num_in, dim = x.shape
    num_out = ptr.numel() - 1
    num_rel = rel.shape[-2]
    out = torch.empty(batch, num_out, dim, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    block_b, block_d = _blocks(batch, dim)
    grid = (num_out, triton.cdiv(batch, block_b))
    with _on_device(x.device):
        _gather_kernel[grid](
            ptr, col, typ, x, rel, boundary if boundary is not None else out, out,
            batch, num_out, num_in, num_rel, dim,
            SHARED=shared, HAS_BOUNDARY=boundary is not None, F64=x.dtype == torch.float64,
            BLOCK_B=block_b, BLOCK_D=block_d, num_warps=4,
        )
    return out


def triton_relation_grad(csr, grad_out: torch.Tensor, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """Gradient of the relation vectors: (R, d) when shared, else (B, R, d)."""
    _require(x.device)
    batch, num_in, dim = x.shape
    num_out = grad_out.shape[1]
    num_rel, chunks = csr.num_relations, csr.num_chunks
    shape = (num_rel, dim) if shared else (batch, num_rel, dim)
    grad_rel = torch.empty(shape, dtype=x.dtype, device=x.device)
    if grad_rel.numel() == 0:
        return grad_rel
    f64 = x.dtype == torch.float64
    partial = torch.empty(max(chunks, 1), batch, dim, dtype=torch.float64 if f64 else torch.float32, device=x.device)
    block_b, block_d = _blocks(batch, dim)
    grid = (num_rel, 1 if shared else triton.cdiv(batch, block_b))
    with _on_device(x.device):
        if chunks and batch:
            _chunk_partial_kernel[(chunks, triton.cdiv(batch, block_b))](
                csr.chunk_start, csr.rel_dst, csr.rel_src, grad_out, x, partial,
                batch, num_out, num_in, dim, F64=f64, BLOCK_B=block_b, BLOCK_D=block_d, num_warps=4,
            )
        _chunk_reduce_kernel[grid](
            csr.chunk_ptr, partial, grad_rel, batch, num_rel, dim,
            SHARED=shared, F64=f64, BLOCK_B=block_b, BLOCK_D=block_d, num_warps=4,
        )
    return grad_rel

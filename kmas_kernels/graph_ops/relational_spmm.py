"""Fused relational message passing: DistMult messages, sum aggregation, never a (B, E, d) tensor.

    out[b, u] = boundary[b, u] + sum_{(u, v, r) in E} x[b, v] * rel[b, r]      (rel[r] when shared)

Shapes: x (B, N, d); rel (R, d) or (1, R, d) -- one vector per edge type shared by all rows, as
in a relation graph -- or (B, R, d) per row; boundary (B, N, d) or None; out (B, N, d). The graph
is a :class:`~kmas_kernels.graph_ops.csr.RelationalCSR` (see :func:`cached_csr`).

Backends (``backend=``):

- ``"reference"``: plain torch, ``boundary.index_add(1, dst, x[:, src] * rel[..., type])``: forms
  the (B, E, d) message tensor; every fused path is tested against it.
- ``"cpu"``: the C++/OpenMP kernels of ``kmas_kernels._native_cpu`` (csrc/cpu/rspmm_cpu.cpp),
  float32 / float64 CPU tensors, ``torch.get_num_threads()`` threads.
- ``"triton"``: the Triton kernels (rspmm_triton.py), CUDA tensors (CPU tensors under
  ``TRITON_INTERPRET=1``), float16 / bfloat16 / float32 / float64.
- ``"auto"`` (default): ``"cpu"`` for CPU tensors, ``"triton"`` for CUDA tensors, and the reference
  where the fused path cannot run (extension not built, triton missing, another dtype), with a
  warning, once per reason.

Gradients: x through the same gather on the source-sorted CSR with grad_out in place of x; rel
by a per-relation reduction over edge chunks (per row, or summed over rows when shared);
boundary = grad_out. The fused backward is first-order only (``once_differentiable``).
Results do not depend on the number of threads (every output element has one owner and a fixed
summation order); fused and reference sums differ in order, hence to float rounding.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from ..backends.registry import BACKENDS as REGISTRY
from ..backends.registry import load_extension
from ..core.validation import user_stacklevel
from .csr import RelationalCSR
from .rspmm_triton import TRITON_DTYPES, triton_gather, triton_relation_grad, triton_rspmm_available

# the backend names this op takes (a subset of the shared registry's, plus "auto")
BACKENDS = ("auto", "reference", "cpu", "triton")
CPU_DTYPES = (torch.float32, torch.float64)
_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=user_stacklevel())


# ----------------------------------------------------------------------------- reference


def reference_relational_spmm(x: torch.Tensor, rel: torch.Tensor, csr: RelationalCSR,
                              boundary: torch.Tensor | None = None) -> torch.Tensor:
    """Plain torch: the (B, E, d) messages, summed into their destinations with ``index_add``."""
    x, rel, boundary, shared = _check(x, rel, csr, boundary)
    src, typ = csr.dst_src.long(), csr.dst_type.long()
    message = x[:, src] * (rel[typ].unsqueeze(0) if shared else rel[:, typ])
    base = boundary if boundary is not None else torch.zeros_like(x)
    return base.index_add(1, csr.dst_of_sorted_edges(), message)


# ----------------------------------------------------------------------------- native CPU


def _native():
    return load_extension("_native_cpu")


def cpu_rspmm_available() -> str | None:
    """None when the C++ kernels are built, else why not (the shared registry's probe, plus rspmm)."""
    reason = REGISTRY["cpu"].probe(None)
    if reason is not None:
        return reason
    if not hasattr(_native(), "rspmm_gather"):
        return "the _native_cpu extension predates rspmm; reinstall the package to rebuild it"
    return None


def cpu_gather(ptr: torch.Tensor, col: torch.Tensor, typ: torch.Tensor, x: torch.Tensor, rel: torch.Tensor,
               boundary: torch.Tensor | None, shared: bool) -> torch.Tensor:
    module = _native()
    batch, num_in, dim = x.shape
    num_out = ptr.numel() - 1
    out = torch.empty(batch, num_out, dim, dtype=x.dtype)
    module.rspmm_gather(x.dtype == torch.float64, ptr.data_ptr(), col.data_ptr(), typ.data_ptr(), x.data_ptr(),
                        rel.data_ptr(), boundary.data_ptr() if boundary is not None else 0, out.data_ptr(),
                        batch, num_out, num_in, rel.shape[-2], dim, shared, torch.get_num_threads())
    return out


def cpu_relation_grad(csr: RelationalCSR, grad_out: torch.Tensor, x: torch.Tensor, shared: bool) -> torch.Tensor:
    module = _native()
    batch, num_in, dim = x.shape
    grad_rel = torch.empty((csr.num_relations, dim) if shared else (batch, csr.num_relations, dim), dtype=x.dtype)
    module.rspmm_relation_grad(x.dtype == torch.float64, csr.chunk_start.data_ptr(), csr.chunk_ptr.data_ptr(),
                               csr.rel_dst.data_ptr(), csr.rel_src.data_ptr(), grad_out.data_ptr(), x.data_ptr(),
                               grad_rel.data_ptr(), batch, grad_out.shape[1], num_in, csr.num_relations,
                               csr.num_chunks, dim, shared, torch.get_num_threads())
    return grad_rel


# ----------------------------------------------------------------------------- autograd + dispatch

_KERNELS: dict[str, tuple[Callable, Callable]] = {
    "cpu": (cpu_gather, cpu_relation_grad),
    "triton": (triton_gather, triton_relation_grad),
}


class _FusedRelationalSpmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rel, boundary, csr, shared, backend):
        gather, _ = _KERNELS[backend]
        ctx.csr, ctx.shared, ctx.backend = csr, shared, backend
        ctx.rel_shape = rel.shape
        ctx.save_for_backward(x, rel)
        return gather(csr.dst_ptr, csr.dst_src, csr.dst_type, x, rel, boundary, shared)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, rel = ctx.saved_tensors
        csr, shared = ctx.csr, ctx.shared
        gather, relation_grad = _KERNELS[ctx.backend]
        grad_out = grad_out.contiguous()
        grad_x = grad_rel = grad_boundary = None
        if ctx.needs_input_grad[0]:
            grad_x = gather(csr.src_ptr, csr.src_dst, csr.src_type, grad_out, rel, None, shared)
        if ctx.needs_input_grad[1]:
            grad_rel = relation_grad(csr, grad_out, x, shared).view(ctx.rel_shape)
        if ctx.needs_input_grad[2]:
            grad_boundary = grad_out
        return grad_x, grad_rel, grad_boundary, None, None, None


def _check(x, rel, csr, boundary):
    """Validated, contiguous, same-dtype (x, rel, boundary) and whether rel is shared by all rows."""
    if not isinstance(csr, RelationalCSR):
        raise TypeError(f"csr must be a RelationalCSR (kmas_kernels.graph_ops.cached_csr), got {type(csr).__name__}")
    for name, t in (("x", x), ("rel", rel)) + ((("boundary", boundary),) if boundary is not None else ()):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if t.device != csr.device:
            raise ValueError(f"{name} is on {t.device} but the graph is on {csr.device}")
    if x.dim() != 3 or x.shape[1] != csr.num_nodes:
        raise ValueError(f"x must have shape (B, num_nodes={csr.num_nodes}, d), got {tuple(x.shape)}")
    batch, _, dim = x.shape
    if rel.dim() == 3 and rel.shape[0] == batch:
        shared = False  # one set of vectors per row (B = 1 included)
    elif rel.dim() == 2 or (rel.dim() == 3 and rel.shape[0] == 1):
        shared = True
    else:
        raise ValueError(f"rel must have shape (R, d), (1, R, d) or (B={batch}, R, d), got {tuple(rel.shape)}")
    if tuple(rel.shape[-2:]) != (csr.num_relations, dim):
        raise ValueError(f"rel must end in (num_relations={csr.num_relations}, d={dim}), got {tuple(rel.shape)}")
    if boundary is not None and boundary.shape != x.shape:
        raise ValueError(f"boundary must have the shape of x {tuple(x.shape)}, got {tuple(boundary.shape)}")
    dtype = torch.promote_types(x.dtype, rel.dtype)
    if boundary is not None:
        dtype = torch.promote_types(dtype, boundary.dtype)
    x, rel = x.to(dtype).contiguous(), rel.to(dtype)
    rel = (rel.reshape(rel.shape[-2:]) if shared else rel).contiguous()
    boundary = boundary.to(dtype).contiguous() if boundary is not None else None
    return x, rel, boundary, shared


def fused_backend(device: torch.device | str, dtype: torch.dtype = torch.float32) -> tuple[str | None, str | None]:
    """(fused backend "auto" would pick for tensors of ``dtype`` on ``device``, None) or (None, why none can)."""
    device = torch.device(device)
    if device.type == "cpu":
        reason = cpu_rspmm_available()
        if reason is None and dtype not in CPU_DTYPES:
            reason = f"the C++ kernels take float32/float64, got {dtype}"
        return ("cpu", None) if reason is None else (None, reason)
    reason = triton_rspmm_available(device)
    if reason is None and dtype not in TRITON_DTYPES:
        reason = f"the Triton kernels take {[str(d) for d in TRITON_DTYPES]}, got {dtype}"
    return ("triton", None) if reason is None else (None, reason)


def relational_spmm(x: torch.Tensor, rel: torch.Tensor, csr: RelationalCSR, boundary: torch.Tensor | None = None,
                    backend: str = "auto") -> torch.Tensor:
    """``out[b, u] = boundary[b, u] + sum_{(u, v, r)} x[b, v] * rel[(b,) r]`` (module doc); differentiable."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return reference_relational_spmm(x, rel, csr, boundary)
    x, rel, boundary, shared = _check(x, rel, csr, boundary)
    if backend == "auto":
        chosen, reason = fused_backend(x.device, x.dtype)
        if chosen is None:
            _warn_once(f"kmas_kernels.graph_ops: no fused relational message passing for {x.dtype} on "
                       f"{x.device.type} ({reason}); using the plain-torch reference, which forms (B, E, d) messages")
            return reference_relational_spmm(x, rel, csr, boundary)
        backend = chosen
    else:
        allowed = CPU_DTYPES if backend == "cpu" else TRITON_DTYPES
        reason = REGISTRY[backend].unusable(x.device) or (cpu_rspmm_available() if backend == "cpu" else None)
        if reason is not None:
            raise ValueError(f"backend={backend!r} is not available: {reason}")
        if x.dtype not in allowed:
            raise TypeError(f"backend={backend!r} takes {[str(d) for d in allowed]}, got {x.dtype}")
    return _FusedRelationalSpmm.apply(x, rel, boundary, csr, shared, backend)

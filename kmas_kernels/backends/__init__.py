"""The backend registry: which top-k implementations exist here and which one "auto" picks.

A backend is a :data:`~kmas_kernels.core.TopKFn` plus an availability probe and, for Triton, a
largest k (``triton_topk.MAX_K``: the kernel keeps k keys in registers). "auto" takes, for CUDA
tensors, Triton (k <= MAX_K), else the CUDA extension, else the reference (with a warning, once,
when only the k limit kept Triton out); for CPU tensors, the C++ extension, else the reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from ..core import TopKFn, reference_top_k
from .native import cpu_available, cuda_available, native_cpu_top_k, native_cuda_top_k
from .triton_topk import MAX_K as TRITON_MAX_K
from .triton_topk import check_k as triton_check_k
from .triton_topk import triton_available, triton_top_k


@dataclass(frozen=True)
class Backend:
    name: str
    run: TopKFn
    devices: tuple[str, ...]  # device types it runs on
    probe: Callable[[torch.device | None], str | None]  # None when usable (on that device), else why not
    max_k: int | None = None  # the largest num_negatives it takes (None: any)


def _always(device: torch.device | None = None) -> str | None:
    return None


_REGISTRY: dict[str, Backend] = {
    "reference": Backend("reference", reference_top_k, ("cpu", "cuda"), _always),
    "cpu": Backend("cpu", native_cpu_top_k, ("cpu",), lambda device=None: cpu_available()),
    "cuda": Backend("cuda", native_cuda_top_k, ("cuda",), lambda device=None: cuda_available()),
    # CPU tensors only under TRITON_INTERPRET=1 (tests); "auto" never picks it for CPU tensors
    "triton": Backend("triton", triton_top_k, ("cuda", "cpu"), triton_available, TRITON_MAX_K),
}

# "auto" tries these in order for each device type and takes the first usable one.
_AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpu", "reference")}


def available_backends() -> dict[str, str | None]:
    """Every backend name -> None if usable on this machine, else the reason it is not."""
    return {name: backend.probe(None) for name, backend in _REGISTRY.items()}


_WARNED_LARGE_K = False


def resolve_backend(name: str, device: torch.device, num_negatives: int | None = None) -> Backend:
    """The backend to run for ``name`` ("auto" or a backend name) on tensors on ``device``.

    With ``num_negatives``, "auto" skips backends whose ``max_k`` is smaller, and a named backend
    that cannot take it raises ValueError.
    """
    candidates = _AUTO_ORDER.get(device.type, ("reference",)) if name == "auto" else (name,)
    too_large = []
    for candidate in candidates:
        backend = _REGISTRY.get(candidate)
        if backend is not None and device.type in backend.devices and backend.probe(device) is None:
            if num_negatives is not None and backend.max_k is not None and num_negatives > backend.max_k:
                if name != "auto":
                    triton_check_k(num_negatives)  # the one backend with a limit: its own message
                too_large.append(candidate)
                continue
            if name == "auto" and candidate == "reference":
                _warn_reference_fallback(device, num_negatives if too_large else None)
            return backend
    if name == "auto":
        _warn_reference_fallback(device, num_negatives if too_large else None)
        return _REGISTRY["reference"]
    backend = _REGISTRY[name]
    reason = backend.probe(device) if device.type in backend.devices else f"it does not run on {device.type} tensors"
    raise ValueError(f"backend={name!r} is not available: {reason}")


_WARNED: set[str] = set()


def _warn_reference_fallback(device: torch.device, large_k: int | None = None) -> None:
    """Say once per device type that "auto" fell back to the B x N reference, and why."""
    global _WARNED_LARGE_K
    if large_k is not None and device.type == "cuda":
        if not _WARNED_LARGE_K:
            _WARNED_LARGE_K = True
            warnings.warn(
                f"num_negatives={large_k} is above the Triton kernel's limit ({TRITON_MAX_K}) and the CUDA "
                "extension is not built: using the reference backend (a dense B x N computation). Build with "
                "KMAS_BUILD_CUDA=1 for large k.",
                stacklevel=4,
            )
        return
    if device.type in _WARNED:
        return
    _WARNED.add(device.type)
    reasons = "; ".join(
        f"{name}: {_REGISTRY[name].probe(device)}" for name in _AUTO_ORDER.get(device.type, ()) if name != "reference"
    )
    warnings.warn(
        f"kmas_kernels: backend='auto' runs the reference backend on {device.type} tensors, which materialises "
        f"B x N (slow, memory-hungry) because no fused backend is usable ({reasons or 'none exists for this device'})",
        RuntimeWarning,
        stacklevel=4,
    )

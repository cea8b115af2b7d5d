"""The backend registry: which top-k implementations exist here and which one "auto" picks.

A backend is a :data:`~kmas_kernels.core.TopKFn` plus an availability probe. "auto" takes, for
CUDA tensors, Triton, else the CUDA extension, else the reference; for CPU tensors, the C++
extension, else the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..core import TopKFn, reference_top_k
from .native import cpu_available, cuda_available, native_cpu_top_k, native_cuda_top_k
from .triton_topk import triton_available, triton_top_k


@dataclass(frozen=True)
class Backend:
    name: str
    run: TopKFn
    devices: tuple[str, ...]  # device types it runs on
    probe: Callable[[torch.device | None], str | None]  # None when usable (on that device), else why not


def _always(device: torch.device | None = None) -> str | None:
    return None


_REGISTRY: dict[str, Backend] = {
    "reference": Backend("reference", reference_top_k, ("cpu", "cuda"), _always),
    "cpu": Backend("cpu", native_cpu_top_k, ("cpu",), lambda device=None: cpu_available()),
    "cuda": Backend("cuda", native_cuda_top_k, ("cuda",), lambda device=None: cuda_available()),
    # CPU tensors only under TRITON_INTERPRET=1 (tests); "auto" never picks it for CPU tensors
    "triton": Backend("triton", triton_top_k, ("cuda", "cpu"), triton_available),
}

# "auto" tries these in order for each device type and takes the first usable one.
_AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpu", "reference")}


def available_backends() -> dict[str, str | None]:
    """Every backend name -> None if usable on this machine, else the reason it is not."""
    return {name: backend.probe(None) for name, backend in _REGISTRY.items()}


def resolve_backend(name: str, device: torch.device) -> Backend:
    """The backend to run for ``name`` ("auto" or a backend name) on tensors on ``device``."""
    candidates = _AUTO_ORDER.get(device.type, ("reference",)) if name == "auto" else (name,)
    for candidate in candidates:
        backend = _REGISTRY.get(candidate)
        if backend is not None and device.type in backend.devices and backend.probe(device) is None:
            return backend
    if name == "auto":
        return _REGISTRY["reference"]
    backend = _REGISTRY[name]
    reason = backend.probe(device) if device.type in backend.devices else f"it does not run on {device.type} tensors"
    raise ValueError(f"backend={name!r} is not available: {reason}")

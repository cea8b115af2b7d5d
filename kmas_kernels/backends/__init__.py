"""The backend registry: which top-k implementations exist here and which one "auto" picks.

A backend is a :data:`~kmas_kernels.core.TopKFn` plus an availability probe. The fused backends
(Triton, the C++/CUDA extension) register here as they are built; until then, and wherever they
cannot run, "auto" uses the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..core import TopKFn, reference_top_k
from .native import cpu_available, cuda_available, native_cpu_top_k, native_cuda_top_k


@dataclass(frozen=True)
class Backend:
    name: str
    run: TopKFn
    devices: tuple[str, ...]  # device types it runs on
    probe: Callable[[], str | None]  # None when usable, else why not


def _always() -> str | None:
    return None


_REGISTRY: dict[str, Backend] = {
    "reference": Backend("reference", reference_top_k, ("cpu", "cuda"), _always),
    "cpu": Backend("cpu", native_cpu_top_k, ("cpu",), cpu_available),
    "cuda": Backend("cuda", native_cuda_top_k, ("cuda",), cuda_available),
}

# "auto" tries these in order for each device type and takes the first usable one.
_AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpu", "reference")}


def available_backends() -> dict[str, str | None]:
    """Every backend name -> None if usable on this machine, else the reason it is not."""
    reasons = {name: "not built into this version of kmas_kernels" for name in ("triton",)}
    reasons.update({name: backend.probe() for name, backend in _REGISTRY.items()})
    return reasons


def resolve_backend(name: str, device: torch.device) -> Backend:
    """The backend to run for ``name`` ("auto" or a backend name) on tensors on ``device``."""
    candidates = _AUTO_ORDER.get(device.type, ("reference",)) if name == "auto" else (name,)
    for candidate in candidates:
        backend = _REGISTRY.get(candidate)
        if backend is not None and backend.probe() is None and device.type in backend.devices:
            return backend
    if name == "auto":
        return _REGISTRY["reference"]
    reason = available_backends().get(name) or f"it does not run on {device.type} tensors"
    raise ValueError(f"backend={name!r} is not available: {reason}")

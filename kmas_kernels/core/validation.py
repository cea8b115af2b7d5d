"""Input checks shared by every public entry (docs/semantics.md §8).

Each check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape,
range, device or value) with a message naming the argument and the expected form. Checks that
need tensor values (id ranges, NaN) read them back in one go where they can, since on a GPU
every read-back is a host-device sync.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from .philox import SEED_BOUND

BACKEND_NAMES = ("auto", "triton", "cuda", "cpu", "reference")


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` called right here that names the first frame outside
    kmas_kernels (the user's line), however deep inside the package the warning is raised."""
    import os
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1  # the caller of this function: the frame that calls warnings.warn
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def check_count(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """A Python int > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    low = 0 if allow_zero else 1
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return value


def check_float(value: Any, name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False) -> float:
    """A finite real number in [low, high] (or (low, high] with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int in [0, 2**63) or None, got {type(seed).__name__}")
    if not 0 <= int(seed) < SEED_BOUND:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


def check_backend(backend: Any) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, one of {BACKEND_NAMES}, got {type(backend).__name__}")
    if backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {backend!r}")
    return backend


def check_id_range(ids: torch.Tensor, name: str, bound: int) -> None:
    """All ids in [0, bound); one read-back."""
    if ids.numel() == 0:
        return
    low, high = torch.aminmax(ids)
    low, high = int(low), int(high)
    if low < 0 or high >= bound:
        bad = low if low < 0 else high
        raise ValueError(f"{name} must hold ids in [0, {bound}), found {bad}")


def as_id_vector(value: Any, name: str, device: torch.device, batch_size: int | None = None) -> torch.Tensor:
    """A 1-D int64 tensor of ids on ``device`` (range is checked by the caller, batched).

    Tensors must already be on the index's device (no silent copies); Python sequences are
    converted. Shape must be (B,) with B = ``batch_size`` when given.
    """
    if isinstance(value, torch.Tensor):
        tensor = value
        if tensor.device != device:
            raise ValueError(f"{name} is on {tensor.device} but the index is on {device}: move one of them (index.to(...))")
    else:
        try:
            tensor = torch.as_tensor(value, device=device)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name} must be a 1-D integer tensor of ids, got {type(value).__name__}") from error
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"{name} must be an integer tensor of ids, got dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape (B,), got {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty: the batch must have at least one row")
    if batch_size is not None and tensor.numel() != batch_size:
        raise ValueError(f"{name} must have shape ({batch_size},) like query_entity, got {tuple(tensor.shape)}")
    return tensor.to(torch.int64)


def check_float_tensor(value: Any, name: str, device: torch.device, shapes: str) -> torch.Tensor:
    """A floating-point tensor on ``device``; ``shapes`` describes the expected shapes for errors."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a float tensor of shape {shapes}, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a float tensor of shape {shapes}, got dtype {value.dtype}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but the index is on {device}: move one of them")
    return value

"""The backend floor: the shared registry (``registry``: which backends exist, which are usable,
the native extensions' loader, the Triton probe) and the top-k launchers (``native``,
``triton_topk``; their dispatch lives with the op, in :mod:`kmas_kernels.hard_negatives`).
The graph operators' launchers live with their op (``kmas_kernels.graph_ops``).
"""

from .registry import BACKENDS, Backend, available_backends, load_extension, triton_available

__all__ = ["BACKENDS", "Backend", "available_backends", "load_extension", "triton_available"]

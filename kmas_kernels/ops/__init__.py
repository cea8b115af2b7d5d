"""torch.library custom ops: ``kmas::hard_negatives``, opaque to torch.compile and torch.export.

Importing ``kmas_kernels`` registers them (in :mod:`kmas_kernels.hard_negatives`, next to the function). Eager callers never go through them:
:func:`kmas_kernels.hard_negatives` calls the op only while torch.compile or torch.export traces it.
"""

from ..hard_negatives import OP_AVAILABLE, hard_negatives_op, hard_negatives_traced, is_compiling

__all__ = ["OP_AVAILABLE", "hard_negatives_op", "hard_negatives_traced", "is_compiling"]

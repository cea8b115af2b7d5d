"""``kmas::hard_negatives``: kept as an import path; the op lives with its public function in
:mod:`kmas_kernels.hard_negatives` (one op, one module)."""

from ..hard_negatives import (  # noqa: F401
    INDEX_TENSORS,
    OP_AVAILABLE,
    OP_NAME,
    hard_negatives_op,
    hard_negatives_traced,
    is_compiling,
)

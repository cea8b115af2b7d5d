"""Graph operators on the backend floor (generic: they know nothing of any model).

- :func:`relational_spmm`: fused relational message passing (DistMult messages, sum
  aggregation) with C++/OpenMP (CPU) and Triton (CUDA) kernels and a plain-torch reference.
- :class:`RelationalCSR`, :func:`cached_csr`: the sorted edge layouts it reads, built once per graph.
"""

from .csr import RelationalCSR, cached_csr
from .relational_spmm import (BACKENDS, fused_backend, reference_relational_spmm, relational_spmm)

__all__ = ["RelationalCSR", "cached_csr", "relational_spmm", "reference_relational_spmm", "fused_backend", "BACKENDS"]

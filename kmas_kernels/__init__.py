"""kmas_kernels: hard negatives for knowledge-graph foundation models, mined by fused kernels.

    from kmas_kernels import KGIndex, hard_negatives
    index = KGIndex.from_triples(triples)            # (E, 3) [head, relation, tail]
    negatives = hard_negatives(index, heads, relations, relation_embeddings=z,
                               num_negatives=512, positive=tails, seed=0)

Floors (each imports only from those below; docs/architecture.md): core (index, validation, options,
random stream, reference) -> backends (one registry, the launchers) -> ops (hard_negatives with its
torch.library op and dispatch; graph_ops) -> schedule, sampler -> integrations (kmas_kernels.ultra,
kmas_kernels.pykeen: optional, imported only by the user).
"""

from .backends import available_backends
from .core.index import KGIndex
from .hard_negatives import hard_negatives
from .sampler import KMASSampler
from .schedule import HardRatioSchedule

__version__ = "0.1.0"

__all__ = ["KGIndex", "hard_negatives", "HardRatioSchedule", "KMASSampler", "available_backends", "__version__"]

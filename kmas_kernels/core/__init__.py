"""The core floor: index, validation, the random stream, relation weights, the reference, and files
(atomic writes, safe torch loading: ``core.files``).

Nothing here knows about backends or ULTRA; everything above builds on it.
"""

from .index import KGIndex
from .problem import MiningProblem, TopKFn, prepare_problem
from .reference import reference_top_k

__all__ = ["KGIndex", "MiningProblem", "TopKFn", "prepare_problem", "reference_top_k"]

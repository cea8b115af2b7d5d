"""``hard_negatives``: the public entry for mining (docs/semantics.md §2–§5)."""

from __future__ import annotations

from typing import Any

import torch

from .backends import resolve_backend
from .core.index import KGIndex
from .core.philox import STREAM_FILL
from .core.problem import MiningProblem, prepare_problem
from .core.uniform import uniform_negatives
from .core.validation import check_backend
from .ops.hard_negatives_op import hard_negatives_traced, is_compiling

DEFAULT_TEMPERATURE = 0.1


def hard_negatives(
    index: KGIndex,
    query_entity: Any,
    query_relation: Any,
    *,
    relation_embeddings: torch.Tensor | None = None,
    relation_weights: torch.Tensor | None = None,
    num_negatives: int,
    positive: Any = None,
    strict: bool = True,
    temperature: float = DEFAULT_TEMPERATURE,
    top_relations: int | None = None,
    temperature_gumbel: float = 1.0,
    seed: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Hard negative answers for queries (q_b, r_b, ?): a (B, num_negatives) int64 tensor.

    Row b holds ``num_negatives`` distinct entities sampled without replacement from
    P_b(e) = sum_r w[b, r] 1[e in Tails(r)] / |Tails(r)| (Gumbel-top-k), never ``positive[b]`` and,
    when ``strict``, never a known answer of (q_b, r_b). Columns are in descending key order
    (the hardest first); if fewer than ``num_negatives`` entities have P_b > 0, the remaining
    columns (the *fill*, the last ones of the row) are uniform non-excluded entities, distinct from
    the rest of the row.

    To corrupt heads of (h, r, t), query (t, inverse(r)) with positive h.

    Args:
        index: the graph (``KGIndex``); every tensor argument must be on ``index.device``.
        query_entity, query_relation: (B,) ids of the known side and the query relation.
        relation_embeddings: Z, (R, d) shared or (B, R, d) per row: w = softmax(cos / temperature)
            over the ``top_relations`` relations most similar to r_b.
        relation_weights: w, (B, R) non-negative, used as given (instead of Z). A row that is all
            zero has no mixture: every column of it is fill (uniform non-excluded entities);
            that warns once per process (RuntimeWarning naming the number of such rows).
            With neither, w is one-hot on r_b: negatives from the query relation's own tail set.
        num_negatives: k.
        positive: (B,) true answers a_b, always excluded (optional).
        strict: also exclude every known answer of (q_b, r_b).
        temperature: softmax temperature over cosine similarities.
        top_relations: keep only this many most similar relations (None: all).
        temperature_gumbel: noise scale; 1 samples from P_b, 0 is the deterministic top-k of P_b
            (ties to the smaller id), other values sample from P_b ** (1 / temperature_gumbel).
        seed: in [0, 2**63); the same seed gives the same negatives on every backend. None draws
            one from torch's global generator.
        backend: "auto", "triton", "cuda", "cpu" or "reference".
    """
    if is_compiling():  # torch.compile / torch.export: one custom op, validated when it runs (kmas_kernels/ops)
        return hard_negatives_traced(
            index, query_entity, query_relation, relation_embeddings=relation_embeddings,
            relation_weights=relation_weights, num_negatives=num_negatives, positive=positive, strict=strict,
            temperature=temperature, top_relations=top_relations, temperature_gumbel=temperature_gumbel,
            seed=seed, backend=backend,
        )  # fmt: skip
    backend = check_backend(backend)
    problem = prepare_problem(
        index,
        query_entity,
        query_relation,
        relation_embeddings=relation_embeddings,
        relation_weights=relation_weights,
        num_negatives=num_negatives,
        positive=positive,
        strict=strict,
        temperature=temperature,
        top_relations=top_relations,
        temperature_gumbel=temperature_gumbel,
        seed=seed,
    )
    return mine(problem, backend)


def mine(problem: MiningProblem, backend: str = "auto", limit: torch.Tensor | None = None) -> torch.Tensor:
    """The (B, k) hard negatives of a validated problem: the backend's top-k, then the fill.

    ``limit`` (B,) int64, at most k (KMASSampler's per-row capacity): row b is filled only up to
    column limit[b]; its columns past that stay -1 for the caller.
    """
    top = resolve_backend(backend, problem.index.device, problem.num_negatives).run(problem)
    return fill_short_rows(problem, top, limit)


def fill_short_rows(problem: MiningProblem, top: torch.Tensor, limit: torch.Tensor | None = None) -> torch.Tensor:
    """Replace the -1 slots of a backend's (B, k) result by uniform distinct allowed entities.

    Shared by every backend, so the fill is identical everywhere. Only short rows are touched;
    with ``limit`` only the slots in columns [0, limit[b]) of row b. When the problem's support
    lower bound (read back with the validation) already guarantees k candidates per row, nothing
    is read back here: no device sync. Otherwise finding the short rows is one sync
    (``torch.nonzero``), and filling them a few more (rare rows only).
    """
    if problem.min_support >= problem.num_negatives:
        return top  # no row can be short
    empty = top < 0
    if limit is not None:
        empty &= torch.arange(top.shape[1], device=top.device)[None, :] < limit[:, None]
    short = torch.nonzero(empty.any(dim=1)).squeeze(1)
    if short.numel() == 0:
        return top
    top = top.clone()
    top[short] = uniform_negatives(
        problem.index,
        problem.query_entity[short],
        problem.query_relation[short],
        problem.positive[short],
        problem.num_negatives,
        seed=problem.seed,
        strict=problem.strict,
        distinct=True,
        partial=top[short],
        stream=STREAM_FILL,
        row_ids=short,
        limit=None if limit is None else limit[short],
    )
    return top

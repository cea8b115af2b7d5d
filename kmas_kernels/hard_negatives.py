"""``hard_negatives``, the top-k mining op, in one place (docs/semantics.md §2–§5).

The public function, its ``torch.library`` custom op (``kmas::hard_negatives``, for
torch.compile / torch.export), the fill of short rows shared by every backend, and the dispatch
over the backends. The options are validated once, into a :class:`MiningOptions`; the problem is
validated once, into a :class:`MiningProblem`; every backend trusts both.

torch.compile cannot trace into the eager call: validation reads tensor values back to the host
(id ranges, counts), the backends are C++/CUDA extensions or Triton launches, and short rows are
filled with data-dependent shapes. As a custom op, the whole call is one node of the graph: the
compiler sees only the output's shape and dtype (the fake implementation, (B, k) int64), and at
run time the real implementation runs the eager call, validation included. So a training step
that calls :func:`hard_negatives` compiles with ``fullgraph=True`` and exports with
``torch.export``, and returns exactly what eager returns. Eager callers never go through the op.

The op takes the index as its tensors plus its sizes (a ``KGIndex`` is not a type the dispatcher
knows), ``None`` for an absent optional, and every option as a plain int/float/bool/str. With
``seed=None`` the real implementation draws the seed from torch's global generator when it runs,
as eager does. Registered for CPU and CUDA tensors; the backend is chosen inside
(``backend="auto"`` picks by the index's device), so a compiled graph runs the same kernels as
eager code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .backends.native import native_cpu_top_k, native_cuda_top_k
from .backends.registry import BACKENDS
from .backends.triton_topk import MAX_K as TRITON_MAX_K
from .backends.triton_topk import check_k as triton_check_k
from .backends.triton_topk import triton_top_k
from .core.index import KGIndex, check_index
from .core.options import MiningOptions
from .core.philox import STREAM_FILL
from .core.problem import MiningProblem, TopKFn, prepare_problem
from .core.reference import reference_top_k
from .core.uniform import uniform_negatives
from .core.validation import check_count, check_seed, user_stacklevel

# kept for callers that read it (python/kmas_bench): the value lives in MiningOptions
DEFAULT_TEMPERATURE = MiningOptions.temperature

OP_NAME = "kmas::hard_negatives"
# the KGIndex arrays, in the op's argument order
INDEX_TENSORS = ("rel_ptr", "rel_tails", "rel_inv_count", "ent_ptr", "ent_rels", "known_keys", "known_answers")

# torch.library.custom_op arrived in torch 2.4; older torch keeps eager-only behaviour
OP_AVAILABLE = hasattr(torch.library, "custom_op") and hasattr(torch.compiler, "is_compiling")


def is_compiling() -> bool:
    """True while torch.compile (dynamo) or torch.export traces the calling code."""
    return OP_AVAILABLE and torch.compiler.is_compiling()


def hard_negatives(
    index: KGIndex,
    query_entity: Any,
    query_relation: Any,
    *,
    relation_embeddings: torch.Tensor | None = None,
    relation_weights: torch.Tensor | None = None,
    num_negatives: int,
    positive: Any = None,
    strict: bool = MiningOptions.strict,
    temperature: float = MiningOptions.temperature,
    top_relations: int | None = MiningOptions.top_relations,
    temperature_gumbel: float = MiningOptions.temperature_gumbel,
    seed: int | None = None,
    backend: str = MiningOptions.backend,
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
    options = MiningOptions(strict, temperature, top_relations, temperature_gumbel, backend)
    if is_compiling():  # torch.compile / torch.export: one custom op, the rest validated when it runs
        return hard_negatives_traced(index, query_entity, query_relation, relation_embeddings, relation_weights,
                                     num_negatives, positive, seed, options)
    return _eager(index, query_entity, query_relation, relation_embeddings, relation_weights, num_negatives, positive, seed, options)


def _eager(index, query_entity, query_relation, relation_embeddings, relation_weights, num_negatives, positive, seed,
           options: MiningOptions) -> torch.Tensor:
    problem = prepare_problem(
        index, query_entity, query_relation, relation_embeddings=relation_embeddings, relation_weights=relation_weights,
        num_negatives=num_negatives, positive=positive, seed=seed, options=options,
    )  # fmt: skip
    return mine(problem, options.backend)


# ----------------------------------------------------------------------------- the custom op


def _hard_negatives_impl(
    rel_ptr: torch.Tensor,
    rel_tails: torch.Tensor,
    rel_inv_count: torch.Tensor,
    ent_ptr: torch.Tensor,
    ent_rels: torch.Tensor,
    known_keys: torch.Tensor,
    known_answers: torch.Tensor,
    query_entity: torch.Tensor,
    query_relation: torch.Tensor,
    relation_embeddings: Optional[torch.Tensor],
    relation_weights: Optional[torch.Tensor],
    positive: Optional[torch.Tensor],
    num_entities: int,
    num_relations: int,
    inverse_offset: Optional[int],
    num_negatives: int,
    strict: bool,
    temperature: float,
    top_relations: Optional[int],
    temperature_gumbel: float,
    seed: Optional[int],
    backend: str,
) -> torch.Tensor:
    """(B, num_negatives) int64: the eager call on the index rebuilt from its tensors."""
    index = KGIndex(
        num_entities=num_entities,
        num_relations=num_relations,
        inverse_offset=inverse_offset,
        rel_ptr=rel_ptr,
        rel_tails=rel_tails,
        rel_inv_count=rel_inv_count,
        ent_ptr=ent_ptr,
        ent_rels=ent_rels,
        known_keys=known_keys,
        known_answers=known_answers,
    )
    options = MiningOptions(strict, temperature, top_relations, temperature_gumbel, backend)
    return _eager(index, query_entity, query_relation, relation_embeddings, relation_weights, num_negatives, positive, seed, options)


def _hard_negatives_fake(
    rel_ptr, rel_tails, rel_inv_count, ent_ptr, ent_rels, known_keys, known_answers,
    query_entity, query_relation, relation_embeddings, relation_weights, positive,
    num_entities, num_relations, inverse_offset, num_negatives, strict, temperature,
    top_relations, temperature_gumbel, seed, backend,
):  # fmt: skip
    """Shapes only: (B, num_negatives) int64 on the queries' device. Values are checked at run time."""
    if query_entity.dim() != 1:
        raise ValueError(f"query_entity must have shape (B,), got {tuple(query_entity.shape)}")
    return query_entity.new_empty((query_entity.shape[0], num_negatives), dtype=torch.int64)


if OP_AVAILABLE:
    hard_negatives_op = torch.library.custom_op(OP_NAME, mutates_args=(), device_types=("cpu", "cuda"))(_hard_negatives_impl)
    hard_negatives_op.register_fake(_hard_negatives_fake)
else:  # pragma: no cover - torch < 2.4
    hard_negatives_op = None


def _as_ids(value: Any, device: torch.device) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, device=device)


def hard_negatives_traced(index, query_entity, query_relation, relation_embeddings, relation_weights, num_negatives,
                          positive, seed, options: MiningOptions) -> torch.Tensor:
    """``hard_negatives`` as seen by a tracer: checks of Python values, then the custom op.

    Checks that need tensor values (a host sync each) are left to the op's real implementation,
    which runs the eager validation when the graph runs.
    """
    check_index(index)
    check_count(num_negatives, "num_negatives")
    check_seed(seed)
    device = index.device
    return hard_negatives_op(
        *(getattr(index, name) for name in INDEX_TENSORS),
        _as_ids(query_entity, device),
        _as_ids(query_relation, device),
        relation_embeddings,
        relation_weights,
        None if positive is None else _as_ids(positive, device),
        index.num_entities,
        index.num_relations,
        index.inverse_offset,
        num_negatives,
        options.strict,
        options.temperature,
        options.top_relations,
        options.temperature_gumbel,
        seed,
        options.backend,
    )


# ----------------------------------------------------------------------------- dispatch and fill


@dataclass(frozen=True)
class TopKBackend:
    """A backend of this op: its launcher and the largest k it takes (None: any)."""

    name: str
    run: TopKFn
    max_k: int | None = None


# The op's launchers per backend name of the shared registry (backends/registry.py).
TOP_K: dict[str, TopKBackend] = {
    "reference": TopKBackend("reference", reference_top_k),
    "cpu": TopKBackend("cpu", native_cpu_top_k),
    "cuda": TopKBackend("cuda", native_cuda_top_k),
    "triton": TopKBackend("triton", triton_top_k, TRITON_MAX_K),  # the kernel keeps k keys in registers
}
# "auto" tries these in order for each device type and takes the first usable one: for CUDA
# tensors Triton (k <= MAX_K), else the CUDA extension, else the reference (with a warning, once,
# when only the k limit kept Triton out); for CPU tensors, the C++ extension, else the reference.
AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpu", "reference")}


def resolve_backend(name: str, device: torch.device, num_negatives: int | None = None) -> TopKBackend:
    """The backend to run for ``name`` ("auto" or a backend name) on tensors on ``device``.

    With ``num_negatives``, "auto" skips backends whose ``max_k`` is smaller, and a named backend
    that cannot take it raises ValueError.
    """
    candidates = AUTO_ORDER.get(device.type, ("reference",)) if name == "auto" else (name,)
    too_large = []
    for candidate in candidates:
        backend = TOP_K.get(candidate)
        if backend is not None and BACKENDS[candidate].unusable(device) is None:
            if num_negatives is not None and backend.max_k is not None and num_negatives > backend.max_k:
                if name != "auto":
                    triton_check_k(num_negatives)  # the one backend with a limit: its own message
                too_large.append(candidate)
                continue
            if name == "auto" and candidate == "reference":
                _warn_reference_fallback(device, num_negatives if too_large else None)
            return backend
    if name == "auto":
        _warn_reference_fallback(device, num_negatives if too_large else None)
        return TOP_K["reference"]
    raise ValueError(f"backend={name!r} is not available: {BACKENDS[name].unusable(device)}")


_WARNED: set[str] = set()
_WARNED_LARGE_K = False


def _warn_reference_fallback(device: torch.device, large_k: int | None = None) -> None:
    """Say once per device type that "auto" fell back to the B x N reference, and why."""
    global _WARNED_LARGE_K
    if large_k is not None and device.type == "cuda":
        if not _WARNED_LARGE_K:
            _WARNED_LARGE_K = True
            warnings.warn(
                f"num_negatives={large_k} is above the Triton kernel's limit ({TRITON_MAX_K}) and the CUDA "
                "extension is not built: using the reference backend (a dense B x N computation). Build with "
                "KMAS_BUILD_CUDA=1 for large k.",
                stacklevel=user_stacklevel(),
            )
        return
    if device.type in _WARNED:
        return
    _WARNED.add(device.type)
    reasons = "; ".join(f"{name}: {BACKENDS[name].probe(device)}" for name in AUTO_ORDER.get(device.type, ()) if name != "reference")
    warnings.warn(
        f"kmas_kernels: backend='auto' runs the reference backend on {device.type} tensors, which materialises "
        f"B x N (slow, memory-hungry) because no fused backend is usable ({reasons or 'none exists for this device'})",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )


def mine(problem: MiningProblem, backend: str = MiningOptions.backend, limit: torch.Tensor | None = None) -> torch.Tensor:
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

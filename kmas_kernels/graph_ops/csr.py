"""A relational graph in the three sorted layouts the fused message-passing op reads, built once per graph.

An edge (u, v, r) carries a message from source node v to destination node u through edge type
(relation) r. :class:`RelationalCSR` holds the edges

- by destination (``dst_ptr``, ``dst_src``, ``dst_type``): the forward pass, one output node per CSR row;
- by source (``src_ptr``, ``src_dst``, ``src_type``): the gradient of x, the same gather on the
  transposed graph;
- by edge type (``rel_dst``, ``rel_src``) cut into chunks of at most ``chunk_size`` edges
  (``chunk_start``, ``chunk_ptr``): the gradient of the relation vectors, reduced chunk by chunk
  in a fixed order (deterministic on any number of threads or GPU programs).

Each sort is stable, so edges keep their input order within a node (the reference's summation
order). Node / type indices are int32, pointers int64. Building costs three stable argsorts;
:func:`cached_csr` builds it once per edge tensor and hands the same object back for as long as
that tensor lives and is not modified in place (a model's graph object keeps its edge tensors,
so its CSR is built at the first forward and reused by every layer and step).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch

DEFAULT_CHUNK_SIZE = 128  # edges per chunk of the relation-gradient reduction


@dataclass(frozen=True, eq=False)
class RelationalCSR:
    """Sorted edge layouts of one graph with ``num_nodes`` nodes and ``num_relations`` edge types (see module doc).

    Shapes: ``*_ptr`` (num_nodes + 1,) int64; ``dst_src``, ``dst_type``, ``src_dst``, ``src_type``,
    ``rel_dst``, ``rel_src`` (E,) int32; ``chunk_start`` (C + 1,) int64; ``chunk_ptr`` (R + 1,) int64.
    """

    num_nodes: int
    num_relations: int
    num_edges: int
    chunk_size: int
    dst_ptr: torch.Tensor
    dst_src: torch.Tensor
    dst_type: torch.Tensor
    src_ptr: torch.Tensor
    src_dst: torch.Tensor
    src_type: torch.Tensor
    rel_dst: torch.Tensor
    rel_src: torch.Tensor
    chunk_start: torch.Tensor
    chunk_ptr: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.dst_ptr.device

    @property
    def num_chunks(self) -> int:
        return int(self.chunk_start.numel()) - 1

    def dst_of_sorted_edges(self) -> torch.Tensor:
        """(E,) int64 destination of each edge in ``dst_src`` order (for the plain-torch reference)."""
        counts = self.dst_ptr[1:] - self.dst_ptr[:-1]
        return torch.repeat_interleave(torch.arange(self.num_nodes, device=self.device), counts)

    @staticmethod
    def build(dst: torch.Tensor, src: torch.Tensor, edge_type: torch.Tensor, num_nodes: int, num_relations: int,
              chunk_size: int = DEFAULT_CHUNK_SIZE) -> "RelationalCSR":
        """From (E,) integer destination, source and type of every edge (duplicates allowed)."""
        for name, t in (("dst", dst), ("src", src), ("edge_type", edge_type)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 1 or t.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"{name} must be a 1-D int32/int64 tensor, got {t.dtype} of shape {tuple(t.shape)}")
        if not dst.shape == src.shape == edge_type.shape:
            raise ValueError(f"dst, src and edge_type must have one length, got {dst.shape[0]}, {src.shape[0]}, {edge_type.shape[0]}")
        if not dst.device == src.device == edge_type.device:
            raise ValueError(f"dst, src and edge_type must be on one device, got {dst.device}, {src.device}, {edge_type.device}")
        for name, value in (("num_nodes", num_nodes), ("num_relations", num_relations), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "chunk_size" else 0):
                raise ValueError(f"{name} must be a non-negative int (chunk_size >= 1), got {value!r}")
        if num_nodes >= 2**31 or num_relations >= 2**31:
            raise ValueError(f"num_nodes and num_relations must be < 2**31, got {num_nodes}, {num_relations}")
        num_edges = int(dst.shape[0])
        device = dst.device
        if num_edges:
            # one host sync per graph: out-of-range ids would be read out of bounds by the kernels
            lo = torch.stack([dst.min(), src.min(), edge_type.min()]).tolist()
            hi = torch.stack([dst.max(), src.max(), edge_type.max()]).tolist()
            if min(lo[:2]) < 0 or max(hi[:2]) >= num_nodes:
                raise ValueError(f"node ids must lie in [0, num_nodes={num_nodes}), got [{min(lo[:2])}, {max(hi[:2])}]")
            if lo[2] < 0 or hi[2] >= num_relations:
                raise ValueError(f"edge_type must lie in [0, num_relations={num_relations}), got [{lo[2]}, {hi[2]}]")
        dst, src, edge_type = dst.long(), src.long(), edge_type.long()

        def pointer(keys: torch.Tensor, size: int) -> torch.Tensor:
            counts = torch.bincount(keys, minlength=size)
            return torch.cat([torch.zeros(1, dtype=torch.int64, device=device), counts.cumsum(0)])

        i32 = torch.int32
        by_dst = torch.argsort(dst, stable=True)
        by_src = torch.argsort(src, stable=True)
        by_rel = torch.argsort(edge_type, stable=True)
        rel_ptr = pointer(edge_type, num_relations)
        per_rel = rel_ptr[1:] - rel_ptr[:-1]
        chunks_per_rel = (per_rel + chunk_size - 1) // chunk_size
        chunk_ptr = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), chunks_per_rel.cumsum(0)])
        rel_of_chunk = torch.repeat_interleave(torch.arange(num_relations, device=device), chunks_per_rel)
        within = torch.arange(rel_of_chunk.numel(), device=device) - chunk_ptr[rel_of_chunk]
        chunk_start = torch.cat([rel_ptr[rel_of_chunk] + within * chunk_size,
                                 torch.full((1,), num_edges, dtype=torch.int64, device=device)])
        return RelationalCSR(
            num_nodes=num_nodes, num_relations=num_relations, num_edges=num_edges, chunk_size=chunk_size,
            dst_ptr=pointer(dst, num_nodes), dst_src=src[by_dst].to(i32), dst_type=edge_type[by_dst].to(i32),
            src_ptr=pointer(src, num_nodes), src_dst=dst[by_src].to(i32), src_type=edge_type[by_src].to(i32),
            rel_dst=dst[by_rel].to(i32), rel_src=src[by_rel].to(i32),
            chunk_start=chunk_start.contiguous(), chunk_ptr=chunk_ptr.contiguous(),
        )


# id(edge_index) -> (weak reference to it, its version, id + version of edge_type, key, csr)
_CACHE: dict[int, tuple] = {}
_LOCK = threading.Lock()


def _forget(key: int, ref: weakref.ref) -> None:
    with _LOCK:
        entry = _CACHE.get(key)
        if entry is not None and entry[0] is ref:
            del _CACHE[key]


def cached_csr(edge_index: torch.Tensor, edge_type: torch.Tensor, num_nodes: int, num_relations: int,
               flow: str = "target_first", chunk_size: int = DEFAULT_CHUNK_SIZE) -> RelationalCSR:
    """The :class:`RelationalCSR` of a (2, E) ``edge_index`` with (E,) ``edge_type``, built once per tensor.

    ``flow="target_first"``: ``edge_index[0]`` is the destination u (ULTRA's rspmm convention);
    ``"source_first"``: ``edge_index[1]`` is (PyG's message() convention). The cache entry is
    dropped when ``edge_index`` is freed; an in-place change of either tensor (its version
    counter) or different sizes rebuild it.
    """
    if flow not in ("target_first", "source_first"):
        raise ValueError(f"flow must be 'target_first' or 'source_first', got {flow!r}")
    if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be a (2, E) tensor, got {getattr(edge_index, 'shape', type(edge_index))}")
    signature = (id(edge_type), edge_type._version, edge_index._version, num_nodes, num_relations, flow, chunk_size)
    key = id(edge_index)
    with _LOCK:
        entry = _CACHE.get(key)
    if entry is not None and entry[0]() is edge_index and entry[1] == signature and entry[2]() is edge_type:
        return entry[3]
    dst, src = (edge_index[0], edge_index[1]) if flow == "target_first" else (edge_index[1], edge_index[0])
    csr = RelationalCSR.build(dst, src, edge_type, num_nodes, num_relations, chunk_size)
    ref = weakref.ref(edge_index, lambda r, k=key: _forget(k, r))
    with _LOCK:
        _CACHE[key] = (ref, signature, weakref.ref(edge_type), csr)
    return csr

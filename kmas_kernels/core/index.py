"""KGIndex: the compact, device-resident view of a graph that every backend reads.

Entities are 0..N-1, relations 0..R-1 with inverses counted (ULTRA's convention: relation r in
[0, R0) has inverse r + R0, R = 2 R0). All arrays are CSR-style and sorted, so that a kernel can
score a candidate entity with a short gather and test exclusion with a binary search:

    rel_ptr (R+1,) int64, rel_tails (T,) int32
        Tails(r) = rel_tails[rel_ptr[r]:rel_ptr[r+1]], ascending; T = number of distinct (r, tail).
    rel_inv_count (R,) float32
        1 / |Tails(r)| (0 for a relation without tails): the normaliser of the mixture P_b.
    ent_ptr (N+1,) int64, ent_rels (T,) int32
        the relations entity e is a tail of: ent_rels[ent_ptr[e]:ent_ptr[e+1]], ascending.
        P_b(e) = sum over those r of w[b, r] * rel_inv_count[r].
    known_keys (E,) int64, known_answers (E,) int32
        every distinct edge (q, r, e) as the key (q * R + r) * N + e, ascending; known_answers is
        key % N. The known answers of (q, r) are the slice known_answers[start:end] with
        start/end = searchsorted(known_keys, (q * R + r) * N + {0, N}); it is sorted ascending.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numbers

import numpy as np
import torch

from .validation import check_count, check_id_range

_INT64_MAX = (1 << 63) - 1


def _as_long_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        tensor = torch.as_tensor(np.asarray(value))
        if tensor.numel() == 0:  # np.asarray([]) is float64; an empty list has no dtype to check
            tensor = tensor.to(torch.int64)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"{name} must hold integer ids, got dtype {tensor.dtype}")
    return tensor.to(torch.int64)


def _ptr_from_counts(counts: torch.Tensor) -> torch.Tensor:
    ptr = torch.zeros(counts.numel() + 1, dtype=torch.int64, device=counts.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


def flat_ranges(start: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the integer ranges [start[i], end[i]).

    Returns (owner, position): owner[j] is the i whose range holds position[j]. Vectorised, so
    gathering the known answers of every batch row costs O(total length), no Python loop.
    """
    lengths = (end - start).clamp_min(0)
    owner = torch.repeat_interleave(torch.arange(start.numel(), device=start.device), lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    position = torch.arange(owner.numel(), device=start.device) - offsets[owner] + start[owner]
    return owner, position


@dataclass(frozen=True)
class KGIndex:
    """Per-relation tail sets, per-entity relation lists and known answers of one graph.

    Build with :meth:`from_triples` or :meth:`from_data`; move with :meth:`to`.
    ``inverse_offset`` is R0 when relation r + R0 is the inverse of r (None if unknown).
    """

    num_entities: int
    num_relations: int
    inverse_offset: int | None
    rel_ptr: torch.Tensor
    rel_tails: torch.Tensor
    rel_inv_count: torch.Tensor
    ent_ptr: torch.Tensor
    ent_rels: torch.Tensor
    known_keys: torch.Tensor
    known_answers: torch.Tensor

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edges(
        cls,
        query: torch.Tensor,
        relation: torch.Tensor,
        answer: torch.Tensor,
        num_entities: int,
        num_relations: int,
        inverse_offset: int | None = None,
    ) -> "KGIndex":
        """Index directed edges (query, relation, answer), inverses already included.

        All (E,) int64 tensors with ids already checked to be in range. Duplicates are merged.
        """
        n, r = int(num_entities), int(num_relations)
        if n * r * n > _INT64_MAX:
            raise ValueError(
                f"num_entities={n} and num_relations={r} are too large for the index's 64-bit "
                f"edge keys: need num_entities**2 * num_relations < 2**63"
            )
        device = query.device
        known_keys = torch.unique((query * r + relation) * n + answer)  # sorted, distinct
        known_answers = (known_keys % n).to(torch.int32)

        edge_rel = (known_keys // n) % r
        # distinct (relation, tail) pairs, once ordered by relation and once by tail
        by_rel = torch.unique(edge_rel * n + known_answers.to(torch.int64))
        pair_rel, pair_tail = by_rel // n, by_rel % n
        by_tail = torch.sort(pair_tail * r + pair_rel).values

        rel_counts = torch.bincount(pair_rel, minlength=r)
        rel_inv_count = torch.where(
            rel_counts > 0, 1.0 / rel_counts.clamp_min(1).to(torch.float64), torch.zeros((), dtype=torch.float64, device=device)
        ).to(torch.float32)
        return cls(
            num_entities=n,
            num_relations=r,
            inverse_offset=inverse_offset,
            rel_ptr=_ptr_from_counts(rel_counts),
            rel_tails=pair_tail.to(torch.int32),
            rel_inv_count=rel_inv_count,
            ent_ptr=_ptr_from_counts(torch.bincount(by_tail // r, minlength=n)),
            ent_rels=(by_tail % r).to(torch.int32),
            known_keys=known_keys,
            known_answers=known_answers,
        )

    @classmethod
    def from_triples(
        cls,
        triples: Any,
        num_entities: int | None = None,
        num_relations: int | None = None,
        add_inverse: bool = True,
    ) -> "KGIndex":
        """Index (E, 3) triples [head, relation, tail] (tensor, array or nested list).

        With ``add_inverse`` (default) every (h, r, t) also yields (t, r + R0, h) and the index has
        R = 2 * R0 relations, where ``num_relations`` = R0 counts the original relations. Without
        it, the triples are taken as they are and ``num_relations`` counts all relations.
        Sizes default to 1 + the largest id present.
        """
        triples = _as_long_tensor(triples, "triples")
        if triples.dim() != 2 or triples.shape[1] != 3:
            raise ValueError(f"triples must have shape (E, 3) [head, relation, tail], got {tuple(triples.shape)}")
        if triples.shape[0] == 0:
            raise ValueError("triples is empty: an index needs at least one edge")
        head, rel, tail = triples.unbind(1)
        if num_entities is None:
            num_entities = int(torch.maximum(head.max(), tail.max()).item()) + 1
        if num_relations is None:
            num_relations = int(rel.max().item()) + 1
        num_entities = check_count(num_entities, "num_entities")
        num_relations = check_count(num_relations, "num_relations")
        check_id_range(head, "triples[:, 0] (head)", num_entities)
        check_id_range(tail, "triples[:, 2] (tail)", num_entities)
        check_id_range(rel, "triples[:, 1] (relation)", num_relations)
        if not add_inverse:
            return cls.from_edges(head, rel, tail, num_entities, num_relations, None)
        return cls.from_edges(
            torch.cat([head, tail]),
            torch.cat([rel, rel + num_relations]),
            torch.cat([tail, head]),
            num_entities,
            2 * num_relations,
            inverse_offset=num_relations,
        )

    @classmethod
    def from_data(cls, data: Any, num_relations: int | None = None) -> "KGIndex":
        """Index a PyG-style graph: ``edge_index`` (2, E), ``edge_type`` (E,), ``num_nodes``.

        As in ULTRA, the edges already include inverses and relation r + R/2 is the inverse of r;
        ``num_relations`` defaults to ``data.num_relations`` or 1 + the largest edge type.
        """
        for attr in ("edge_index", "edge_type", "num_nodes"):
            if getattr(data, attr, None) is None:
                raise TypeError(f"data must have an `{attr}` attribute (PyG-style graph), got {type(data).__name__}")
        edge_index = _as_long_tensor(data.edge_index, "data.edge_index")
        edge_type = _as_long_tensor(data.edge_type, "data.edge_type")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"data.edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        if edge_type.shape != (edge_index.shape[1],):
            raise ValueError(f"data.edge_type must have shape (E,) = ({edge_index.shape[1]},), got {tuple(edge_type.shape)}")
        if edge_type.numel() == 0:
            raise ValueError("data has no edges: an index needs at least one edge")
        if num_relations is None:
            num_relations = getattr(data, "num_relations", None)
        if num_relations is None:
            num_relations = int(edge_type.max().item()) + 1
        num_relations = check_count(int(num_relations), "num_relations")
        num_nodes = check_count(int(data.num_nodes), "data.num_nodes")
        check_id_range(edge_index.reshape(-1), "data.edge_index", num_nodes)
        check_id_range(edge_type, "data.edge_type", num_relations)
        inverse_offset = num_relations // 2 if num_relations % 2 == 0 else None
        return cls.from_edges(edge_index[0], edge_type, edge_index[1], num_nodes, num_relations, inverse_offset)

    # ------------------------------------------------------------------ device and size
    @property
    def device(self) -> torch.device:
        return self.known_keys.device

    def to(self, device: Any) -> "KGIndex":
        """A copy of the index with every array on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    @property
    def num_edges(self) -> int:
        """Distinct directed edges, inverses included."""
        return self.known_keys.numel()

    @property
    def nbytes(self) -> int:
        return sum(
            getattr(self, f.name).numel() * getattr(self, f.name).element_size()
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        )

    @property
    def tail_counts(self) -> torch.Tensor:
        """|Tails(r)| for every relation, (R,) int64."""
        return self.rel_ptr[1:] - self.rel_ptr[:-1]

    def inverse(self, relation: Any) -> Any:
        """The inverse relation ids (r + R0 mod R) of ids in [0, R); needs an index built with inverses.

        ``relation``: an int or an integer tensor (any shape; one read-back to check the range).
        """
        if self.inverse_offset is None:
            raise ValueError("this index does not know its inverse relations (built with add_inverse=False)")
        if isinstance(relation, torch.Tensor):
            if relation.dtype == torch.bool or relation.is_floating_point() or relation.is_complex():
                raise TypeError(f"relation must hold integer relation ids, got dtype {relation.dtype}")
            check_id_range(relation.reshape(-1), "relation", self.num_relations)
        elif isinstance(relation, numbers.Integral) and not isinstance(relation, bool):
            if not 0 <= int(relation) < self.num_relations:
                raise ValueError(f"relation must hold ids in [0, {self.num_relations}), found {relation}")
        else:
            raise TypeError(f"relation must be an int or an integer tensor of relation ids, got {type(relation).__name__}")
        return (relation + self.inverse_offset) % self.num_relations

    # ------------------------------------------------------------------ queries
    def _query_base(self, query_entity: torch.Tensor, query_relation: torch.Tensor) -> torch.Tensor:
        return (query_entity * self.num_relations + query_relation) * self.num_entities

    def known_slices(self, query_entity: torch.Tensor, query_relation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, end), each (B,) int64: known_answers[start:end] are the answers of (q_b, r_b)."""
        base = self._query_base(query_entity, query_relation)
        start = torch.searchsorted(self.known_keys, base)
        end = torch.searchsorted(self.known_keys, base + self.num_entities)
        return start, end

    def is_known(self, query_entity: torch.Tensor, query_relation: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """Whether (q, r, candidate) is an edge; broadcasts (B, 1) queries against (B, M) candidates."""
        key = self._query_base(query_entity, query_relation) + candidate
        pos = torch.searchsorted(self.known_keys, key.contiguous()).clamp_max(self.known_keys.numel() - 1)
        return self.known_keys[pos] == key

    def is_tail(self, relation: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """Whether candidate is in Tails(relation); broadcasts like :meth:`is_known`."""
        pair_relation = torch.repeat_interleave(torch.arange(self.num_relations, device=self.device), self.tail_counts)
        pair_keys = pair_relation * self.num_entities + self.rel_tails.to(torch.int64)  # sorted: by r, then tail
        key = (relation * self.num_entities + candidate).contiguous()
        pos = torch.searchsorted(pair_keys, key).clamp_max(max(pair_keys.numel() - 1, 0))
        return pair_keys[pos] == key

    def tails(self, relation: int) -> torch.Tensor:
        """Tails(r), ascending int64 (convenience for tests and users)."""
        return self.rel_tails[self.rel_ptr[relation] : self.rel_ptr[relation + 1]].to(torch.int64)

    def __repr__(self) -> str:
        return (
            f"KGIndex(num_entities={self.num_entities}, num_relations={self.num_relations}, "
            f"num_edges={self.num_edges}, device={self.device}, nbytes={self.nbytes})"
        )


def check_index(index: Any) -> None:
    """TypeError unless ``index`` is a :class:`KGIndex`."""
    if not isinstance(index, KGIndex):
        raise TypeError(f"index must be a kmas_kernels.KGIndex, got {type(index).__name__}")

"""Graphs in ULTRA's protocol, built with plain torch (no torch-geometric needed).

A graph is a :class:`Graph`: a small attribute bag with the fields ULTRA's code reads

- ``edge_index`` (2, E) and ``edge_type`` (E,): the fact graph the model runs on, inverse edges
  included: every original triple (h, r, t) is there as (h -> t, r) and (t -> h, r + R0);
- ``num_nodes``; ``num_relations`` = 2 * R0 (inverses counted);
- ``target_edge_index`` (2, M) / ``target_edge_type`` (M,): the triples of this split, original
  direction only (training positives, or evaluation queries);
- ``relation_graph``: the graph of relations (see :func:`build_relation_graph`).

Triples inside this package are (M, 3) long tensors in ULTRA's batch column order [h, t, r];
``kmas_kernels.data`` loads files as [h, r, t], converted by :func:`hrt_to_htr`.

Evaluation settings (ULTRA's ``script/run.py``):

- transductive folder: the model runs on train (+ inverses); valid / test are the queries;
  ranking is filtered by train + valid + test;
- GraIL inductive pair (TRAIN_DIR, INFERENCE_DIR): the relation vocabulary comes from TRAIN_DIR;
  the model runs on INFERENCE_DIR/train.txt (+ inverses); INFERENCE_DIR valid + test together are
  the test queries; ranking is filtered by the inference graph plus those queries. Validation
  (when training on TRAIN_DIR) is TRAIN_DIR/valid.txt on the TRAIN_DIR graph, filtered by
  train + valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kmas_kernels.data import load_kg_folder, synthetic_typed_kg

RELATION_GRAPH_TYPES = ("h2h", "t2t", "h2t", "t2h")  # edge types 0..3 of the relation graph, ULTRA's order


class Graph:
    """Attribute container standing in for ``torch_geometric.data.Data``."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device: Any) -> "Graph":
        moved = {k: (v.to(device) if isinstance(v, (torch.Tensor, Graph)) else v) for k, v in self.__dict__.items()}
        return Graph(**moved)

    def __repr__(self) -> str:
        parts = []
        for k, v in self.__dict__.items():
            parts.append(f"{k}={list(v.shape)}" if isinstance(v, torch.Tensor) else f"{k}={v!r}" if not isinstance(v, Graph) else f"{k}=Graph")
        return f"Graph({', '.join(parts)})"


def hrt_to_htr(triples: torch.Tensor) -> torch.Tensor:
    """(M, 3) [h, r, t] -> (M, 3) [h, t, r]."""
    return triples[:, [0, 2, 1]].contiguous()


def build_relation_graph(edge_index: torch.Tensor, edge_type: torch.Tensor, num_nodes: int, num_relations: int) -> Graph:
    """ULTRA's graph of relations: nodes are the R relations (inverses included), 4 edge types.

    With H[e, r] = 1 when entity e is a head of relation r and T[e, r] = 1 when it is a tail,
    the edges (r1 -> r2 index pair [r1, r2]) are the non-zeros of H^T H (type 0, h2h), T^T T
    (type 1, t2t), H^T T (type 2, h2t) and T^T H (type 3, t2h); self pairs included. Only the
    sparsity pattern matters (ULTRA normalises the values but never uses them).
    """
    device = edge_index.device
    heads = torch.zeros(num_nodes, num_relations, dtype=torch.float32, device=device)
    tails = torch.zeros(num_nodes, num_relations, dtype=torch.float32, device=device)
    heads[edge_index[0], edge_type] = 1.0
    tails[edge_index[1], edge_type] = 1.0
    if num_nodes * num_relations <= 50_000_000:
        blocks = [heads.t() @ heads, tails.t() @ tails, heads.t() @ tails, tails.t() @ heads]
        pairs = [torch.nonzero(block > 0) for block in blocks]
    else:  # large graphs: sparse incidence products
        hs, ts = heads.to_sparse(), tails.to_sparse()
        blocks = [
            torch.sparse.mm(hs.t(), hs), torch.sparse.mm(ts.t(), ts),
            torch.sparse.mm(hs.t(), ts), torch.sparse.mm(ts.t(), hs),
        ]
        pairs = [block.coalesce().indices().t() for block in blocks]
    rel_edge_index = torch.cat([p.t() for p in pairs], dim=1)
    rel_edge_type = torch.cat([torch.full((p.shape[0],), i, dtype=torch.long, device=device) for i, p in enumerate(pairs)])
    return Graph(edge_index=rel_edge_index, edge_type=rel_edge_type, num_nodes=num_relations, num_relations=4)


def make_graph(fact_triples: torch.Tensor, num_nodes: int, num_base_relations: int,
               target_triples: torch.Tensor | None = None) -> Graph:
    """A ULTRA data object from [h, t, r] fact triples (inverse edges added) and target triples."""
    fact_triples = fact_triples.long()
    h, t, r = fact_triples.unbind(1)
    edge_index = torch.cat([torch.stack([h, t]), torch.stack([t, h])], dim=1)
    edge_type = torch.cat([r, r + num_base_relations])
    num_relations = 2 * num_base_relations
    if target_triples is None:
        target_triples = fact_triples
    target_triples = target_triples.long()
    return Graph(
        edge_index=edge_index,
        edge_type=edge_type,
        num_nodes=int(num_nodes),
        num_relations=num_relations,
        target_edge_index=target_triples[:, :2].t().contiguous(),
        target_edge_type=target_triples[:, 2].contiguous(),
        relation_graph=build_relation_graph(edge_index, edge_type, int(num_nodes), num_relations),
    )


def filter_graph(triples: torch.Tensor, num_nodes: int) -> Graph:
    """A graph of known answers for filtered ranking: [h, t, r] triples as edges (one direction).

    Head prediction for (h, r, t) looks up edges (x, r, t), tail prediction edges (h, r, x),
    as ULTRA's strict_negative_mask does, so one direction suffices.
    """
    triples = triples.long()
    return Graph(edge_index=triples[:, :2].t().contiguous(), edge_type=triples[:, 2].contiguous(), num_nodes=int(num_nodes))


def triples_of(graph: Graph) -> torch.Tensor:
    """The target triples of a graph as (M, 3) [h, t, r]."""
    return torch.cat([graph.target_edge_index, graph.target_edge_type.unsqueeze(0)]).t().contiguous()


@dataclass
class Split:
    """What a loop needs: train / valid / test data objects and the filters for valid / test."""

    name: str
    train: Graph
    valid: Graph
    test: Graph
    valid_filter: Graph
    test_filter: Graph


def transductive_split(train: torch.Tensor, valid: torch.Tensor, test: torch.Tensor, num_nodes: int,
                       num_base_relations: int, name: str = "") -> Split:
    """From [h, t, r] triples: one fact graph (train), filtered by train + valid + test."""
    graph = make_graph(train, num_nodes, num_base_relations)
    valid_graph = Graph(**{**graph.__dict__, "target_edge_index": valid[:, :2].t().contiguous(), "target_edge_type": valid[:, 2].contiguous()})
    test_graph = Graph(**{**graph.__dict__, "target_edge_index": test[:, :2].t().contiguous(), "target_edge_type": test[:, 2].contiguous()})
    full = filter_graph(torch.cat([train, valid, test]), num_nodes)
    return Split(name, graph, valid_graph, test_graph, full, full)


def load_transductive(path: str | Path) -> Split:
    """A transductive folder (train/valid/test.txt)."""
    ds = load_kg_folder(path)
    return transductive_split(hrt_to_htr(ds.train), hrt_to_htr(ds.valid), hrt_to_htr(ds.test),
                              ds.num_entities, ds.num_relations, name=ds.name)


def load_inductive(train_dir: str | Path, inference_dir: str | Path) -> Split:
    """A GraIL-style pair: train on TRAIN_DIR, test zero-shot / fine-tuned on INFERENCE_DIR.

    Relation ids come from TRAIN_DIR (ULTRA's GrailInductiveDataset); the inference graph gets its
    own entity ids (first appearance in train, valid, test order). The test queries are the
    inference folder's valid + test, filtered by its graph plus those queries.
    """
    base = load_kg_folder(train_dir)
    ind = load_kg_folder(inference_dir, relation_vocab=base.relation_vocab)
    if ind.num_relations != base.num_relations:
        extra = set(ind.relation_vocab) - set(base.relation_vocab)
        raise ValueError(f"inference graph {inference_dir} has relations unseen in {train_dir}: {sorted(extra)[:5]}")
    r0 = base.num_relations
    b_train, b_valid = hrt_to_htr(base.train), hrt_to_htr(base.valid)
    train = make_graph(b_train, base.num_entities, r0)
    valid = Graph(**{**train.__dict__, "target_edge_index": b_valid[:, :2].t().contiguous(), "target_edge_type": b_valid[:, 2].contiguous()})
    i_train = hrt_to_htr(ind.train)
    queries = torch.cat([hrt_to_htr(ind.valid), hrt_to_htr(ind.test)])
    test = make_graph(i_train, ind.num_entities, r0, target_triples=queries)
    return Split(
        name=f"{Path(inference_dir).name}",
        train=train,
        valid=valid,
        test=test,
        valid_filter=filter_graph(torch.cat([b_train, b_valid]), base.num_entities),
        test_filter=filter_graph(torch.cat([i_train, queries]), ind.num_entities),
    )


def synthetic_split(num_entities: int = 60, num_relations: int = 4, num_types: int = 4, num_edges: int = 300,
                    seed: int = 0) -> Split:
    """The embedded default: a small synthetic typed KG, split 90/5/5, transductive."""
    kg = synthetic_typed_kg(num_entities, num_relations, num_types, num_edges, seed=seed)
    ds = kg.split(0.05, 0.05, seed=seed)
    return transductive_split(hrt_to_htr(ds.train), hrt_to_htr(ds.valid), hrt_to_htr(ds.test),
                              ds.num_entities, ds.num_relations, name="synthetic")

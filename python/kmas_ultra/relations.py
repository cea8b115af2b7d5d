"""Relation embeddings of an ULTRA model for a graph: the ``relation_embeddings=`` of ``hard_negatives``."""

from __future__ import annotations

import torch


def relation_embeddings(model, data, query_relation: torch.Tensor) -> torch.Tensor:
    """(B, R, d) float: ``model.relation_model``'s output on ``data.relation_graph``, conditioned on
    each of the (B,) query relations (ids in [0, R), R = data.num_relations, inverses r + R/2 included,
    the layout of ``KGIndex.from_triples``). No gradients; what the ULTRA drop-in feeds KMAS in
    training through its forward hook, and what kmas-bench's hardness rows use.

    ``model``: an :class:`~kmas_ultra.Ultra` (e.g. ``load_checkpoint(path)``); ``data``: a
    :class:`~kmas_ultra.Graph` (e.g. ``load_transductive(folder).train``).
    """
    query_relation = torch.as_tensor(query_relation, dtype=torch.long)
    if query_relation.dim() != 1:
        raise ValueError(f"query_relation must be (B,), got shape {tuple(query_relation.shape)}")
    if query_relation.numel() and (query_relation.min() < 0 or query_relation.max() >= data.num_relations):
        raise ValueError(f"query_relation ids must be in [0, {data.num_relations}) (data.num_relations, inverses included)")
    with torch.no_grad():
        return model.relation_model(data.relation_graph, query=query_relation.to(data.edge_index.device)).float()

"""The drop-in for ``negative_sampling`` of ULTRA and the KGFMs that copy it (TRIX, MOTIF, SEMMA).

Their training loops call ``batch = tasks.negative_sampling(train_data, batch, num_negative, strict)``
and then ``model(train_data, batch)``. Swap the first with one line:

    negative_sampling = KMASNegativeSampling(model, train_data, total_steps)
    batch = negative_sampling(train_data, batch, cfg.task.num_negative, strict=cfg.task.strict_negative)

or leave the training script untouched and patch the module it calls (``install(tasks, model, ...)``).

Relation representations come from the model's own relation encoder without an extra forward
pass: a forward hook on it (``relation_module``) sees every (B, R, d) output, and a
per-graph :class:`RelationSimilarityCache` keeps one similarity row per query relation. Which graph
an encoder output belongs to (docs/semantics.md, "The drop-in"):

1. the encoder was called with a registered graph object (the ``data`` given to the drop-in, as
   in TRIX, or its ``relation_graph``, as in ULTRA), or else
2. the graph of the latest drop-in call (MOTIF rebuilds ``data`` and its relation hypergraph on
   every step; SEMMA's fused representations come from a module that never sees the graph).

Only forwards in training mode are cached (validation and test run in ``eval()``), and none inside
``paused()``. Graphs are identified by the object passed to the drop-in, or, for a new object, by
(num_nodes, num_relations, edges) being equal to a known graph's. A relation whose row was never
filled borrows one from the latest forward (``fallback="shared"``, the default) or, with
``fallback="one_hot"``, falls back to one-hot weights (negatives from its own tail set);
``stats()`` counts both kinds of rows, and a warning fires once when hard negatives are due but the
cache is still empty. ``hard_counts`` holds, per row of the latest batch, how many of its negative
columns are hard, for a loss that weighs them (:func:`kmas_kernels.loss.link_prediction_loss`).

Under DDP each rank draws its own stream: the seed of rank ``r`` at step ``s`` is
``mix_seed(rank_seed(seed, r), s)`` (rank 0 is the single-process stream).

Parts, one job each: ``hooks`` (encoder capture), ``graphs`` (graph registry, per-graph index and
cache), ``dropin`` (the sampling call, stats), ``checkpoint`` (state_dict), ``install`` (patching).
"""

from .dropin import EMPTY_CACHE_WARNING_CALLS, KMASNegativeSampling, current_rank, rank_seed
from .graphs import MANY_GRAPHS_WARNING, GraphState
from .hooks import default_output, default_query
from .install import install

__all__ = [
    "KMASNegativeSampling", "install", "rank_seed", "current_rank", "GraphState", "default_query", "default_output",
    "EMPTY_CACHE_WARNING_CALLS", "MANY_GRAPHS_WARNING",
]

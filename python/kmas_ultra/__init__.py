"""kmas_ultra: an ULTRA-compatible reference training / evaluation loop for kmas_kernels.

    from kmas_ultra import Ultra, load_checkpoint, load_inductive, evaluate
    model = load_checkpoint("ultra_3g.pth")                  # strict=True, 82 tensors
    split = load_inductive("grail/fb237_v1", "grail/fb237_v1_ind")
    metrics = evaluate(model, split.test, triples_of(split.test), split.test_filter)

Depends on kmas_kernels (data loading, KMAS sampler); kmas_kernels never imports it.
Console scripts: ``kmas-eval`` and ``kmas-train``.
"""

from .data import Graph, Split, build_relation_graph, load_inductive, load_transductive, make_graph, synthetic_split, triples_of
from kmas_kernels.core.files import CheckpointError

from .model import EntityNBFNet, RelNBFNet, Ultra, load_checkpoint
from .relations import relation_embeddings
from .tasks import (all_negative, compute_ranking, edge_match, evaluate, negative_sampling, self_adversarial_bce,
                    strict_negative_mask)

__all__ = [
    "Graph", "Split", "build_relation_graph", "load_inductive", "load_transductive", "make_graph", "synthetic_split",
    "triples_of", "CheckpointError", "EntityNBFNet", "RelNBFNet", "Ultra", "load_checkpoint", "relation_embeddings", "all_negative", "compute_ranking",
    "edge_match", "evaluate", "negative_sampling", "self_adversarial_bce", "strict_negative_mask",
]

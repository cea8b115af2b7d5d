"""Seeded inputs of the micro-benchmarks: a random graph and query batch at a given size."""

import torch

from kmas_kernels import KGIndex

# N entities, R0 base relations, E edges, B queries, k negatives; "large" takes < 1 s a call on a 2-core CPU
SIZES = {"small": (1_000, 8, 5_000, 64, 32), "large": (50_000, 32, 500_000, 256, 128)}


def graph_and_queries(size: str):
    n, r0, edges, batch, k = SIZES[size]
    g = torch.Generator().manual_seed(0)
    triples = torch.stack([torch.randint(n, (edges,), generator=g), torch.randint(r0, (edges,), generator=g),
                           torch.randint(n, (edges,), generator=g)], dim=1)
    index = KGIndex.from_triples(triples, num_entities=n, num_relations=r0)
    pick = torch.randint(index.num_edges, (batch,), generator=g)
    key = index.known_keys[pick]
    r = index.num_relations
    q, rel, a = key // n // r, (key // n) % r, key % n
    z = torch.randn(r, 16, generator=g)
    return index, q, rel, a, z, k

"""A second, deliberately naive statement of docs/semantics.md §2–§5 from raw triples: Python sets and loops.

It shares nothing with the package's index or reference, so a bug in either shows up as a
mismatch rather than being copied into the expected values.
"""

from __future__ import annotations

import math
from collections import defaultdict


def edges_with_inverses(triples, num_relations):
    """Directed edges (q, r, e) of (h, r, t) triples, inverses as r + num_relations."""
    edges = set()
    for h, r, t in triples:
        edges.add((h, r, t))
        edges.add((t, r + num_relations, h))
    return edges


def tails_by_relation(edges):
    tails = defaultdict(set)
    for _, r, e in edges:
        tails[r].add(e)
    return tails


def probability(edges, weights_row, num_entities):
    """P(e) = sum_r w[r] 1[e in Tails(r)] / |Tails(r)|, float64, as a list."""
    tails = tails_by_relation(edges)
    p = [0.0] * num_entities
    for r, members in tails.items():
        for e in members:
            p[e] += float(weights_row[r]) / len(members)
    return p


def excluded(edges, q, r, positive, strict):
    out = {positive} if positive is not None and positive >= 0 else set()
    if strict:
        out |= {e for (qq, rr, e) in edges if qq == q and rr == r}
    return out


def relation_weights(z_rows, r_b, temperature, top_relations=None):
    """softmax(cos(z[r_b], z[r']) / temperature) over the top relations; z_rows: list of vectors."""
    def cos(a, b):
        na = math.sqrt(sum(x * x for x in a))
        nb = math.sqrt(sum(x * x for x in b))
        return sum(x * y for x, y in zip(a, b)) / max(na * nb, 1e-300)

    sims = [cos(z_rows[r_b], z) for z in z_rows]
    keep = set(range(len(sims)))
    if top_relations is not None:
        others = sorted((r for r in range(len(sims)) if r != r_b), key=lambda r: (-sims[r], r))
        keep = {r_b, *others[: top_relations - 1]}
    m = max(sims[r] / temperature for r in keep)
    unnorm = [math.exp(sims[r] / temperature - m) if r in keep else 0.0 for r in range(len(sims))]
    total = sum(unnorm)
    return [u / total for u in unnorm]

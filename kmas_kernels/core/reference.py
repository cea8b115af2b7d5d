"""The reference backend: docs/semantics.md §3–§5 in plain PyTorch, materialising B x N. The oracle.

Readable first; every fused backend computes the same thing per (row, entity) without the
B x N tensors:

    P[b, e]   = sum_{r in rels(e)} w[b, r] / |Tails(r)|          (float32, ascending r, from 0)
    key[b, e] = log P[b, e] + temperature_gumbel * G(seed, b, e)   (float32; -inf where P = 0)
              = P[b, e] when temperature_gumbel = 0: the order of log P without log's rounding,
                so the deterministic mode is exact on every backend
    key[b, e] = -inf for the positive and, when strict, the known answers of (q_b, r_b)
    result[b] = the k largest keys, descending, ties by smaller id; -1 past the finite keys.
"""

from __future__ import annotations

import torch

from .index import flat_ranges
from .philox import gumbel_noise
from .problem import MiningProblem


def candidate_probability(problem: MiningProblem) -> torch.Tensor:
    """P (B, N) float32: the unnormalised hard-negative distribution of every row.

    Summed in float32 in the index's order (ascending relation per entity), as the fused kernels
    do, so that equal sums stay equal across backends. On CPU, ``index_add_`` adds the terms one
    index position at a time, in that order; on CUDA it uses atomics and the order is free.
    """
    index = problem.index
    scaled = problem.scaled_weights()  # (B, R) float32
    degree = index.ent_ptr[1:] - index.ent_ptr[:-1]
    entity_of_pair = torch.repeat_interleave(torch.arange(index.num_entities, device=index.device), degree)
    p = torch.zeros(problem.batch_size, index.num_entities, dtype=torch.float32, device=index.device)
    return p.index_add_(1, entity_of_pair, scaled[:, index.ent_rels.to(torch.int64)])


def candidate_keys(problem: MiningProblem) -> torch.Tensor:
    """Gumbel-top-k keys (B, N) float32, -inf for excluded entities and P = 0."""
    index = problem.index
    batch = problem.batch_size
    p = candidate_probability(problem)
    if problem.temperature_gumbel == 0:
        keys = torch.where(p > 0, p, torch.full_like(p, float("-inf")))
    else:
        keys = torch.log(p)
    if problem.temperature_gumbel > 0:
        rows = torch.arange(batch, device=index.device)[:, None]
        entities = torch.arange(index.num_entities, device=index.device)[None, :]
        keys = keys + problem.temperature_gumbel * gumbel_noise(problem.seed, rows, entities)
    has_positive = problem.positive >= 0
    keys[torch.nonzero(has_positive).squeeze(1), problem.positive[has_positive]] = float("-inf")
    row, position = flat_ranges(problem.known_start, problem.known_end)
    keys[row, index.known_answers[position].to(torch.int64)] = float("-inf")
    return keys


def reference_top_k(problem: MiningProblem) -> torch.Tensor:
    """(B, k) int64 ids of the largest keys per row, descending, -1 past the row's support."""
    keys = candidate_keys(problem)
    # stable sort on descending keys keeps ascending ids among equal keys
    values, ids = torch.sort(keys, dim=1, descending=True, stable=True)
    k = problem.num_negatives
    top = ids[:, :k].clone()
    top[values[:, :k] == float("-inf")] = -1
    return top

"""Negative sampling, filtering and ranking with ULTRA's semantics (native torch)."""

from __future__ import annotations

import math
import sys
from typing import Iterable

import torch
from torch.nn import functional as F


def edge_match(edges: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the columns of ``edges`` (D, E) equal to each column of ``queries`` (D, Q).

    Returns (edge ids of all matches, concatenated in query order; number of matches per query).
    Columns are hashed to one int64 with mixed radix, sorted once, and looked up with searchsorted.
    """
    base = torch.maximum(edges.max(dim=1).values, queries.max(dim=1).values) + 1
    if math.prod(int(b) for b in base.tolist()) >= 2**63:
        raise ValueError("edge_match: the id ranges are too large for an int64 key")
    scale = torch.ones_like(base)
    for i in range(base.shape[0] - 2, -1, -1):
        scale[i] = scale[i + 1] * base[i + 1]
    edge_key = (edges * scale.unsqueeze(-1)).sum(0)
    edge_key, order = edge_key.sort()
    query_key = (queries * scale.unsqueeze(-1)).sum(0)
    start = torch.searchsorted(edge_key, query_key)
    end = torch.searchsorted(edge_key, query_key, right=True)
    count = end - start
    offset = count.cumsum(0) - count
    flat = torch.arange(int(count.sum()), device=edges.device) + (start - offset).repeat_interleave(count)
    return order[flat], count


def strict_negative_mask(data, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_mask, h_mask), each (B, N) bool: True where an entity is NOT a known answer.

    t_mask[b] excludes every x with (h_b, x, r_b) an edge of ``data`` and the positive t_b;
    h_mask[b] excludes every x with (x, t_b, r_b) an edge and the positive h_b (ULTRA's
    ``strict_negative_mask``; ``batch`` is (B, 3) [h, t, r]).
    """
    h, t, r = batch.t()
    masks = []
    for known_side, query_side, query_ent, positive in ((1, 0, h, t), (0, 1, t, h)):
        found, count = edge_match(torch.stack([data.edge_index[query_side], data.edge_type]), torch.stack([query_ent, r]))
        rows = torch.arange(len(count), device=batch.device).repeat_interleave(count)
        mask = torch.ones(len(count), data.num_nodes, dtype=torch.bool, device=batch.device)
        mask[rows, data.edge_index[known_side, found]] = False
        mask[torch.arange(len(count), device=batch.device), positive] = False
        masks.append(mask)
    return masks[0], masks[1]


def _draw_from_mask(mask: torch.Tensor, num_negative: int, generator=None) -> torch.Tensor:
    """num_negative uniform draws with replacement from the True entries of each row of mask."""
    candidates = mask.nonzero()[:, 1]
    count = mask.sum(dim=-1)
    if (count == 0).any():
        raise ValueError("a query has no admissible negative (every entity is a known answer)")
    u = torch.rand(mask.shape[0], num_negative, device=mask.device, generator=generator)
    index = (u * count.unsqueeze(-1)).long().clamp_(max=(count - 1).unsqueeze(-1))
    return candidates[index + (count.cumsum(0) - count).unsqueeze(-1)]


def negative_sampling(data, batch: torch.Tensor, num_negative: int, strict: bool = True, generator=None) -> torch.Tensor:
    """ULTRA's negative sampler: (B, 3) [h, t, r] -> (B, 1 + k, 3).

    Column 0 is the positive; rows [0, B // 2) get random tails, rows [B // 2, B) random heads.
    ``strict``: uniform over the entities that are not known answers (B x N mask, as ULTRA);
    otherwise uniform over all entities.
    """
    batch_size = batch.shape[0]
    half = batch_size // 2
    h, t, r = batch.t()
    if strict:
        t_mask, h_mask = strict_negative_mask(data, batch)
        neg_t = _draw_from_mask(t_mask[:half], num_negative, generator)
        neg_h = _draw_from_mask(h_mask[half:], num_negative, generator)
    else:
        neg = torch.randint(data.num_nodes, (batch_size, num_negative), device=batch.device, generator=generator)
        neg_t, neg_h = neg[:half], neg[half:]
    h_index = h.unsqueeze(-1).repeat(1, num_negative + 1)
    t_index = t.unsqueeze(-1).repeat(1, num_negative + 1)
    r_index = r.unsqueeze(-1).repeat(1, num_negative + 1)
    t_index[:half, 1:] = neg_t
    h_index[half:, 1:] = neg_h
    return torch.stack([h_index, t_index, r_index], dim=-1)


def all_negative(data, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every entity as candidate tail / head: two (B, N, 3) batches."""
    h, t, r = batch.t()
    n = data.num_nodes
    every = torch.arange(n, device=batch.device).unsqueeze(0).expand(len(h), -1)
    rr = r.unsqueeze(-1).expand(-1, n)
    t_batch = torch.stack([h.unsqueeze(-1).expand(-1, n), every, rr], dim=-1)
    h_batch = torch.stack([every, t.unsqueeze(-1).expand(-1, n), rr], dim=-1)
    return t_batch, h_batch


def compute_ranking(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 + number of admissible candidates scoring at least as high as the target (ties count against)."""
    pos = pred.gather(-1, target.unsqueeze(-1))
    better = pos <= pred
    if mask is not None:
        better = better & mask
    return better.sum(dim=-1) + 1


def self_adversarial_bce(pred: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """ULTRA's loss: BCE with column 0 positive, negatives weighted by softmax(score / T) (no grad)."""
    target = torch.zeros_like(pred)
    target[:, 0] = 1
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    weight = torch.ones_like(pred)
    with torch.no_grad():
        if temperature > 0:
            weight[:, 1:] = F.softmax(pred[:, 1:] / temperature, dim=-1)
        else:
            weight[:, 1:] = 1.0 / (pred.shape[1] - 1)
    return ((loss * weight).sum(dim=-1) / weight.sum(dim=-1)).mean()


def metrics_from_ranks(ranks: torch.Tensor) -> dict:
    ranks = ranks.float()
    if ranks.numel() == 0:
        return {"mrr": float("nan"), "mr": float("nan"), "hits@1": float("nan"), "hits@3": float("nan"), "hits@10": float("nan"), "num_ranks": 0}
    return {
        "mrr": float((1.0 / ranks).mean()),
        "mr": float(ranks.mean()),
        "hits@1": float((ranks <= 1).float().mean()),
        "hits@3": float((ranks <= 3).float().mean()),
        "hits@10": float((ranks <= 10).float().mean()),
        "num_ranks": int(ranks.numel()),
    }


@torch.no_grad()
def evaluate(model, data, triples: torch.Tensor, filter_data=None, batch_size: int = 16, progress: bool = False,
             desc: str = "eval") -> dict:
    """Filtered ranking over all entities, tails and heads (ULTRA's ``test``).

    ``triples`` (M, 3) [h, t, r] are the queries; ``filter_data`` the known-answer graph (default
    ``data``). Returns metrics plus ``tail_ranks`` / ``head_ranks`` tensors.
    """
    was_training = model.training
    model.eval()
    filter_data = data if filter_data is None else filter_data
    tail_ranks, head_ranks = [], []
    chunks: Iterable = range(0, triples.shape[0], batch_size)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=desc, unit="batch", file=sys.stderr, total=math.ceil(triples.shape[0] / batch_size))
    for start in chunks:
        batch = triples[start:start + batch_size]
        t_batch, h_batch = all_negative(data, batch)
        t_pred = model(data, t_batch)
        h_pred = model(data, h_batch)
        t_mask, h_mask = strict_negative_mask(filter_data, batch)
        tail_ranks.append(compute_ranking(t_pred, batch[:, 1], t_mask))
        head_ranks.append(compute_ranking(h_pred, batch[:, 0], h_mask))
    model.train(was_training)
    device = triples.device
    tails = torch.cat(tail_ranks) if tail_ranks else torch.zeros(0, dtype=torch.long, device=device)
    heads = torch.cat(head_ranks) if head_ranks else torch.zeros(0, dtype=torch.long, device=device)
    # ULTRA concatenates [tail ranks, head ranks] per batch; the metrics do not depend on the order
    result = metrics_from_ranks(torch.cat([tails, heads]).cpu())
    result["tail_ranks"] = tails.cpu()
    result["head_ranks"] = heads.cpu()
    return result

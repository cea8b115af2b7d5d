"""kmas_kernels.loss against a plain-torch, row-at-a-time reference; per-row hard counts of the samplers."""

import pytest
import torch
import torch.nn.functional as F

from kmas_kernels import HardRatioSchedule, KGIndex, KMASSampler
from kmas_kernels.loss import link_prediction_loss, negative_weights
from conftest import random_triples


def reference_loss(logits: torch.Tensor, hard_counts, temperature: float, weighting: str) -> torch.Tensor:
    """One row at a time, float64, the weights written out as the docstring defines them."""
    rows = []
    for b in range(logits.shape[0]):
        x = logits[b].double()
        neg = x[1:]
        k = neg.numel()
        h = 0 if hard_counts is None else int(hard_counts[b])
        soft = lambda v: torch.softmax(v / temperature, 0) if temperature > 0 else torch.full_like(v, 1 / v.numel())  # noqa: E731
        if weighting == "adversarial" or h == 0:
            w = soft(neg)
        elif weighting == "share":
            w = torch.cat([torch.full((h,), 1 / k, dtype=x.dtype), soft(neg[h:]) * (k - h) / k if h < k else neg[:0]])
        else:
            w = torch.cat([soft(neg[:h]) * h / k, soft(neg[h:]) * (k - h) / k if h < k else neg[:0]])
        target = torch.zeros_like(x)
        target[0] = 1
        bce = F.binary_cross_entropy_with_logits(x, target, reduction="none")
        weight = torch.cat([torch.ones(1, dtype=x.dtype), w])
        rows.append((bce * weight).sum() / weight.sum())
    return torch.stack(rows).mean()


@pytest.mark.parametrize("weighting", ["adversarial", "share", "block"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("counts", ["mixed", "none_hard", "all_hard", "none"])
def test_loss_matches_reference(weighting, temperature, counts):
    g = torch.Generator().manual_seed(hash((weighting, temperature, counts)) % 2**31)
    size, k = 7, 9
    logits = torch.randn(size, 1 + k, generator=g) * 3
    hard = {"mixed": torch.randint(0, k + 1, (size,), generator=g), "none_hard": torch.zeros(size, dtype=torch.int64),
            "all_hard": torch.full((size,), k), "none": None}[counts]
    got = link_prediction_loss(logits, hard, adversarial_temperature=temperature, hard_weighting=weighting)
    want = reference_loss(logits, hard, temperature, weighting)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_weights_rows_sum_to_one_and_hard_share_is_fixed():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 8, generator=g) * 5
    hard = torch.tensor([0, 2, 8, 5, 1])
    for weighting in ("share", "block"):
        w = negative_weights(logits, hard, 1.0, weighting)
        torch.testing.assert_close(w.sum(1), torch.ones(5))
        mask = torch.arange(8)[None] < hard[:, None]
        torch.testing.assert_close((w * mask).sum(1), hard.float() / 8)


def test_adversarial_is_ultras_loss_and_no_counts_equal_zero_counts():
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    base = link_prediction_loss(logits)
    for weighting in ("share", "block"):
        torch.testing.assert_close(link_prediction_loss(logits, torch.zeros(4, dtype=torch.int64), hard_weighting=weighting), base)


def test_gradient_flows_through_bce_not_weights():
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    link_prediction_loss(logits, torch.tensor([1, 0, 4]), hard_weighting="share").backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, match", [
    (dict(hard_weighting="soft"), "hard_weighting"),
    (dict(hard_counts=torch.zeros(2, dtype=torch.int64)), "hard_counts"),
    (dict(hard_counts=torch.zeros(3)), "hard_counts"),
])
def test_bad_input_named(bad, match):
    with pytest.raises(ValueError, match=match):
        link_prediction_loss(torch.randn(3, 4), **{"hard_counts": None, **bad})


def test_sampler_hard_counts_are_the_hard_columns():
    triples = random_triples(30, 3, 90, seed=0)
    index = KGIndex.from_triples(triples, num_entities=30, num_relations=3)
    sampler = KMASSampler(index, 12, 0.5, temperature=0.3, top_relations=None, seed=3)
    h, r, t = triples[:10].unbind(1)
    z = torch.randn(index.num_relations, 8, generator=torch.Generator().manual_seed(0))
    out = sampler.sample(h, r, t, relation_embeddings=z)
    counts = sampler.hard_counts
    assert counts.shape == (10,) and counts.dtype == torch.int64
    assert (counts <= 6).all() and (counts >= 0).all()
    # the hard columns are exactly what a sampler with hard share 1 and k = count returns for that row
    again = KMASSampler(index, 12, 0.5, temperature=0.3, top_relations=None, seed=3)
    same = again.sample(h, r, t, relation_embeddings=z)
    assert torch.equal(out, same) and torch.equal(again.hard_counts, counts)
    zero = KMASSampler(index, 12, 0.0, temperature=0.3, top_relations=None, seed=3)
    zero.sample(h, r, t, relation_embeddings=z)
    assert (zero.hard_counts == 0).all()


def test_separate_directions_mix_only_the_querys_direction():
    triples = random_triples(40, 4, 160, seed=1)
    index = KGIndex.from_triples(triples, num_entities=40, num_relations=4)
    from kmas_kernels.core.relation_weights import relation_weights_from_embeddings, same_direction_mask

    rel = torch.tensor([0, 3, 4, 7])
    z = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    allowed = same_direction_mask(rel, 8, index.inverse_offset)
    w = relation_weights_from_embeddings(z, rel, 0.3, None, allowed)
    assert (w[:2, 4:] == 0).all() and (w[2:, :4] == 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    w3 = relation_weights_from_embeddings(z, rel, 0.3, 2, allowed)
    assert ((w3 > 0).sum(1) <= 2).all() and (w3[torch.arange(4), rel] > 0).all()
    with pytest.raises(ValueError, match="directions"):
        KMASSampler(index, 4, 0.5, directions="sideways")


def test_shared_fallback_borrows_rows_from_the_latest_forward():
    from kmas_kernels.relation_cache import RelationSimilarityCache

    r = 6
    inverse = lambda rel: (rel + 3) % 6  # noqa: E731
    z = torch.randn(2, r, 4, generator=torch.Generator().manual_seed(0))
    query = torch.tensor([0, 1])
    shared = RelationSimilarityCache(r, inverse, "cpu", fallback="shared", inverse_offset=3)
    one_hot = RelationSimilarityCache(r, inverse, "cpu", fallback="one_hot", inverse_offset=3)
    for cache in (shared, one_hot):
        cache.update(z, query, step=0)
    unseen = torch.tensor([2, 5])
    w, from_cache = shared.weights(unseen, 0.3, None)
    assert from_cache.all() and shared.borrowed[unseen].all() and not shared.borrowed[query].any()
    zn = F.normalize(z[-1], dim=-1)
    torch.testing.assert_close(w, torch.softmax((zn[unseen] @ zn.T) / 0.3, dim=1))
    w1, from_cache1 = one_hot.weights(unseen, 0.3, None)
    assert not from_cache1.any() and torch.equal(w1, F.one_hot(unseen, r).float())
    # a forward conditioned on the relation itself replaces the borrowed row
    shared.update(z, torch.tensor([2, 2]), step=1)
    assert shared.seen[2] and not shared.borrowed[2]

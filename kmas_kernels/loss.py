"""ULTRA's link-prediction loss with a say in how much of it the hard negatives get.

ULTRA (and TRIX, MOTIF, SEMMA) score a (B, 1 + k) block of logits, column 0 the positive, and
take binary cross-entropy with *self-adversarial* weights: the negatives of a row share a weight
of 1, split by softmax(logit / T) (no gradient through the weights). With KMAS, the first
``hard_counts[b]`` negative columns of row b are hard ones; the softmax then gives them far more
than their share of the loss (hardness counted twice: once when mining, once in the loss).
docs/semantics.md, "Loss weighting", gives the measurements. ``hard_weighting`` chooses:

- ``"adversarial"``: ULTRA's loss as it is (softmax over every negative column);
- ``"share"``: each hard column weighs 1/k (the block its column share h_b/k, uniform inside),
  ULTRA's softmax over the uniform columns, which together weigh (k - h_b)/k;
- ``"block"``: softmax inside each block, the hard block weighing h_b/k and the uniform block
  (k - h_b)/k.

All three are ULTRA's loss on a row without hard columns (h_b = 0). Per row, the weights of the
negatives sum to 1 and the positive weighs 1; the loss is mean over rows of
sum(weight * bce) / sum(weight), as in ULTRA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HARD_WEIGHTINGS = ("adversarial", "share", "block")


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax over the columns where ``mask`` holds; rows with no such column get all zeros."""
    masked = logits.masked_fill(~mask, float("-inf"))
    top = masked.amax(dim=1, keepdim=True).clamp_min(torch.finfo(logits.dtype).min)  # finite even for empty rows
    e = torch.exp(masked - top)
    total = e.sum(dim=1, keepdim=True)
    return torch.where(total > 0, e / total.clamp_min(torch.finfo(logits.dtype).tiny), torch.zeros_like(e))


def negative_weights(
    negative_logits: torch.Tensor,
    hard_counts: torch.Tensor | None,
    adversarial_temperature: float = 1.0,
    hard_weighting: str = "adversarial",
) -> torch.Tensor:
    """(B, k) loss weights of the negative columns (each row sums to 1), computed without gradient.

    ``negative_logits`` (B, k): the logits of the negatives; ``hard_counts`` (B,) int: row b's first
    hard_counts[b] columns are hard (None: no hard column). ``adversarial_temperature`` <= 0: uniform
    weights instead of the softmax (ULTRA's ``adversarial_temperature`` off).
    """
    if hard_weighting not in HARD_WEIGHTINGS:
        raise ValueError(f"hard_weighting must be one of {HARD_WEIGHTINGS}, got {hard_weighting!r}")
    if negative_logits.dim() != 2 or negative_logits.shape[1] < 1:
        raise ValueError(f"logits must be (B, 1 + k) with k >= 1, got {tuple(negative_logits.shape)} negative columns")
    size, k = negative_logits.shape
    with torch.no_grad():
        x = negative_logits.detach().to(torch.float32)
        scores = x / adversarial_temperature if adversarial_temperature > 0 else torch.zeros_like(x)
        if hard_counts is None or hard_weighting == "adversarial":
            return torch.softmax(scores, dim=1)
        counts = hard_counts.to(device=x.device, dtype=torch.int64).clamp(0, k)
        hard = torch.arange(k, device=x.device)[None, :] < counts[:, None]  # (B, k)
        hard_share = (counts.to(torch.float32) / k)[:, None]  # (B, 1)
        uniform_part = _masked_softmax(scores, ~hard) * (1.0 - hard_share)
        if hard_weighting == "share":
            hard_part = hard.to(torch.float32) / k
        else:  # "block"
            hard_part = _masked_softmax(scores, hard) * hard_share
        return torch.where(hard, hard_part, uniform_part)


def link_prediction_loss(
    logits: torch.Tensor,
    hard_counts: torch.Tensor | None = None,
    *,
    adversarial_temperature: float = 1.0,
    hard_weighting: str = "adversarial",
) -> torch.Tensor:
    """ULTRA's BCE on (B, 1 + k) logits (column 0 the positive), negatives weighted per ``hard_weighting``.

    ``hard_counts`` (B,) integer tensor, e.g. ``KMASNegativeSampling.hard_counts`` of the batch
    the logits score: row b's negative columns 1 .. hard_counts[b] are hard (rows may hold fewer
    hard columns than asked). None, or ``hard_weighting="adversarial"``: exactly ULTRA's loss.
    Returns a scalar; no host synchronisation.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be a (B, 1 + k) float tensor with k >= 1, got {getattr(logits, 'shape', type(logits))}")
    if hard_counts is not None:
        if not isinstance(hard_counts, torch.Tensor) or hard_counts.is_floating_point() or hard_counts.shape != (logits.shape[0],):
            raise ValueError(f"hard_counts must be a ({logits.shape[0]},) integer tensor, got "
                             f"{getattr(hard_counts, 'dtype', type(hard_counts))} {tuple(getattr(hard_counts, 'shape', ()))}")
    if isinstance(adversarial_temperature, bool) or not isinstance(adversarial_temperature, (int, float)):
        raise TypeError(f"adversarial_temperature must be a number, got {type(adversarial_temperature).__name__}")
    target = torch.zeros_like(logits)
    target[:, 0] = 1
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = torch.ones_like(logits)
    weight[:, 1:] = negative_weights(logits[:, 1:], hard_counts, adversarial_temperature, hard_weighting).to(logits.dtype)
    return ((bce * weight).sum(dim=-1) / weight.sum(dim=-1)).mean()

"""The project's random stream: Philox-4x32-10, counter-based, in vectorised torch.

Every backend draws its Gumbel noise from this one definition, so the same seed gives the same
negatives on every backend. The layout (docs/semantics.md, "Random stream") is:

    key      = (seed & 0xFFFFFFFF, seed >> 32)          seed in [0, 2**63)
    counter  = (entity, row, 0, 0)                       Gumbel noise of batch row `row`
    x        = word 0 of Philox-4x32-10(counter, key)    uint32

This is exactly what Triton's ``tl.randint(seed, offset)`` computes for the 64-bit offset
``(row << 32) | entity``, so a Triton kernel reproduces it with one call per candidate, and the
stream of an entity does not depend on how entities are tiled.

uint32 values live in int64 tensors (torch has no full uint32 arithmetic); the 32 x 32 -> 64 bit
products are split into 16-bit halves so that nothing overflows int64.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53  # multiplier of counter word 0
PHILOX_M1 = 0xCD9E8D57  # multiplier of counter word 2
PHILOX_W0 = 0x9E3779B9  # key bump, word 0 (golden ratio)
PHILOX_W1 = 0xBB67AE85  # key bump, word 1 (sqrt(3) - 1)
PHILOX_ROUNDS = 10

# Counter word 3 names the stream, so that the draws of different jobs never overlap.
STREAM_GUMBEL = 0  # hard-negative keys; word 3 = 0 is what tl.randint uses
STREAM_UNIFORM = 1  # uniform (random) negatives of the hybrid sampler
STREAM_FILL = 2  # uniform fill of rows whose hard-negative support is smaller than k

SEED_BOUND = 1 << 63

# Largest float32 below 1: the uniform is clamped here so that -log1p(-v) stays finite.
_ONE_MINUS_ULP = 1.0 - 2.0**-24
_TWO_POW_MINUS_32 = 2.0**-32
# Largest Gumbel value the stream can produce: -log(2**-32). Kernels use it to skip the RNG
# for candidates whose log P cannot beat the current k-th key even with maximal noise.
GUMBEL_MAX = 22.18070977791825


def split_seed(seed: int) -> tuple[int, int]:
    """(k0, k1): the Philox key of a seed in [0, 2**63)."""
    return seed & MASK32, (seed >> 32) & MASK32


def _mulhilo32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of the 64-bit product of the constant ``a`` and uint32 ``b``."""
    a_hi, a_lo = a >> 16, a & 0xFFFF
    lo_part = b * a_lo  # < 2**48
    hi_part = b * a_hi  # < 2**48
    mid = lo_part + ((hi_part & 0xFFFF) << 16)  # < 2**49
    return ((hi_part >> 16) + (mid >> 32)) & MASK32, mid & MASK32


def philox4x32(
    c0: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor | int,
    c3: torch.Tensor | int,
    seed: int,
    rounds: int = PHILOX_ROUNDS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox-4x32 (Random123) on broadcastable int64 tensors holding uint32 counter words.

    Returns the four output words as int64 tensors with values in [0, 2**32).
    """
    k0, k1 = split_seed(seed)
    c0 = c0.to(torch.int64) & MASK32
    c1 = c1.to(torch.int64) & MASK32
    c0, c1 = torch.broadcast_tensors(c0, c1)
    c2 = torch.full_like(c0, c2 & MASK32) if isinstance(c2, int) else c2.to(torch.int64).expand_as(c0)
    c3 = torch.full_like(c0, c3 & MASK32) if isinstance(c3, int) else c3.to(torch.int64).expand_as(c0)
    for _ in range(rounds):
        hi0, lo0 = _mulhilo32(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def random_uint32(seed: int, row: torch.Tensor, entity: torch.Tensor, stream: int = STREAM_GUMBEL) -> torch.Tensor:
    """Word 0 of Philox at counter (entity, row, 0, stream); broadcast over row and entity."""
    return philox4x32(entity, row, 0, stream, seed)[0]


def neg_log1p_neg(v: torch.Tensor) -> torch.Tensor:
    """-log1p(-v) in float32, written with ``log`` only (Goldberg's trick).

    Triton's interpreter has no libdevice ``log1p``; this formula is the one every backend uses,
    accurate to a few ulp for v in (0, 1): u = 1 - v; E = v if u == 1 else v * (log(u) / (u - 1)).
    """
    u = 1.0 - v
    denom = torch.where(u == 1.0, torch.full_like(u, -1.0), u - 1.0)
    return torch.where(u == 1.0, v, v * (torch.log(u) / denom))


def gumbel_from_uint32(x: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise (float32) from uint32 draws, without quantising the upper tail.

    v = (float32(x) + 1) * 2**-32 in (0, 1) (clamped below 1); E = -log1p(-v) ~ Exp(1);
    g = -log(E). Small x, the draws that matter for the top-k, map to small v exactly, so the
    largest Gumbel values keep their resolution (up to GUMBEL_MAX = -log(2**-32)).
    """
    v = (x.to(torch.float32) + 1.0) * _TWO_POW_MINUS_32
    v = torch.clamp(v, max=_ONE_MINUS_ULP)
    return -torch.log(neg_log1p_neg(v))


def gumbel_noise(seed: int, row: torch.Tensor, entity: torch.Tensor) -> torch.Tensor:
    """G(seed, row, entity): float32 standard Gumbel noise, broadcast over row and entity."""
    return gumbel_from_uint32(random_uint32(seed, row, entity, STREAM_GUMBEL))


def uniform_below(seed: int, row: torch.Tensor, slot: torch.Tensor, draw: int | torch.Tensor, bound: int | torch.Tensor,
                  stream: int) -> torch.Tensor:
    """Uniform integers in [0, bound) at counter (slot, row, draw, stream), int64.

    ``draw``: an int, or an int64 tensor of the shape of ``slot`` and ``row`` broadcast together.
    ``bound``: an int, or an int64 tensor broadcasting against the draws (one bound per draw; the
    same value gives the same integer either way). Uses two output words (53 random bits), so the
    bias is ~bound * 2**-53: negligible.
    """
    x0, x1, _, _ = philox4x32(slot, row, draw, stream, seed)
    u53 = (x0 >> 5) * (1 << 26) + (x1 >> 6)
    if isinstance(bound, torch.Tensor):  # scale in float64 (a power-of-two product: exact, as below)
        value = torch.floor(u53.to(torch.float64) * (bound.to(torch.float64) * 2.0**-53)).to(torch.int64)
        return torch.minimum(value, bound.to(torch.int64) - 1)
    value = torch.floor(u53.to(torch.float64) * (2.0**-53 * bound)).to(torch.int64)
    return torch.clamp(value, max=bound - 1)  # float rounding can reach `bound` at u53 ~ 2**53


def mix_seed(seed: int, salt: int) -> int:
    """A new seed in [0, 2**63) from (seed, salt) by SplitMix64; used for per-step seeds."""
    z = (seed + (salt + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & (SEED_BOUND - 1)


def draw_seed() -> int:
    """A seed from torch's global CPU generator, so ``torch.manual_seed`` makes runs repeatable."""
    return int(torch.randint(0, SEED_BOUND - 1, (1,), dtype=torch.int64).item())

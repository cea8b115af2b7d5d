"""The float-tie rule every fused backend is held to against the reference (docs/semantics.md,
"Selection": float ties).

A backend's (B, k) result must equal ``reference_top_k`` except where float rounding can decide:
the integer parts (Philox words, exclusion, tie order by id) are exact, P is summed in the same
order, but ``log`` may differ by an ulp between torch, numpy (Triton's interpreter), glibc and
libdevice, and which of them differ, and how often, depends on the CPU (SIMD paths) and the
library versions. So, per row that differs: the same slots are -1, the ids are distinct
candidates (finite reference key), and at every position the reference keys of the two ids agree
within the rounding of the terms that form them: only near-equal keys may swap, in order or at
the cut. The tolerance of an entity's key ``log P + t G`` is

    KEY_RTOL * (|log P| + t |G|) + t * G_ATOL        (deterministic mode, key = P: KEY_RTOL * P)

relative to the magnitudes of its terms, not of the key (a key near 0 can be the sum of two large
terms), and not floored at 1 (keys of 1e-3..1e-6 would get an absolute 1e-5 and could swap in a
wrong order). G_ATOL: G = -log(E) turns an ulp-level *relative* error of E (log, division,
multiplication of the mapping) into an *absolute* error of a few 1e-8 whatever |G| is
(1e-6 leaves a margin for the libm at hand).

How MANY rows differ is not a property of the code but of the libm at hand, so a test bounds it
(``max_rows``) only where no log is taken: deterministic mode (temperature_gumbel = 0) ranks by P
itself, summed in float32 in the same order everywhere, and must be exact (``max_rows=0``).
"""

import torch

from kmas_kernels.core.philox import gumbel_noise
from kmas_kernels.core.reference import candidate_keys, candidate_probability, reference_top_k

KEY_RTOL = 1e-5
G_ATOL = 1e-6


def key_tolerance(problem) -> torch.Tensor:
    """(B, N) float64: how far float rounding can move each entity's key (see the module doc)."""
    p = candidate_probability(problem).double()
    t = float(problem.temperature_gumbel)
    if t == 0:
        return KEY_RTOL * p.abs()
    rows = torch.arange(problem.batch_size, device=p.device)[:, None]
    entities = torch.arange(p.shape[1], device=p.device)[None, :]
    g = gumbel_noise(problem.seed, rows, entities).double()
    log_p = torch.log(torch.where(p > 0, p, torch.ones_like(p)))
    return KEY_RTOL * (log_p.abs() + t * g.abs()) + t * G_ATOL


def assert_matches_reference(problem, got: torch.Tensor, max_rows: int | None = None) -> int:
    """Assert ``got`` equals the reference up to float ties; return how many rows differ."""
    ref = reference_top_k(problem)
    assert got.shape == ref.shape and got.dtype == torch.int64
    got = got.to(ref.device)
    if torch.equal(got, ref):
        return 0
    keys = candidate_keys(problem).double()
    tolerance = key_tolerance(problem)
    differing = 0
    for b in range(got.shape[0]):
        o, r = got[b], ref[b]
        if torch.equal(o, r):
            continue
        assert torch.equal(o < 0, r < 0), f"row {b}: support differs\n{o}\n{r}"
        valid = o >= 0
        ids = o[valid]
        assert ids.unique().numel() == ids.numel(), f"row {b}: duplicate ids {o}"
        ko, kr = keys[b, ids], keys[b, r[valid]]
        assert torch.isfinite(ko).all(), f"row {b}: returned an excluded or P = 0 entity"
        # the two keys agree within the sum of their tolerances (either may be the one rounded)
        allowed = tolerance[b, ids] + tolerance[b, r[valid]]
        assert ((ko - kr).abs() <= allowed).all(), f"row {b}: keys differ beyond float ties\n{o}\n{r}\n{ko}\n{kr}\n{allowed}"
        differing += 1
    if max_rows is not None:
        assert differing <= max_rows, f"{differing} of {got.shape[0]} rows differ (near-ties, but too many)"
    return differing

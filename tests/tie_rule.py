"""The float-tie rule every fused backend is held to against the reference (docs/semantics.md,
"Selection": float ties).

A backend's (B, k) result must equal ``reference_top_k`` except where float rounding can decide:
the integer parts (Philox words, exclusion, tie order by id) are exact, P is summed in the same
order, but ``log`` may differ by an ulp between torch, numpy (Triton's interpreter), glibc and
libdevice, and which of them differ, and how often, depends on the CPU (SIMD paths) and the
library versions. So, per row that differs: the same slots are -1, the ids are distinct
candidates (finite reference key), and at every position the reference keys of the two ids agree
within KEY_RTOL relative to the row's k-th key (|key| floored at 1): only near-equal keys may
swap, in order or at the cut.

How MANY rows differ is not a property of the code but of the libm at hand, so a test bounds it
(``max_rows``) only where no log is taken: deterministic mode (temperature_gumbel = 0) ranks by P
itself, summed in float32 in the same order everywhere, and must be exact (``max_rows=0``).
"""

import torch

from kmas_kernels.core.reference import candidate_keys, reference_top_k

KEY_RTOL = 1e-5


def assert_matches_reference(problem, got: torch.Tensor, max_rows: int | None = None) -> int:
    """Assert ``got`` equals the reference up to float ties; return how many rows differ."""
    ref = reference_top_k(problem)
    assert got.shape == ref.shape and got.dtype == torch.int64
    got = got.to(ref.device)
    if torch.equal(got, ref):
        return 0
    keys = candidate_keys(problem)
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
        kth = kr[-1].abs().clamp_min(1.0)
        assert ((ko - kr).abs() <= KEY_RTOL * kth).all(), f"row {b}: keys differ beyond float ties\n{o}\n{r}\n{ko}\n{kr}"
        differing += 1
    if max_rows is not None:
        assert differing <= max_rows, f"{differing} of {got.shape[0]} rows differ (near-ties, but too many)"
    return differing

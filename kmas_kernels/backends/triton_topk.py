"""The Triton backend: SPEC §2 fused into one kernel, no B x N tensor.

One program handles one batch row ``b`` and a contiguous range of entities (``SPLITS`` programs
per row on CUDA, one under the interpreter). It walks its range in tiles of ``BLOCK_N`` entities
and, per tile, computes exactly what ``core.reference`` computes per (row, entity):

    P[b, e]   = sum_{r in ent_rels[ent_ptr[e]:ent_ptr[e+1]]} scaled[b, r]      SPEC §2.2
                (fp32, ascending relation order; scaled = problem.scaled_weights())
    key[b, e] = log P[b, e] + temperature_gumbel * G(seed, b, e)              SPEC §2.4
                (P itself when temperature_gumbel == 0: same order, no log rounding)
                G from x = tl.randint(seed, (b << 32) | e), i.e. Philox-4x32-10 word 0 at counter
                {e, b, 0, 0}, mapped as core.philox.gumbel_from_uint32
    excluded  = e == positive[b], or e in known_answers[known_start[b]:known_end[b]]
                (binary search, sorted slice; empty when not strict)              SPEC §2.3
    not a candidate where P == 0 (or excluded)

and keeps the row's best ``K_PAD`` (k rounded up to a power of two) keys in a sorted register
buffer: streaming top-k. Keys are packed into one int64, order-preserving fp32 bits in the high
32 bits and ``2**32 - 1 - e`` in the low 32, so that the int64 order is "larger key first, then
smaller id first", exactly the reference's stable descending sort. A tile is merged with
``tl.topk`` (its K_PAD best, descending) + elementwise max with the ascending buffer (a bitonic
sequence holding the K_PAD best of both) + ``tl.bitonic_merge``.

RNG skipping: once a row has K_PAD keys, its K_PAD-th key (shared between the row's programs with
``atomic_max``) is a lower bound on the row's k-th key; a candidate whose largest possible key
``log P + temperature_gumbel * GUMBEL_MAX`` is below it cannot be selected, so neither its
exclusion test nor its Philox draw is computed (whole tiles skip both when no candidate survives).
This changes no result: skipped candidates have keys strictly below K_PAD (>= k) other keys.

Extra memory: a (B, SPLITS, K_PAD) int64 key buffer and a (B,) int64 threshold; SPLITS is bounded
by a constant (64), so it is O(B * k), independent of N. The host merges the SPLITS buffers of a
row with ``torch.topk`` on the packed keys (exact).

Equality with the reference (the float-tie rule): the output equals ``reference_top_k`` except
where two keys are within float rounding of each other. P is summed in float32 from 0 in
ascending relation order, as the reference does on CPU tensors (bit-identical P there; the
reference on CUDA tensors sums with atomics in no fixed order), but ``log`` may differ by an ulp
between torch, numpy (the interpreter) and libdevice (CUDA). Hence a difference from the reference
is accepted only at positions where the reference keys (``core.reference.candidate_keys``) of the
two entities agree within ~1e-5 relative to the row's k-th key (tests/test_triton.py); the tests
check such rows are rare. Integer parts (Philox words, exclusion, tie order) are exact.

Division in the Gumbel mapping is ``tl.math.div_rn`` (IEEE, as torch), so on the GPU only ``log``
(libdevice) can differ from torch by an ulp. FP fusion is pinned off (``enable_fp_fusion=False``
at launch), so ``log P + t * g`` is never contracted to an FMA on the GPU and results do not
change with Triton's default (which flips in Triton 3.10). The interpreter ignores the option
(numpy does not fuse).

Works on Triton 3.6 .. 3.9 (tl.topk, tl.bitonic_merge, tl.randint, atomic_max on int64 exist in
both); CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import os

import torch

from ..core.philox import GUMBEL_MAX
from ..core.problem import MiningProblem

try:  # triton is optional: the backend reports itself unavailable without it
    import triton
    import triton.language as tl

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    _IMPORT_ERROR = f"triton is not importable ({type(exc).__name__}: {exc})"

# Upper bound on the noise used for skipping: GUMBEL_MAX plus a margin for an ulp of log.
_GUMBEL_BOUND = GUMBEL_MAX + 1e-3
# Packed key of an empty buffer slot: below every real key (int64 min).
_EMPTY_KEY = -(1 << 63)
_MAX_SPLITS = 64
_INTERPRET_BLOCK_N = 128


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available(device: torch.device | str | None = None) -> str | None:
    """None when this backend can run here, else the reason it cannot.

    Usable when triton imports and either CUDA is available (GPU tensors) or
    ``TRITON_INTERPRET=1`` is set (CPU tensors, through Triton's interpreter). With ``device``,
    answer for tensors on that device only.
    """
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda":
            return None if torch.cuda.is_available() and not _interpreting() else "CUDA tensors need a GPU and TRITON_INTERPRET unset"
        if device.type == "cpu":
            return None if _interpreting() else "CPU tensors need TRITON_INTERPRET=1 (Triton's interpreter)"
        return f"Triton does not run on {device.type} tensors"
    if _interpreting() or torch.cuda.is_available():
        return None
    return "no CUDA GPU, and TRITON_INTERPRET=1 is not set for CPU tensors"


if triton is not None:

    @triton.jit
    def _ordered_int32(x):
        """fp32 -> int32 with the same order (IEEE bits, negatives mirrored)."""
        bits = x.to(tl.int32, bitcast=True)
        return bits ^ ((bits >> 31) & 0x7FFFFFFF)

    @triton.jit
    def _hard_negative_topk_kernel(
        scaled_ptr,  # (B, R) fp32: w[b, r] / |Tails(r)|
        ent_ptr_ptr,  # (N + 1,) int64
        ent_rels_ptr,  # (T,) int32
        known_ptr,  # (E,) int32, known answers, sorted within each (q, r) slice
        known_start_ptr,  # (B,) int64
        known_end_ptr,  # (B,) int64
        positive_ptr,  # (B,) int64, -1 = none
        thr_ptr,  # (B,) int64: best known lower bound on each row's K_PAD-th packed key
        out_ptr,  # (B, SPLITS, K_PAD) int64: each program's buffer, ascending
        num_entities,
        num_relations,
        chunk,  # entities per split
        seed,
        temperature_gumbel,
        gumbel_bound,  # temperature_gumbel * (GUMBEL_MAX + margin), host-computed in fp32
        USE_NOISE: tl.constexpr,
        K_PAD: tl.constexpr,
        BLOCK_N: tl.constexpr,  # >= K_PAD, power of two
    ):
        row = tl.program_id(0)
        split = tl.program_id(1)
        num_splits = tl.num_programs(1)
        row64 = row.to(tl.int64)

        # per-row data (SPEC §2.3): the positive and the known-answer slice
        positive = tl.load(positive_ptr + row)
        ks = tl.load(known_start_ptr + row)
        ke = tl.load(known_end_ptr + row)
        # binary search steps for the slice: bit_length(ke - ks)
        remaining = ke - ks
        search_steps = 0
        while remaining > 0:
            remaining = remaining >> 1
            search_steps += 1

        e_lo = split.to(tl.int64) * chunk
        e_hi = tl.minimum(e_lo + chunk, num_entities)
        offs = tl.arange(0, BLOCK_N)
        # sorted ascending: buf[0] is the worst kept key, so tl.min(buf) is the K_PAD-th best
        buf = tl.full((K_PAD,), -9223372036854775808, tl.int64)
        kth = tl.min(buf, axis=0)

        # `while`, not `for ... range(tensor)`: Triton 3.6's interpreter cannot take a tensor
        # loop bound under numpy >= 2.4 (it calls int() on a 1-element array)
        tile = e_lo
        while tile < e_hi:
            ent = offs.to(tl.int64) + tile  # int64 entity ids
            in_range = ent < e_hi
            # ---- SPEC §2.2: P[b, e] = sum over e's relations of scaled[b, r], ascending r, fp32
            p_begin = tl.load(ent_ptr_ptr + ent, mask=in_range, other=0)
            p_end = tl.load(ent_ptr_ptr + ent + 1, mask=in_range, other=0)
            degree = p_end - p_begin
            p = tl.zeros((BLOCK_N,), tl.float32)
            max_degree = tl.max(degree, axis=0)
            j = 0
            while j < max_degree:
                has = j < degree
                rel = tl.load(ent_rels_ptr + p_begin + j, mask=has, other=0)
                w = tl.load(scaled_ptr + row64 * num_relations + rel, mask=has, other=0.0)
                p += w  # adding 0.0 where `has` is false leaves p unchanged
                j += 1
            log_p = tl.log(tl.where(p > 0.0, p, 1.0))  # only read where P > 0
            # ---- candidates: P > 0, not the positive, and able to beat the current K_PAD-th key
            thr = tl.maximum(kth, tl.load(thr_ptr + row))  # shared with the row's other programs
            thr_hi = (thr >> 32).to(tl.int32)
            if USE_NOISE:
                upper = log_p + gumbel_bound  # >= log P + t * G for every G the stream can give
            else:
                upper = p  # deterministic mode ranks by P itself (no log rounding)
            need = in_range & (p > 0.0) & (ent != positive) & (_ordered_int32(upper) >= thr_hi)
            if tl.max(need.to(tl.int32), axis=0) > 0:
                # ---- SPEC §2.3 (strict): e in known_answers[ks:ke]? lower_bound on the sorted slice
                lo = tl.zeros((BLOCK_N,), tl.int64) + ks
                hi = tl.zeros((BLOCK_N,), tl.int64) + ke
                step = 0
                while step < search_steps:
                    step += 1
                    active = need & (lo < hi)
                    mid = (lo + hi) >> 1
                    val = tl.load(known_ptr + mid, mask=active, other=0).to(tl.int64)
                    go_right = val < ent
                    lo = tl.where(active & go_right, mid + 1, lo)
                    hi = tl.where(active & (~go_right), mid, hi)
                hit_ok = need & (lo < ke)
                known = hit_ok & (tl.load(known_ptr + lo, mask=hit_ok, other=-1).to(tl.int64) == ent)
                need = need & (~known)
                # ---- SPEC §2.4: key = log P + t * G(seed, b, e)
                if USE_NOISE:
                    x = tl.randint(seed, (row64 << 32) | ent)  # uint32, counter {e, b, 0, 0}
                    xf = (x.to(tl.int64) & 0xFFFFFFFF).to(tl.float32)  # as unsigned, round to nearest
                    v = (xf + 1.0) * 2.3283064365386963e-10  # * 2^-32
                    v = tl.minimum(v, 0.99999994039535522)  # 1 - 2^-24
                    u = 1.0 - v
                    # -log1p(-v) with log only (core.philox.neg_log1p_neg); div_rn: IEEE
                    # division (plain `/` is the 2-ulp div.full.f32 on the GPU)
                    denom = tl.where(u == 1.0, -1.0, u - 1.0)
                    expo = tl.where(u == 1.0, v, v * tl.math.div_rn(tl.log(u), denom))
                    g = -tl.log(expo)
                    key = log_p + temperature_gumbel * g
                else:
                    key = p
                # ---- pack (key, id): larger key first, then smaller id
                packed = (_ordered_int32(key).to(tl.int64) << 32) | (4294967295 - ent)
                packed = tl.where(need, packed, -9223372036854775808)
                if tl.max(packed, axis=0) > thr:
                    # ---- streaming top-k: K_PAD best of the tile (descending) vs buffer (ascending)
                    best = tl.topk(packed, K_PAD)
                    merged = tl.maximum(buf, best)  # bitonic, holds the K_PAD best of both
                    buf = tl.bitonic_merge(merged, descending=False)
                    kth = tl.min(buf, axis=0)
                    tl.atomic_max(thr_ptr + row, kth)
            tile += BLOCK_N

        out = out_ptr + (row64 * num_splits + split) * K_PAD + tl.arange(0, K_PAD)
        tl.store(out, buf)


_AUTOTUNED: dict[int, object] = {}


def _autotuned_kernel(k_pad: int):
    """The CUDA kernel autotuned over tile size and warps, with BLOCK_N >= K_PAD."""
    kernel = _AUTOTUNED.get(k_pad)
    if kernel is None:
        configs, seen = [], set()
        for block_n in (128, 256, 512, 1024):
            block_n = max(block_n, k_pad)
            for warps in (4, 8):
                if (block_n, warps) not in seen:
                    seen.add((block_n, warps))
                    configs.append(triton.Config({"BLOCK_N": block_n}, num_warps=warps))
        # thr_ptr is updated in place: restore it between benchmark runs
        kernel = triton.autotune(configs=configs, key=["num_entities", "K_PAD", "USE_NOISE"], restore_value=["thr_ptr"])(
            _hard_negative_topk_kernel
        )
        _AUTOTUNED[k_pad] = kernel
    return kernel


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def triton_top_k(problem: MiningProblem) -> torch.Tensor:
    """(B, k) int64 ids of the largest keys per row, descending, -1 past the row's support."""
    device = problem.index.device
    reason = triton_available(device)
    if reason is not None:
        raise ValueError(f"backend='triton' is not available for {device} tensors: {reason}")
    index = problem.index
    batch, n, r = problem.batch_size, index.num_entities, index.num_relations
    k = problem.num_negatives
    k_pad = max(2, _next_pow2(k))  # power of two; >= 2 because tl.bitonic_merge needs a pair
    scaled = problem.scaled_weights().to(torch.float32).contiguous()  # (B, R): w[b, r] / |Tails(r)|
    t = float(problem.temperature_gumbel)
    use_noise = t > 0
    # t * (GUMBEL_MAX + margin) in fp32, rounded up so it bounds t * G after fp32 rounding
    gumbel_bound = float(torch.tensor(t, dtype=torch.float32) * torch.tensor(_GUMBEL_BOUND, dtype=torch.float32)) * (1 + 1e-6)

    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        splits = max(1, min(_MAX_SPLITS, -(-2 * sms // batch), -(-n // max(1024, k_pad))))
    else:
        splits = 1
    chunk = -(-n // splits)
    splits = -(-n // chunk)

    thr = torch.full((batch,), _EMPTY_KEY, dtype=torch.int64, device=device)
    keys = torch.empty((batch, splits, k_pad), dtype=torch.int64, device=device)
    args = (
        scaled,
        index.ent_ptr.contiguous(),
        index.ent_rels.contiguous(),
        index.known_answers.contiguous(),
        problem.known_start.to(torch.int64).contiguous(),
        problem.known_end.to(torch.int64).contiguous(),
        problem.positive.to(torch.int64).contiguous(),
        thr,
        keys,
        n,
        r,
        chunk,
        int(problem.seed),
        t,
        gumbel_bound,
    )
    grid = (batch, splits)
    if device.type == "cuda":
        with torch.cuda.device(device):
            _autotuned_kernel(k_pad)[grid](*args, USE_NOISE=use_noise, K_PAD=k_pad, enable_fp_fusion=False)
    else:
        _hard_negative_topk_kernel[grid](
            *args, USE_NOISE=use_noise, K_PAD=k_pad, BLOCK_N=max(_INTERPRET_BLOCK_N, k_pad), enable_fp_fusion=False
        )

    # merge the row's buffers: the k largest packed keys, descending (exact; ids are unique)
    top = torch.topk(keys.view(batch, splits * k_pad), k, dim=1, largest=True, sorted=True).values
    ids = 4294967295 - (top & 0xFFFFFFFF)
    return torch.where(top == _EMPTY_KEY, torch.full_like(ids, -1), ids)

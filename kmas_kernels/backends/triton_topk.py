"""The Triton backend: docs/semantics.md §2–§5 fused into one kernel, no B x N tensor.

One program handles one batch row ``b`` and a contiguous range of entities (``SPLITS`` programs
per row on CUDA, one under the interpreter unless a test overrides it). It walks its range in tiles of ``BLOCK_N`` entities
and, per tile, computes exactly what ``core.reference`` computes per (row, entity):

    P[b, e]   = sum_{r in ent_rels[ent_ptr[e]:ent_ptr[e+1]]} scaled[b, r]      docs/semantics.md §3
                (fp32, ascending relation order; scaled = problem.scaled_weights())
    key[b, e] = log P[b, e] + temperature_gumbel * G(seed, b, e)              docs/semantics.md §5
                (P itself when temperature_gumbel == 0: same order, no log rounding)
                G from x = tl.randint(seed, (b << 32) | e), i.e. Philox-4x32-10 word 0 at counter
                {e, b, 0, 0}, mapped as core.philox.gumbel_from_uint32
    excluded  = e == positive[b], or e in known_answers[known_start[b]:known_end[b]]
                (binary search, sorted slice; empty when not strict)              docs/semantics.md §3
    not a candidate where P == 0 (or excluded)

and keeps the row's best ``K_PAD`` (k rounded up to a power of two) keys in a sorted register
buffer: streaming top-k. Keys are packed into one int64, order-preserving fp32 bits in the high
32 bits and ``2**32 - 1 - e`` in the low 32, so that the int64 order is "larger key first, then
smaller id first", exactly the reference's stable descending sort. A tile is merged with
``tl.topk`` (its K_PAD best, descending) + elementwise max with the ascending buffer (a bitonic
sequence holding the K_PAD best of both) + ``tl.bitonic_merge``.

Skipping (changes no result: a skipped candidate's key is below K_PAD >= k other keys): once a
row has K_PAD keys, its K_PAD-th key (shared between the row's programs with ``atomic_max``) is a
lower bound T on the row's k-th key. Per tile, cheapest first: a candidate whose largest possible
key ``log P + temperature_gumbel * GUMBEL_MAX`` is below T gets no Philox draw (whole tiles skip
the RNG); at temperature_gumbel == 1 the log-free draw test (``DRAW_TEST``): the key
``log P - log E`` beats T only if E < P e^-T, and E = -log1p(-v) >= v for the raw draw v, so a
draw v > P e^-T (1 + 1e-3) takes no log (tiles where no draw passes skip both logs); the
known-answer binary search runs only for keys that beat T; the merge only when one survives.

Launch: one fixed (BLOCK_N, num_warps) per K_PAD (``LAUNCH_CONFIGS``, no autotuning inside
training), k <= ``MAX_K`` (1024). Private overrides ``_splits`` / ``_block_n`` of
``triton_top_k`` let tests run several programs per row under the interpreter.

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

import torch

from ..core.philox import GUMBEL_MAX
from ..core.problem import MiningProblem
from .registry import interpreting as _interpreting  # noqa: F401
from .registry import triton_available  # the one Triton probe, shared with graph_ops

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
# Default programs per SM on CUDA (splits = ceil(_BLOCKS_PER_SM * SMs / B)); gpu_check sweeps the
# splits at N = 10^7 to measure whether more fill the GPU better.
_BLOCKS_PER_SM = 2
_INTERPRET_BLOCK_N = 128
# The kernel's int arguments whose values change between launches (see the kernel).
_VARYING_INTS = ("num_entities", "num_relations", "chunk", "seed")


if triton is not None:

    @triton.jit
    def _ordered_int32(x):
        """fp32 -> int32 with the same order (IEEE bits, negatives mirrored)."""
        bits = x.to(tl.int32, bitcast=True)
        return bits ^ ((bits >> 31) & 0x7FFFFFFF)

    @triton.jit
    def _draw_scale(thr, thr_hi):
        """e^-T (1 + 1e-3) for the threshold's key value T; +inf (no test) without a threshold or
        when T >= 80 (e^-T would approach the denormals, which the GPU flushes to zero)."""
        value = (thr_hi ^ ((thr_hi >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
        usable = (thr != -9223372036854775808) & (value < 80.0)
        return tl.where(usable, tl.exp(-tl.where(usable, value, 0.0)) * 1.001, float("inf"))

    # Ints that vary between calls (sizes, the per-step seed) are typed int64 and not specialised:
    # Triton would otherwise compile a new variant when one equals 1, is divisible by 16 or fits
    # in int32, i.e. at random training steps (1 seed in 16 is divisible by 16). The string
    # annotations resolve under `from __future__ import annotations` (Triton 3.6 and newer).
    @triton.jit(do_not_specialize=_VARYING_INTS)
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
        num_entities: tl.int64,
        num_relations: tl.int64,
        chunk: tl.int64,  # entities per split
        seed: tl.int64,
        temperature_gumbel,
        gumbel_bound,  # temperature_gumbel * (GUMBEL_MAX + margin), host-computed in fp32
        USE_NOISE: tl.constexpr,
        DRAW_TEST: tl.constexpr,  # temperature_gumbel == 1: the log-free draw test applies
        K_PAD: tl.constexpr,
        BLOCK_N: tl.constexpr,  # >= K_PAD, power of two
    ):
        row = tl.program_id(0)
        split = tl.program_id(1)
        num_splits = tl.num_programs(1)
        row64 = row.to(tl.int64)

        # per-row data (docs/semantics.md §3): the positive and the known-answer slice
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
            # ---- docs/semantics.md §3: P[b, e] = sum over e's relations of scaled[b, r], ascending r, fp32
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
                # ---- docs/semantics.md §5: key = log P + t * G(seed, b, e)
                if USE_NOISE:
                    x = tl.randint(seed, (row64 << 32) | ent)  # uint32, counter {e, b, 0, 0}
                    xf = (x.to(tl.int64) & 0xFFFFFFFF).to(tl.float32)  # as unsigned, round to nearest
                    v = (xf + 1.0) * 2.3283064365386963e-10  # * 2^-32
                    if DRAW_TEST:
                        # log-free draw test (t = 1): log P - log E beats a threshold value T only
                        # if E < P e^-T, and E = -log1p(-v) >= v: a draw v > P e^-T (with margin)
                        # cannot enter, so its two logs are not taken (kmas_core.h: draw_scale)
                        need = need & ~(v > tl.where(need, p, 1.0) * _draw_scale(thr, thr_hi))  # no 0 * inf
                    key = tl.zeros((BLOCK_N,), tl.float32)
                    if tl.max(need.to(tl.int32), axis=0) > 0:
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
                    # ---- docs/semantics.md §3 (strict), only for keys that would enter: e in
                    # known_answers[ks:ke]? lower_bound on the sorted slice
                    enter = packed > thr
                    lo = tl.zeros((BLOCK_N,), tl.int64) + ks
                    hi = tl.zeros((BLOCK_N,), tl.int64) + ke
                    step = 0
                    while step < search_steps:
                        step += 1
                        active = enter & (lo < hi)
                        mid = (lo + hi) >> 1
                        val = tl.load(known_ptr + mid, mask=active, other=0).to(tl.int64)
                        go_right = val < ent
                        lo = tl.where(active & go_right, mid + 1, lo)
                        hi = tl.where(active & (~go_right), mid, hi)
                    hit_ok = enter & (lo < ke)
                    known = hit_ok & (tl.load(known_ptr + lo, mask=hit_ok, other=-1).to(tl.int64) == ent)
                    packed = tl.where(known, -9223372036854775808, packed)
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


# Fixed launch configurations per K_PAD on CUDA: (BLOCK_N, num_warps). No autotuning: a training
# run ramps k through many K_PAD values (schedule), and an autotune per K_PAD would sync, allocate
# an L2-flush buffer and time ~8 configs inside the training loop. These were chosen offline
# (benchmarks/triton_offline.py compiles each for sm_90a: no register spills) and are the only
# configs a GPU ever compiles; warm_up() compiles them ahead of time.
LAUNCH_CONFIGS: dict[int, tuple[int, int]] = {
    2: (256, 4),
    4: (256, 8),  # (256, 4) spills 8 bytes on sm_90a with Triton 3.6 (benchmarks/triton_offline.py)
    8: (256, 4),
    16: (256, 4),
    32: (256, 4),
    64: (256, 8),  # (256, 4) spills 8 bytes on sm_90a with Triton 3.9
    128: (256, 4),
    256: (512, 8),
    512: (512, 8),
    1024: (1024, 8),
}
# The largest k the Triton kernel takes (K_PAD = 1024; larger buffers spill registers and take
# minutes to compile). Larger k goes to the CUDA extension ("auto") or is rejected.
MAX_K = max(LAUNCH_CONFIGS)


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def k_pad_of(k: int) -> int:
    """The register buffer size for k: a power of two >= 2 (tl.bitonic_merge needs a pair)."""
    return max(2, _next_pow2(k))


def check_k(k: int) -> None:
    """ValueError when this backend cannot take k (see MAX_K)."""
    if k > MAX_K:
        raise ValueError(
            f"backend='triton' takes num_negatives <= {MAX_K}, got {k}: use backend='cuda' (the CUDA "
            "extension has no such limit) or backend='auto', which routes large k there"
        )


def _plan(problem: MiningProblem, device: torch.device, splits: int | None, block_n: int | None,
          sms: int | None = None) -> tuple[int, int, int, int]:
    """(splits, chunk, BLOCK_N, num_warps) of one launch; ``splits``/``block_n`` override.

    ``sms`` (multiprocessors) plans as for a GPU with that many SMs whatever ``device`` is (offline
    tools bind CUDA launches on CPU tensors); None: the device's own count on CUDA, else 1 split.
    """
    n, batch, k_pad = problem.index.num_entities, problem.batch_size, k_pad_of(problem.num_negatives)
    if sms is None and device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
    if sms is not None:
        default_block, warps = LAUNCH_CONFIGS[k_pad]
    else:
        default_block, warps = max(_INTERPRET_BLOCK_N, k_pad), 4
    if block_n is None:
        block_n = default_block
    elif not (isinstance(block_n, int) and block_n >= k_pad and block_n & (block_n - 1) == 0):
        raise ValueError(f"_block_n must be a power of two >= K_PAD = {k_pad}, got {block_n!r}")
    if splits is None:
        if sms is not None:
            splits = max(1, min(_MAX_SPLITS, -(-_BLOCKS_PER_SM * sms // max(batch, 1)), -(-n // max(1024, k_pad))))
        else:
            splits = 1
    elif not (isinstance(splits, int) and 1 <= splits <= _MAX_SPLITS):
        raise ValueError(f"_splits must be an int in [1, {_MAX_SPLITS}], got {splits!r}")
    chunk = -(-n // splits)
    return -(-n // chunk), chunk, block_n, warps


def launch_arguments(problem: MiningProblem, *, splits: int | None = None, block_n: int | None = None,
                     sms: int | None = None) -> tuple[tuple[int, int], tuple, dict]:
    """(grid, args, meta) of the kernel launch for ``problem``: exactly what :func:`triton_top_k`
    passes, so offline tools (tests/test_triton_specialization.py, benchmarks/triton_offline.py)
    can bind the same arguments to Triton's specialisation machinery. ``sms``: see :func:`_plan`.

    args[7] is the (B,) threshold and args[8] the (B, SPLITS, K_PAD) key buffer, both fresh.
    """
    device = problem.index.device
    index = problem.index
    batch, n, r = problem.batch_size, index.num_entities, index.num_relations
    k_pad = k_pad_of(problem.num_negatives)
    scaled = problem.scaled_weights().to(torch.float32).contiguous()  # (B, R): w[b, r] / |Tails(r)|
    t = float(problem.temperature_gumbel)
    # t * (GUMBEL_MAX + margin) in fp32, rounded up so it bounds t * G after fp32 rounding
    gumbel_bound = float(torch.tensor(t, dtype=torch.float32) * torch.tensor(_GUMBEL_BOUND, dtype=torch.float32)) * (1 + 1e-6)
    splits, chunk, block_n, warps = _plan(problem, device, splits, block_n, sms)
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
    meta = dict(USE_NOISE=t > 0, DRAW_TEST=t == 1.0, K_PAD=k_pad, BLOCK_N=block_n, num_warps=warps, enable_fp_fusion=False)
    return (batch, splits), args, meta


def warm_up(device: torch.device | str = "cuda", k_values=None, temperatures_gumbel=(1.0,)) -> None:
    """Compile, on ``device``, the kernel variants a training run launches, before it starts.

    One launch per K_PAD of ``k_values`` (default: every K_PAD) and noise mode of
    ``temperatures_gumbel`` (default 1.0, the training default; 0 and other values are other
    variants). The seed is a per-step seed (``mix_seed``) and the sizes are typed int64 in the
    kernel, so these are the very variants every later step reuses, whatever its seed, B or N
    (tests/test_triton_specialization.py). Each compiles once per process; Triton's cache keeps it
    across processes.
    """
    for problem in warm_up_problems(device, k_values, temperatures_gumbel):
        triton_top_k(problem)


def warm_up_problems(device: torch.device | str = "cuda", k_values=None, temperatures_gumbel=(1.0,)) -> list[MiningProblem]:
    """The toy problems :func:`warm_up` launches (one per K_PAD and noise mode): one row on a
    (2 MAX_K + 2)-entity graph, a per-step seed ``mix_seed(0, 0)``."""
    from ..core.index import KGIndex
    from ..core.philox import mix_seed
    from ..core.problem import prepare_problem

    device = torch.device(device)
    index = KGIndex.from_triples(torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3]]), num_entities=2 * MAX_K + 2, num_relations=1).to(device)
    pads = sorted({k_pad_of(k) for k in (k_values if k_values is not None else LAUNCH_CONFIGS)})
    return [prepare_problem(index, [0], [0], num_negatives=min(k_pad, MAX_K), seed=mix_seed(0, 0), temperature_gumbel=tg)
            for k_pad in pads for tg in temperatures_gumbel]


def triton_top_k(problem: MiningProblem, *, _splits: int | None = None, _block_n: int | None = None) -> torch.Tensor:
    """(B, k) int64 ids of the largest keys per row, descending, -1 past the row's support.

    ``_splits`` (programs per row, 1..64) and ``_block_n`` (entities per tile, a power of two
    >= K_PAD) are private overrides for tests: they change the work split, never the result.
    """
    device = problem.index.device
    k = problem.num_negatives
    check_k(k)
    reason = triton_available(device)
    if reason is not None:
        raise ValueError(f"backend='triton' is not available for {device} tensors: {reason}")
    grid, args, meta = launch_arguments(problem, splits=_splits, block_n=_block_n)
    keys = args[8]
    batch, splits = grid
    if batch:
        if device.type == "cuda":
            with torch.cuda.device(device):  # Triton launches on the current device
                _hard_negative_topk_kernel[grid](*args, **meta)
        else:
            _hard_negative_topk_kernel[grid](*args, **meta)

    # merge the row's buffers: the k largest packed keys, descending (exact; ids are unique)
    top = torch.topk(keys.view(batch, splits * meta["K_PAD"]), k, dim=1, largest=True, sorted=True).values
    ids = 4294967295 - (top & 0xFFFFFFFF)
    return torch.where(top == _EMPTY_KEY, torch.full_like(ids, -1), ids)

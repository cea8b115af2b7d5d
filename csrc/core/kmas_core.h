// kmas_kernels native core: everything a backend computes per (row, entity), written once as
// header-only __host__ __device__ code and compiled by g++ (CPU backend) and by nvcc (CUDA).
//
// Semantics (docs/semantics.md §3–§5, kmas_kernels/core/reference.py):
//   P_b(e)   = sum_{r in ent_rels[ent_ptr[e]:ent_ptr[e+1]]} scaled[b, r]      (fp32, ascending r)
//   key(b,e) = logf(P) + temperature_gumbel * G(seed, b, e)                    (fp32; no key if P == 0)
//              = P when temperature_gumbel == 0 (same order, no log rounding: exact everywhere)
//   G        = Gumbel from word 0 of Philox-4x32-10, key (seed lo, seed hi), counter {e, b, 0, 0}
//   excluded = positive[b] and known_answers[known_start[b]:known_end[b]] (sorted: binary search)
// Top-k keys are packed into one int64: order-preserving fp32 bits high, 2^32 - 1 - id low, so a
// plain signed comparison orders by key and breaks ties by the smaller id.
//
// Build with no fast-math and no FMA contraction (g++ -ffp-contract=off, nvcc --fmad=false), so
// the Gumbel mapping and the keys are the same float operations on every target.
#pragma once

#include <stdint.h>
#include <math.h>
#include <string.h>

#if defined(__CUDACC__)
#define KMAS_HD __host__ __device__ __forceinline__
#else
#define KMAS_HD inline
#endif

namespace kmas {

// ------------------------------------------------------------------ constants
constexpr uint32_t PHILOX_M0 = 0xD2511F53u;
constexpr uint32_t PHILOX_M1 = 0xCD9E8D57u;
constexpr uint32_t PHILOX_W0 = 0x9E3779B9u;
constexpr uint32_t PHILOX_W1 = 0xBB67AE85u;
constexpr int PHILOX_ROUNDS = 10;
// Strict upper bound of any Gumbel value the stream produces (-log(2^-32) = 22.1807...).
constexpr float GUMBEL_BOUND = 22.2f;
// Below every real packed key (a negative NaN pattern): "empty slot" / "no threshold yet".
constexpr int64_t EMPTY_KEY = (int64_t)(-9223372036854775807LL - 1);

// ------------------------------------------------------------------ bit casts
KMAS_HD int32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_int(f);
#else
    int32_t b;
    memcpy(&b, &f, sizeof(b));
    return b;
#endif
}

KMAS_HD float bits_float(int32_t b) {
#if defined(__CUDA_ARCH__)
    return __int_as_float(b);
#else
    float f;
    memcpy(&f, &b, sizeof(f));
    return f;
#endif
}

// ------------------------------------------------------------------ Philox-4x32-10
KMAS_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

// Random123 Philox-4x32-10 on counter c (in place) with key (k0, k1).
KMAS_HD void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int i = 0; i < PHILOX_ROUNDS; ++i) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo32(PHILOX_M0, c[0], &hi0);
        uint32_t lo1 = mulhilo32(PHILOX_M1, c[2], &hi1);
        uint32_t n0 = hi1 ^ c[1] ^ k0;
        uint32_t n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

// Word 0 of Philox at counter {entity, row, 0, 0}, key (seed & 0xFFFFFFFF, seed >> 32):
// kmas_kernels.core.philox.random_uint32(seed, row, entity), bit for bit.
KMAS_HD uint32_t random_uint32(uint64_t seed, uint32_t row, uint32_t entity) {
    uint32_t c[4] = {entity, row, 0u, 0u};
    philox4x32_10(c, (uint32_t)(seed & 0xFFFFFFFFull), (uint32_t)(seed >> 32));
    return c[0];
}

// Standard Gumbel from a uint32, exactly kmas_kernels.core.philox.gumbel_from_uint32:
// v = (x + 1) 2^-32 clamped below 1; E = -log1p(-v) via Goldberg's trick; g = -log(E).
KMAS_HD float gumbel_from_uint32(uint32_t x) {
    float v = ((float)x + 1.0f) * 2.3283064365386963e-10f;  // 2^-32, exact
    v = fminf(v, 0.99999994f);                               // 1 - 2^-24
    float u = 1.0f - v;
    float e = (u == 1.0f) ? v : v * (logf(u) / (u - 1.0f));
    return -logf(e);
}

// ------------------------------------------------------------------ packed keys
KMAS_HD int32_t float_order(float f) {
    int32_t b = float_bits(f);
    return b ^ ((b >> 31) & 0x7FFFFFFF);
}

KMAS_HD float order_float(int32_t o) { return bits_float(o ^ ((o >> 31) & 0x7FFFFFFF)); }

KMAS_HD int64_t pack_key(float key, int64_t id) {
    return (int64_t)(((uint64_t)(uint32_t)float_order(key) << 32) | (uint64_t)(0xFFFFFFFFu - (uint32_t)id));
}

KMAS_HD int64_t packed_id(int64_t packed) { return (int64_t)(0xFFFFFFFFu - (uint32_t)((uint64_t)packed & 0xFFFFFFFFull)); }

KMAS_HD float packed_value(int64_t packed) { return order_float((int32_t)(packed >> 32)); }

// ------------------------------------------------------------------ exclusion
// Whether e is the row's positive or in the sorted slice known[lo:hi].
KMAS_HD bool is_excluded(int64_t e, int64_t positive, const int32_t* known, int64_t lo, int64_t hi) {
    if (e == positive) return true;
    int64_t end = hi;
    while (lo < hi) {
        int64_t mid = lo + ((hi - lo) >> 1);
        if ((int64_t)known[mid] < e)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < end && (int64_t)known[lo] == e;
}

// ------------------------------------------------------------------ scoring
// Raw views of one MiningProblem (all arrays contiguous, on the device that reads them).
struct Problem {
    const int64_t* ent_ptr;      // (N + 1,)
    const int32_t* ent_rels;     // (T,)
    const int32_t* known;        // (E,) known_answers
    const float* scaled;         // (B, R) w[b, r] / |Tails(r)|
    const int64_t* positive;     // (B,) -1 = none
    const int64_t* known_start;  // (B,)
    const int64_t* known_end;    // (B,)
    int64_t batch, num_entities, num_relations, k;
    uint64_t seed;
    float temperature_gumbel;
};

// Per-row constants of the scoring loop.
struct Row {
    const float* scaled;
    int64_t positive, known_lo, known_hi;
    uint32_t row;
    float noise_bound;  // fl(temperature_gumbel * GUMBEL_BOUND): no key exceeds logf(P) + this
};

KMAS_HD Row make_row(const Problem& p, int64_t b) {
    Row r;
    r.scaled = p.scaled + b * p.num_relations;
    r.positive = p.positive[b];
    r.known_lo = p.known_start[b];
    r.known_hi = p.known_end[b];
    r.row = (uint32_t)b;
    r.noise_bound = p.temperature_gumbel * GUMBEL_BOUND;
    return r;
}

// P_b(e), accumulated in fp32 in ascending relation order.
KMAS_HD float entity_probability(const Problem& p, const Row& r, int64_t e) {
    float acc = 0.0f;
    const int64_t end = p.ent_ptr[e + 1];
    for (int64_t j = p.ent_ptr[e]; j < end; ++j) acc += r.scaled[p.ent_rels[j]];
    return acc;
}

// The Gumbel-top-k key of (row, e) from `base` = log P (P in deterministic mode); +0, never -0.
KMAS_HD float entity_key(const Problem& p, const Row& r, int64_t e, float base) {
    float key = base;
    if (p.temperature_gumbel > 0.0f) {
        float noise = p.temperature_gumbel * gumbel_from_uint32(random_uint32(p.seed, r.row, (uint32_t)e));
        key = key + noise;
    }
    return key + 0.0f;
}

// A probability below which no candidate can beat `threshold`, so that a scan can skip it before
// taking any log: in deterministic mode the key is P itself (exact); with noise the key is at
// most log P + noise_bound, and expf(value - noise_bound), shrunk by a margin far above the
// rounding of expf/logf, is a safe lower bound. Recompute when the threshold changes (rarely).
KMAS_HD float min_probability(const Problem& p, const Row& r, int64_t threshold) {
    if (threshold == EMPTY_KEY) return 0.0f;
    float value = packed_value(threshold);
    if (!(p.temperature_gumbel > 0.0f)) return value;
    return expf(value - r.noise_bound) * (1.0f - 1e-4f);
}

// The draw test of score_candidate, for temperature_gumbel == 1: key = log P - log E beats a
// threshold value t only if E < P e^-t, and E = -log1p(-v) >= v, so only if v < P e^-t. Returns
// e^-t with a 1e-3 margin (far above float rounding), INFINITY when there is no such test.
// No test when T >= 80: e^-T would approach the denormals, which a GPU may flush to zero.
KMAS_HD float draw_scale(const Problem& p, int64_t threshold) {
    if (threshold == EMPTY_KEY || p.temperature_gumbel != 1.0f) return INFINITY;
    const float value = packed_value(threshold);
    if (!(value < 80.0f)) return INFINITY;
    return expf(-value) * (1.0f + 1e-3f);
}

// Score candidate e of row r, P_b(e) = prob, against `threshold` (a packed key; EMPTY_KEY = accept
// anything). Returns true and the packed key when e is a candidate (P > 0, not excluded) whose key beats
// the threshold. Skips candidates with P < min_prob (see min_probability; 0 = no such test), the
// RNG when even the largest noise cannot beat the threshold, the logs of the noise when the raw
// draw cannot (v > P * scale, see draw_scale; INFINITY = no such test), and runs the exclusion
// search only for keys that would enter. The tests only skip; the keys are never changed.
// `draw`, when given, is this candidate's random_uint32, computed by the caller in bulk.
KMAS_HD bool score_probability(const Problem& p, const Row& r, int64_t e, float prob, int64_t threshold, int64_t* packed,
                               float min_prob = 0.0f, float scale = INFINITY, const uint32_t* draw = nullptr) {
    if (!(prob > 0.0f) || prob < min_prob) return false;
    // deterministic mode ranks by P itself: the order of log P without log's rounding
    if (scale != INFINITY) {  // temperature 1, threshold set: look at the raw draw before any log
        uint32_t x = draw ? *draw : random_uint32(p.seed, r.row, (uint32_t)e);  // draw: precomputed, same value
        float v = ((float)x + 1.0f) * 2.3283064365386963e-10f;
        if (v > prob * scale) return false;
        int64_t key = pack_key(logf(prob) + gumbel_from_uint32(x) + 0.0f, e);  // entity_key at t = 1
        if (key <= threshold) return false;
        if (is_excluded(e, r.positive, p.known, r.known_lo, r.known_hi)) return false;
        *packed = key;
        return true;
    }
    float base = p.temperature_gumbel > 0.0f ? logf(prob) : prob;
    if (threshold != EMPTY_KEY) {
        float upper = base + r.noise_bound;  // >= the key: rounding is monotone
        if (upper < packed_value(threshold)) return false;
    }
    int64_t key = pack_key(entity_key(p, r, e, base), e);
    if (key <= threshold) return false;
    if (is_excluded(e, r.positive, p.known, r.known_lo, r.known_hi)) return false;
    *packed = key;
    return true;
}

// score_probability with P computed here (entity_probability).
KMAS_HD bool score_candidate(const Problem& p, const Row& r, int64_t e, int64_t threshold, int64_t* packed,
                             float min_prob = 0.0f, float scale = INFINITY) {
    return score_probability(p, r, e, entity_probability(p, r, e), threshold, packed, min_prob, scale);
}

// ------------------------------------------------------------------ bounded top-k buffer
// A min-heap of at most k packed keys: heap[0] is the smallest kept key.
KMAS_HD void heap_sift_down(int64_t* heap, int64_t n, int64_t i) {
    int64_t x = heap[i];
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap[c + 1] < heap[c]) ++c;
        if (heap[c] >= x) break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = x;
}

// Offer a key; keeps the k largest. *n is the current size.
KMAS_HD void heap_offer(int64_t* heap, int64_t* n, int64_t k, int64_t key) {
    if (*n < k) {
        int64_t i = (*n)++;
        while (i > 0) {
            int64_t parent = (i - 1) >> 1;
            if (heap[parent] <= key) break;
            heap[i] = heap[parent];
            i = parent;
        }
        heap[i] = key;
    } else if (key > heap[0]) {
        heap[0] = key;
        heap_sift_down(heap, *n, 0);
    }
}

// The key a newcomer must beat: the heap minimum once it holds k keys.
KMAS_HD int64_t heap_threshold(const int64_t* heap, int64_t n, int64_t k) { return n < k ? EMPTY_KEY : heap[0]; }

// Sort a heap of n keys into descending order, in place (heap sort; the heap is consumed).
KMAS_HD void heap_sort_descending(int64_t* heap, int64_t n) {
    for (int64_t end = n - 1; end > 0; --end) {
        int64_t top = heap[0];
        heap[0] = heap[end];
        heap[end] = top;  // smallest goes last
        heap_sift_down(heap, end, 0);
    }
}

// Merge two descending lists into the k largest, descending; returns the count written.
KMAS_HD int64_t merge_descending(const int64_t* a, int64_t na, const int64_t* b, int64_t nb, int64_t* out, int64_t k) {
    int64_t i = 0, j = 0, n = 0;
    while (n < k && (i < na || j < nb)) {
        if (j >= nb || (i < na && a[i] > b[j]))
            out[n++] = a[i++];
        else
            out[n++] = b[j++];
    }
    return n;
}

// Merge by rank, one element at a time (a parallel merge: every element finds its own place).
// `self` and `other` are descending lists of n keys each (EMPTY_KEY padding allowed); element i
// of `self` lands at i + (the number of `other`'s keys placed before it). Ties go to the list
// with self_first = true, so the two lists' positions together are a permutation of [0, 2n).
// Keys placed at >= n are dropped by the caller: the first n positions are the n largest.
KMAS_HD int64_t merged_position(const int64_t* self, const int64_t* other, int64_t n, int64_t i, bool self_first) {
    const int64_t key = self[i];
    int64_t lo = 0, hi = n;  // first index of `other` placed after key
    while (lo < hi) {
        const int64_t mid = lo + ((hi - lo) >> 1);
        if (self_first ? other[mid] > key : other[mid] >= key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return i + lo;
}

// One level of a tree merge of a row's sorted k-lists (CUDA merge at small B; host-testable):
// src holds `lists` descending k-lists per row, (B, lists, k); dst receives ceil(lists / 2)
// lists per row, (B, ceil(lists / 2), k): list j = the k largest of src lists 2j and 2j + 1
// (list 2j copied when it has no partner). `slot` in [0, ceil(lists / 2) * 2k) names one source
// element of the row; each slot is independent, so one thread per slot runs a level in parallel,
// log2(lists) levels in all: O(lists k log k) work against a bitonic sort of lists * k keys.
KMAS_HD void merge_level_slot(const int64_t* src, int64_t* dst, int64_t lists, int64_t k, int64_t row, int64_t slot) {
    const int64_t out_lists = (lists + 1) >> 1;
    const int64_t pair = slot / (2 * k), within = slot % (2 * k);
    const int64_t side = within / k, i = within % k;  // side 0: list 2 * pair, side 1: its partner
    const int64_t first = 2 * pair;
    const int64_t* a = src + (row * lists + first) * k;
    int64_t* out = dst + (row * out_lists + pair) * k;
    if (first + 1 >= lists) {  // no partner: copy
        if (side == 0) out[i] = a[i];
        return;
    }
    const int64_t* b = a + k;
    const int64_t pos = side == 0 ? merged_position(a, b, k, i, true) : merged_position(b, a, k, i, false);
    if (pos < k) out[pos] = side == 0 ? a[i] : b[i];
}

// Write the ids of a descending list of n keys into out[0:k], -1 past n.
KMAS_HD void write_ids(const int64_t* keys, int64_t n, int64_t k, int64_t* out) {
    for (int64_t i = 0; i < k; ++i) out[i] = i < n ? packed_id(keys[i]) : -1;
}

}  // namespace kmas

// CPU backend: OpenMP over groups of rows (and over entity ranges when there are fewer rows than
// threads). Entities are scanned in tiles; for a tile, P is computed for all the group's rows at
// once: each (entity, relation) pair of the index adds the relation's column of scaled weights
// (B contiguous floats, vectorised) to the entity's B sums, in the index's order, so each sum is
// exactly entity_probability's; the branchy walk over an entity's relation list is paid once per
// entity instead of once per (row, entity). Each row then scores the tile (kmas_core.h:
// score_probability) into its own buffer of 2k keys, cut back to the k best whenever it fills
// (their smallest becomes the row's threshold); buffers of the same row from different entity
// ranges are merged at the end.
// Extra memory: 2 B k keys per entity range + a (tile, rows) float block per thread, never B x N.
#include "topk_cpu.h"

#include <algorithm>
#include <functional>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace kmas {
namespace cpu {

namespace {
// Entities per tile: the (tile, B) float block stays within ~1 MiB (L2), 16 .. 2048 entities.
int64_t tile_entities(int64_t batch) {
    return std::max<int64_t>(16, std::min<int64_t>(2048, (int64_t(1) << 18) / std::max<int64_t>(1, batch)));
}

struct RowScan {  // one row's running state in one thread
    int64_t n = 0;                  // keys in the row's buffer (at most 2k)
    int64_t threshold = EMPTY_KEY;  // the k-th largest key at the last compaction
    float min_prob = 0.0f;          // P below this cannot beat the threshold: skipped before any log
    float scale = INFINITY;         // a draw v > P * scale cannot beat it: its logs are skipped
};

// Philox word 0 at counters {e, row0 + c} for c in [0, width): one entity's draws for a group of
// rows, written as a plain loop over lanes so that the compiler vectorises the 32 x 32 -> 64 bit
// multiplies (an AVX2 clone is picked at run time where the CPU has it). Same stream as
// random_uint32 in kmas_core.h, bit for bit.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KMAS_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KMAS_VECTOR_CLONES
#endif
KMAS_VECTOR_CLONES
void draws_for_rows(uint64_t seed, uint32_t entity, uint32_t row0, int64_t width, uint32_t* x) {
    const uint32_t key0 = (uint32_t)(seed & 0xFFFFFFFFull), key1 = (uint32_t)(seed >> 32);
    for (int64_t c = 0; c < width; ++c) {
        uint32_t c0 = entity, c1 = row0 + (uint32_t)c, c2 = 0u, c3 = 0u, k0 = key0, k1 = key1;
        for (int i = 0; i < PHILOX_ROUNDS; ++i) {
            const uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
            const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint32_t)p1;
            c3 = (uint32_t)p0;
            c0 = n0;
            c2 = n2;
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        x[c] = c0;
    }
}

// Keep the k largest of the buffer's n keys (n > k) and return the smallest kept one. A buffer of
// 2k keys compacted this way costs O(1) per insert on average, against a heap's O(log k).
int64_t compact(int64_t* buffer, int64_t n, int64_t k) {
    std::nth_element(buffer, buffer + (k - 1), buffer + n, std::greater<int64_t>());
    return buffer[k - 1];  // buffer[0:k] are the k largest, this the smallest of them
}
}  // namespace

int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void top_k(const Problem& p, int64_t* out, int num_threads) {
    const int64_t B = p.batch, N = p.num_entities, R = p.num_relations, k = p.k;
    if (B <= 0 || k <= 0) return;
    int threads = num_threads > 0 ? num_threads : max_threads();
    // Threads split the rows first (each row then has one ascending scan, so its heap fills once);
    // only when there are fewer rows than threads do they also split the entities.
    const int64_t row_groups = std::min<int64_t>(threads, B);
    const int64_t entity_groups = std::max<int64_t>(1, std::min<int64_t>(threads / row_groups, (N + 4095) / 4096));
    threads = (int)(row_groups * entity_groups);
    const int64_t rows_per_group = (B + row_groups - 1) / row_groups;
    const int64_t tile = tile_entities(rows_per_group);

    // scaled weights transposed to (R, B): one relation's weights for every row, contiguous
    std::vector<float> scaled_t((size_t)(R * B));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t r = 0; r < R; ++r) scaled_t[(size_t)(r * B + b)] = p.scaled[b * R + r];

    std::vector<int64_t> heaps((size_t)(entity_groups * B * 2 * k));  // (entity group, row, 2k) buffers
    std::vector<int64_t> counts((size_t)(entity_groups * B), 0);

#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(threads)
#endif
    for (int64_t task = 0; task < threads; ++task) {
        const int64_t b0 = std::min(B, (task % row_groups) * rows_per_group), b1 = std::min(B, b0 + rows_per_group);
        const int64_t group = task / row_groups;
        const int64_t e0 = N * group / entity_groups, e1 = N * (group + 1) / entity_groups;
        const int64_t width = b1 - b0;
        if (width <= 0) continue;
        std::vector<float> prob((size_t)(tile * width));  // (tile, width): P of entity lo + i, row b0 + c
        std::vector<RowScan> scan((size_t)width);
        std::vector<uint32_t> draws((size_t)width);
        std::vector<Row> rows((size_t)width);
        for (int64_t c = 0; c < width; ++c) rows[(size_t)c] = make_row(p, b0 + c);
        int64_t* my_heaps = heaps.data() + (size_t)(group * B + b0) * 2 * k;

        for (int64_t lo = e0; lo < e1; lo += tile) {
            const int64_t hi = std::min(e1, lo + tile);
            std::fill(prob.begin(), prob.begin() + (hi - lo) * width, 0.0f);
            for (int64_t e = lo; e < hi; ++e) {
                float* acc = prob.data() + (e - lo) * width;
                for (int64_t j = p.ent_ptr[e]; j < p.ent_ptr[e + 1]; ++j) {
                    const float* w = scaled_t.data() + (int64_t)p.ent_rels[j] * B + b0;
                    for (int64_t c = 0; c < width; ++c) acc[c] += w[c];
                }
            }
            for (int64_t e = lo; e < hi; ++e) {
                const float* acc = prob.data() + (e - lo) * width;
                // with noise, draw for all rows at once (vectorised) when most rows need a draw
                const uint32_t* x = nullptr;
                if (p.temperature_gumbel == 1.0f) {
                    int64_t live = 0;
                    for (int64_t c = 0; c < width; ++c) live += acc[c] > 0.0f && acc[c] >= scan[(size_t)c].min_prob;
                    if (4 * live >= width && live > 0) {
                        draws_for_rows(p.seed, (uint32_t)e, (uint32_t)b0, width, draws.data());
                        x = draws.data();
                    }
                }
                for (int64_t c = 0; c < width; ++c) {
                    RowScan& s = scan[(size_t)c];
                    if (!(acc[c] > 0.0f) || acc[c] < s.min_prob) continue;  // the common case, no call
                    int64_t key;
                    if (!score_probability(p, rows[(size_t)c], e, acc[c], s.threshold, &key, s.min_prob, s.scale,
                                           x ? x + c : nullptr))
                        continue;
                    int64_t* buffer = my_heaps + c * 2 * k;
                    buffer[s.n++] = key;
                    const bool first = s.n == k && s.threshold == EMPTY_KEY;  // k keys: a first bound
                    if (first || s.n == 2 * k) {
                        s.threshold = first ? *std::min_element(buffer, buffer + k) : compact(buffer, s.n, k);
                        s.n = k;
                        s.min_prob = min_probability(p, rows[(size_t)c], s.threshold);
                        s.scale = draw_scale(p, s.threshold);
                    }
                }
            }
        }
        for (int64_t c = 0; c < width; ++c) {
            int64_t* buffer = my_heaps + c * 2 * k;
            int64_t n = scan[(size_t)c].n;
            if (n > k) {
                compact(buffer, n, k);
                n = k;
            }
            std::sort(buffer, buffer + n, std::greater<int64_t>());
            counts[(size_t)(group * B + b0 + c)] = n;
        }
    }

#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        std::vector<int64_t> acc((size_t)k), tmp((size_t)k);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t b = 0; b < B; ++b) {
            int64_t n = 0;
            for (int64_t g = 0; g < entity_groups; ++g) {
                const int64_t* sorted = heaps.data() + (size_t)(g * B + b) * 2 * k;
                n = merge_descending(acc.data(), n, sorted, counts[(size_t)(g * B + b)], tmp.data(), k);
                std::swap(acc, tmp);
            }
            write_ids(acc.data(), n, k, out + b * k);
        }
    }
}

}  // namespace cpu
}  // namespace kmas

// CPU backend: OpenMP over (row, entity chunk) tasks; each task keeps its own bounded top-k heap
// (kmas_core.h), sorted at the end; each row then merges its chunks' sorted lists.
// Extra memory: O(max(B, 2 * threads) * k) keys, never B x N.
#include "topk_cpu.h"

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace kmas {
namespace cpu {

namespace {
constexpr int64_t MIN_CHUNK = 4096;  // entities per task, at least
}

int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void top_k(const Problem& p, int64_t* out, int num_threads) {
    const int64_t B = p.batch, N = p.num_entities, k = p.k;
    if (B <= 0 || k <= 0) return;
    int threads = num_threads > 0 ? num_threads : max_threads();
    // enough tasks for every thread, no chunk below MIN_CHUNK entities (and at least one)
    int64_t max_chunks = std::max<int64_t>(1, (N + MIN_CHUNK - 1) / MIN_CHUNK);
    int64_t chunks = std::min<int64_t>(max_chunks, std::max<int64_t>(1, (2 * (int64_t)threads + B - 1) / B));
    if (threads == 1) chunks = 1;
    const int64_t tasks = B * chunks;

    std::vector<int64_t> keys((size_t)(tasks * k));
    std::vector<int64_t> counts((size_t)tasks, 0);

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
#endif
    for (int64_t t = 0; t < tasks; ++t) {
        const int64_t b = t / chunks, c = t % chunks;
        const int64_t lo = N * c / chunks, hi = N * (c + 1) / chunks;
        const Row row = make_row(p, b);
        int64_t* heap = keys.data() + t * k;
        int64_t n = 0;
        int64_t threshold = EMPTY_KEY;
        for (int64_t e = lo; e < hi; ++e) {
            int64_t key;
            if (score_candidate(p, row, e, threshold, &key)) {
                heap_offer(heap, &n, k, key);
                threshold = heap_threshold(heap, n, k);
            }
        }
        heap_sort_descending(heap, n);
        counts[(size_t)t] = n;
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
            for (int64_t c = 0; c < chunks; ++c) {
                const int64_t t = b * chunks + c;
                n = merge_descending(acc.data(), n, keys.data() + t * k, counts[(size_t)t], tmp.data(), k);
                std::swap(acc, tmp);
            }
            write_ids(acc.data(), n, k, out + b * k);
        }
    }
}

}  // namespace cpu
}  // namespace kmas

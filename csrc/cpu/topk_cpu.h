// CPU backend: Gumbel-top-k over the index with OpenMP (no torch headers).
#pragma once

#include "../core/kmas_core.h"

namespace kmas {
namespace cpu {

// out: (B, k) int64 ids, descending key order, -1 past the row's support.
// num_threads <= 0: OpenMP's default.
void top_k(const Problem& problem, int64_t* out, int num_threads);

// Number of threads OpenMP would use (1 without OpenMP).
int max_threads();

}  // namespace cpu
}  // namespace kmas

// Relational sparse-dense product with DistMult messages and sum aggregation, on the CPU with
// OpenMP (no torch headers). A generic graph op: nothing here knows about any model.
//
//   out[b, u, :] = boundary[b, u, :] + sum_{e in ptr[u] .. ptr[u+1]} x[b, col[e], :] * rel[(b,) typ[e], :]
//
// x (B, num_in, d), rel (R, d) when shared by all rows or (B, R, d), boundary and out
// (B, num_out, d), all contiguous. The graph arrives as a CSR over output nodes (ptr: num_out + 1,
// col / typ: E). The same routine computes the input gradient on the transposed CSR.
//
// Determinism: every output element is owned by one task and summed in CSR order, and the
// relation gradient of shared vectors is reduced over fixed chunks of edges in a fixed order, so
// results do not depend on the number of threads or on scheduling.
#pragma once

#include <cstdint>

namespace kmas {
namespace graph {

// out = boundary (or 0 when boundary is null) + gathered messages. num_threads <= 0: OpenMP default.
template <typename T>
void gather(const int64_t* ptr, const int32_t* col, const int32_t* typ, const T* x, const T* rel,
            const T* boundary, T* out, int64_t batch, int64_t num_out, int64_t num_in, int64_t num_rel,
            int64_t dim, bool shared, int num_threads);

// Gradient of the relation vectors. Edges sorted by relation (dst / src: E), split into chunks:
// chunk c covers edges chunk_start[c] .. chunk_start[c + 1], the chunks of relation r are
// chunk_ptr[r] .. chunk_ptr[r + 1].
//   shared:  grad_rel[r, :]    = sum_b sum_{e of r} grad_out[b, dst[e], :] * x[b, src[e], :]
//   per-row: grad_rel[b, r, :] =       sum_{e of r} grad_out[b, dst[e], :] * x[b, src[e], :]
template <typename T>
void relation_grad(const int64_t* chunk_start, const int64_t* chunk_ptr, const int32_t* dst, const int32_t* src,
                   const T* grad_out, const T* x, T* grad_rel, int64_t batch, int64_t num_out, int64_t num_in,
                   int64_t num_rel, int64_t num_chunks, int64_t dim, bool shared, int num_threads);

}  // namespace graph
}  // namespace kmas

// Relational sparse-dense product on the CPU (see rspmm_cpu.h).
//
// Layout: rows b of x / out are independent, feature dimension d contiguous. A task is one row b
// and a block of consecutive output nodes; it keeps that row's x[b] (num_in x d) and rel[b] hot in
// L2 while it walks the CSR, accumulating a node's messages in a local block of at most 64
// features (vectorised; an AVX2 clone is picked at run time where the CPU has it). Nothing of size
// (B, E, d) is ever formed; the only extra memory is one d-vector per chunk of edges for the
// gradient of shared relation vectors.
#include "rspmm_cpu.h"

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KMAS_RSPMM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KMAS_RSPMM_CLONES
#endif
#if defined(__GNUC__) || defined(__clang__)
#define KMAS_INLINE inline __attribute__((always_inline))
#else
#define KMAS_INLINE inline
#endif

namespace kmas {
namespace graph {

namespace {

constexpr int64_t FEATURE_BLOCK = 64;  // features accumulated at once (one ULTRA hidden vector)
constexpr int64_t NODES_PER_TASK = 32;

constexpr int64_t WORK_PER_THREAD = 1 << 16;  // multiply-adds below which another thread costs more than it saves

// Threads for `work` multiply-adds split into `tasks`: the caller's count (OpenMP's default when
// <= 0), but no more than the tasks and one per WORK_PER_THREAD (tiny products stay on one
// thread: waking a team costs microseconds, far more on a busy machine).
int threads_for(int num_threads, int64_t work, int64_t tasks) {
#ifdef _OPENMP
    const int64_t wanted = num_threads > 0 ? num_threads : omp_get_max_threads();
    return (int)std::max<int64_t>(1, std::min({wanted, tasks, work / WORK_PER_THREAD}));
#else
    (void)num_threads;
    (void)work;
    (void)tasks;
    return 1;
#endif
}

template <typename T>
struct GatherArgs {
    const int64_t* ptr;
    const int32_t* col;
    const int32_t* typ;
    const T* x;
    const T* rel;
    const T* boundary;
    T* out;
    int64_t num_out, num_in, num_rel, dim;
};

// acc[0:w] += a[0:w] * b[0:w]; the fixed-width branch lets the compiler unroll and vectorise fully.
template <typename T>
KMAS_INLINE void multiply_add(T* __restrict acc, const T* __restrict a, const T* __restrict b, int64_t w) {
    if (w == FEATURE_BLOCK) {
        for (int64_t k = 0; k < FEATURE_BLOCK; ++k) acc[k] += a[k] * b[k];
    } else {
        for (int64_t k = 0; k < w; ++k) acc[k] += a[k] * b[k];
    }
}

// Output nodes u0 .. u1 of row b.
template <typename T, bool SHARED>
KMAS_INLINE void gather_nodes(const GatherArgs<T>& a, int64_t b, int64_t u0, int64_t u1) {
    const int64_t dim = a.dim;
    const T* xb = a.x + b * a.num_in * dim;
    const T* relb = SHARED ? a.rel : a.rel + b * a.num_rel * dim;
    T acc[FEATURE_BLOCK];
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t row = (b * a.num_out + u) * dim;
        const int64_t start = a.ptr[u], end = a.ptr[u + 1];
        for (int64_t d0 = 0; d0 < dim; d0 += FEATURE_BLOCK) {
            const int64_t w = std::min(FEATURE_BLOCK, dim - d0);
            if (a.boundary) {
                for (int64_t k = 0; k < w; ++k) acc[k] = a.boundary[row + d0 + k];
            } else {
                for (int64_t k = 0; k < w; ++k) acc[k] = T(0);
            }
            for (int64_t e = start; e < end; ++e) {
                multiply_add(acc, xb + (int64_t)a.col[e] * dim + d0, relb + (int64_t)a.typ[e] * dim + d0, w);
            }
            for (int64_t k = 0; k < w; ++k) a.out[row + d0 + k] = acc[k];
        }
    }
}

#define KMAS_DEFINE_GATHER(NAME, T, SHARED) \
    KMAS_RSPMM_CLONES void NAME(const GatherArgs<T>& a, int64_t b, int64_t u0, int64_t u1) { gather_nodes<T, SHARED>(a, b, u0, u1); }
KMAS_DEFINE_GATHER(gather_f32_shared, float, true)
KMAS_DEFINE_GATHER(gather_f32_rows, float, false)
KMAS_DEFINE_GATHER(gather_f64_shared, double, true)
KMAS_DEFINE_GATHER(gather_f64_rows, double, false)
#undef KMAS_DEFINE_GATHER

template <typename T>
using GatherFn = void (*)(const GatherArgs<T>&, int64_t, int64_t, int64_t);
GatherFn<float> gather_fn(float*, bool shared) { return shared ? &gather_f32_shared : &gather_f32_rows; }
GatherFn<double> gather_fn(double*, bool shared) { return shared ? &gather_f64_shared : &gather_f64_rows; }

template <typename T>
struct RelGradArgs {
    const int64_t* chunk_start;
    const int64_t* chunk_ptr;
    const int32_t* dst;
    const int32_t* src;
    const T* grad_out;
    const T* x;
    int64_t num_out, num_in, dim;
};

// sum over rows b0 .. b1 and edges e0 .. e1 of grad_out[b, dst[e], d0:d0+w] * x[b, src[e], d0:d0+w], into acc.
template <typename T>
KMAS_INLINE void edge_products(const RelGradArgs<T>& a, int64_t b0, int64_t b1, int64_t e0, int64_t e1, int64_t d0,
                               int64_t w, T* acc) {
    const int64_t dim = a.dim;
    for (int64_t b = b0; b < b1; ++b) {
        const T* gb = a.grad_out + b * a.num_out * dim + d0;
        const T* xb = a.x + b * a.num_in * dim + d0;
        for (int64_t e = e0; e < e1; ++e) multiply_add(acc, gb + (int64_t)a.dst[e] * dim, xb + (int64_t)a.src[e] * dim, w);
    }
}

// Per-row vectors: grad_rel[b, r] over the relation's edges in order.
template <typename T>
KMAS_INLINE void rel_grad_row(const RelGradArgs<T>& a, int64_t b, int64_t r, T* grad_rel_br) {
    const int64_t e0 = a.chunk_start[a.chunk_ptr[r]], e1 = a.chunk_start[a.chunk_ptr[r + 1]];
    T acc[FEATURE_BLOCK];
    for (int64_t d0 = 0; d0 < a.dim; d0 += FEATURE_BLOCK) {
        const int64_t w = std::min(FEATURE_BLOCK, a.dim - d0);
        for (int64_t k = 0; k < w; ++k) acc[k] = T(0);
        edge_products(a, b, b + 1, e0, e1, d0, w, acc);
        for (int64_t k = 0; k < w; ++k) grad_rel_br[d0 + k] = acc[k];
    }
}

// Shared vectors: one chunk of edges summed over every row, into partial (d,).
template <typename T>
KMAS_INLINE void rel_grad_chunk(const RelGradArgs<T>& a, int64_t batch, int64_t c, T* partial) {
    const int64_t e0 = a.chunk_start[c], e1 = a.chunk_start[c + 1];
    T acc[FEATURE_BLOCK];
    for (int64_t d0 = 0; d0 < a.dim; d0 += FEATURE_BLOCK) {
        const int64_t w = std::min(FEATURE_BLOCK, a.dim - d0);
        for (int64_t k = 0; k < w; ++k) acc[k] = T(0);
        edge_products(a, 0, batch, e0, e1, d0, w, acc);
        for (int64_t k = 0; k < w; ++k) partial[d0 + k] = acc[k];
    }
}

#define KMAS_DEFINE_RELGRAD(T, SUFFIX)                                                                   \
    KMAS_RSPMM_CLONES void rel_grad_row_##SUFFIX(const RelGradArgs<T>& a, int64_t b, int64_t r, T* out) { \
        rel_grad_row<T>(a, b, r, out);                                                                   \
    }                                                                                                    \
    KMAS_RSPMM_CLONES void rel_grad_chunk_##SUFFIX(const RelGradArgs<T>& a, int64_t batch, int64_t c, T* out) { \
        rel_grad_chunk<T>(a, batch, c, out);                                                             \
    }
KMAS_DEFINE_RELGRAD(float, f32)
KMAS_DEFINE_RELGRAD(double, f64)
#undef KMAS_DEFINE_RELGRAD

void rel_grad_row_fn(const RelGradArgs<float>& a, int64_t b, int64_t r, float* o) { rel_grad_row_f32(a, b, r, o); }
void rel_grad_row_fn(const RelGradArgs<double>& a, int64_t b, int64_t r, double* o) { rel_grad_row_f64(a, b, r, o); }
void rel_grad_chunk_fn(const RelGradArgs<float>& a, int64_t n, int64_t c, float* o) { rel_grad_chunk_f32(a, n, c, o); }
void rel_grad_chunk_fn(const RelGradArgs<double>& a, int64_t n, int64_t c, double* o) { rel_grad_chunk_f64(a, n, c, o); }

}  // namespace

template <typename T>
void gather(const int64_t* ptr, const int32_t* col, const int32_t* typ, const T* x, const T* rel, const T* boundary,
            T* out, int64_t batch, int64_t num_out, int64_t num_in, int64_t num_rel, int64_t dim, bool shared,
            int num_threads) {
    if (batch <= 0 || num_out <= 0 || dim <= 0) return;
    const GatherArgs<T> a{ptr, col, typ, x, rel, boundary, out, num_out, num_in, num_rel, dim};
    const GatherFn<T> fn = gather_fn((T*)nullptr, shared);
    const int64_t blocks = (num_out + NODES_PER_TASK - 1) / NODES_PER_TASK;
    const int64_t tasks = batch * blocks;
    const int threads = threads_for(num_threads, batch * (ptr[num_out] + num_out) * dim, tasks);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t t = 0; t < tasks; ++t) {
        const int64_t b = t / blocks, u0 = (t % blocks) * NODES_PER_TASK;
        fn(a, b, u0, std::min(num_out, u0 + NODES_PER_TASK));
    }
}

template <typename T>
void relation_grad(const int64_t* chunk_start, const int64_t* chunk_ptr, const int32_t* dst, const int32_t* src,
                   const T* grad_out, const T* x, T* grad_rel, int64_t batch, int64_t num_out, int64_t num_in,
                   int64_t num_rel, int64_t num_chunks, int64_t dim, bool shared, int num_threads) {
    if (num_rel <= 0 || dim <= 0) return;
    const RelGradArgs<T> a{chunk_start, chunk_ptr, dst, src, grad_out, x, num_out, num_in, dim};
    if (!shared) {
        const int64_t tasks = batch * num_rel;
        if (tasks <= 0) return;
        const int threads = threads_for(num_threads, batch * (chunk_start[num_chunks] + num_rel) * dim, tasks);
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
        for (int64_t t = 0; t < tasks; ++t) rel_grad_row_fn(a, t / num_rel, t % num_rel, grad_rel + t * dim);
        return;
    }
    // shared: fixed chunks -> partial sums -> per relation in chunk order (independent of threads)
    std::vector<T> partial((size_t)std::max<int64_t>(num_chunks, 0) * (size_t)dim);
    if (num_chunks > 0 && batch > 0) {
        const int threads = threads_for(num_threads, batch * chunk_start[num_chunks] * dim, num_chunks);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t c = 0; c < num_chunks; ++c) rel_grad_chunk_fn(a, batch, c, partial.data() + c * dim);
    } else {
        std::fill(partial.begin(), partial.end(), T(0));
    }
    for (int64_t r = 0; r < num_rel; ++r) {
        T* g = grad_rel + r * dim;
        for (int64_t k = 0; k < dim; ++k) g[k] = T(0);
        for (int64_t c = chunk_ptr[r]; c < chunk_ptr[r + 1]; ++c) {
            const T* p = partial.data() + c * dim;
            for (int64_t k = 0; k < dim; ++k) g[k] += p[k];
        }
    }
}

template void gather<float>(const int64_t*, const int32_t*, const int32_t*, const float*, const float*, const float*,
                            float*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int);
template void gather<double>(const int64_t*, const int32_t*, const int32_t*, const double*, const double*,
                             const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int);
template void relation_grad<float>(const int64_t*, const int64_t*, const int32_t*, const int32_t*, const float*,
                                   const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int);
template void relation_grad<double>(const int64_t*, const int64_t*, const int32_t*, const int32_t*, const double*,
                                    const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool,
                                    int);

}  // namespace graph
}  // namespace kmas

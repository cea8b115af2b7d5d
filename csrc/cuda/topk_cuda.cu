// CUDA backend: Gumbel-top-k over the index without a B x N buffer.
//
// Kernel 1 (select): grid (splits, B), one block per (row, slice of entities). Threads score
// consecutive entities (coalesced ent_ptr reads), skip P = 0 and, through the shared threshold,
// the RNG of candidates that cannot enter. Keys that beat the block's threshold are appended to a
// block buffer (shared memory, or global scratch for large k) with one atomic per warp
// (ballot + popc). When the buffer could overflow, the block sorts it (bitonic), keeps the k
// largest and raises its threshold; blocks of the same row share their k-th keys through a
// per-row atomicMax, so every block of a row rejects what another block already beats.
// Scoring skips, cheapest first (kmas_core.h: score_probability): P = 0; P below the threshold's
// probability bound (no RNG); the raw Philox draw failing the log-free draw test v > P e^-T at
// temperature 1 (no logs); the key not beating the threshold (no exclusion search).
// Kernel 2 (merge): the splits' sorted k-lists are merged pairwise in log2(splits) levels, one
// thread per key and level (kmas_core.h: merge_level_slot), so small batches (B = 1, splits in
// the hundreds) spread the merge over the whole GPU; a last kernel writes the ids.
// Scoring, RNG, packing and exclusion are the shared core (csrc/core/kmas_core.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "topk_cuda.h"

namespace kmas {
namespace cuda {

namespace {

constexpr int THREADS = 256;
constexpr int64_t SMEM_KEYS = 6144;                  // 48 KB of int64: no opt-in needed
constexpr int64_t MIN_ENTITIES_PER_BLOCK = THREADS * 16;
constexpr int64_t SELECT_BUFFER_BUDGET = 256ll << 20;  // bytes of global select buffers, at most

int64_t next_pow2(int64_t x) {
    int64_t p = 1;
    while (p < x) p <<= 1;
    return p;
}

size_t align_up(size_t x) { return (x + 255) & ~(size_t)255; }

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string("kmas cuda: ") + what + ": " + cudaGetErrorString(err));
}

struct Plan {
    int splits;
    int64_t cap;         // select buffer capacity (power of two >= k + THREADS)
    bool select_global;  // select buffer in global scratch
    int64_t merge_lists;  // lists per row in the second merge buffer: ceil(splits / 2)
    size_t off_partial, off_select, off_merge, total;
};

Plan make_plan(int device, int64_t B, int64_t N, int64_t k) {
    int sms = 0;
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    Plan pl;
    pl.cap = next_pow2(k + THREADS);
    pl.select_global = pl.cap > SMEM_KEYS;
    int64_t want = std::max<int64_t>(1, (2 * (int64_t)sms + B - 1) / std::max<int64_t>(B, 1));
    int64_t most = std::max<int64_t>(1, N / MIN_ENTITIES_PER_BLOCK);
    int64_t splits = std::min(want, most);
    if (pl.select_global) {
        int64_t fit = SELECT_BUFFER_BUDGET / (std::max<int64_t>(B, 1) * pl.cap * 8);
        splits = std::max<int64_t>(1, std::min(splits, fit));
    }
    splits = std::min<int64_t>(splits, 65535);
    pl.splits = (int)splits;
    pl.merge_lists = splits > 1 ? (splits + 1) / 2 : 0;
    size_t off = align_up((size_t)B * 8);  // row thresholds first
    pl.off_partial = off;
    off += align_up((size_t)B * splits * k * 8);
    pl.off_select = off;
    if (pl.select_global) off += align_up((size_t)B * splits * pl.cap * 8);
    pl.off_merge = off;
    off += align_up((size_t)B * pl.merge_lists * k * 8);
    pl.total = off;
    return pl;
}

// Descending bitonic sort of buf[0:n), n a power of two; every thread of the block calls it.
__device__ void block_sort_descending(int64_t* buf, int64_t n) {
    for (int64_t size = 2; size <= n; size <<= 1) {
        for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
            for (int64_t i = threadIdx.x; i < (n >> 1); i += blockDim.x) {
                int64_t lo = 2 * i - (i & (stride - 1));
                int64_t hi = lo + stride;
                bool descending = (lo & size) == 0;
                int64_t a = buf[lo], b = buf[hi];
                if (descending ? (a < b) : (a > b)) {
                    buf[lo] = b;
                    buf[hi] = a;
                }
            }
            __syncthreads();
        }
    }
}

__global__ void init_thresholds(int64_t* row_thr, int64_t B) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < B) row_thr[i] = EMPTY_KEY;
}

__global__ void __launch_bounds__(THREADS)
select_kernel(Problem p, int64_t row0, int splits, int64_t cap, int64_t* select_buf, int64_t* row_thr,
              int64_t* partial) {
    extern __shared__ int64_t smem_keys[];
    __shared__ int count;
    __shared__ int64_t block_thr;

    const int64_t b = row0 + blockIdx.y;
    const int s = blockIdx.x;
    const int64_t k = p.k;
    int64_t* buf = select_buf ? select_buf + ((int64_t)b * splits + s) * cap : smem_keys;
    const Row row = make_row(p, b);
    const int64_t N = p.num_entities;
    const int64_t lo = N * s / splits, hi = N * (s + 1) / splits;
    const unsigned lane = threadIdx.x & 31u;

    if (threadIdx.x == 0) {
        count = 0;
        block_thr = EMPTY_KEY;
    }
    __syncthreads();

    int64_t thr = EMPTY_KEY;
    float min_prob = 0.0f, scale = INFINITY;  // the skip tests of `thr` (recomputed when it moves)
    for (int64_t base = lo;; base += THREADS) {
        const bool more = base < hi;  // uniform
        if (more) {
            const int64_t e = base + threadIdx.x;
            int64_t key = EMPTY_KEY;
            const bool ok = e < hi && score_candidate(p, row, e, thr, &key, min_prob, scale);
            const unsigned mask = __ballot_sync(0xFFFFFFFFu, ok);
            if (mask) {
                const int leader = __ffs(mask) - 1;
                int pos = 0;
                if (lane == (unsigned)leader) pos = atomicAdd(&count, __popc(mask));
                pos = __shfl_sync(0xFFFFFFFFu, pos, leader);
                if (ok) buf[pos + __popc(mask & ((1u << lane) - 1u))] = key;
            }
        }
        __syncthreads();
        const int n = count;  // every thread reads the same value ...
        __syncthreads();      // ... before anyone changes it
        if (!more || (int64_t)n + THREADS > cap) {
            for (int64_t i = n + threadIdx.x; i < cap; i += THREADS) buf[i] = EMPTY_KEY;
            __syncthreads();
            block_sort_descending(buf, cap);
            if (threadIdx.x == 0) {
                const int64_t kept = (int64_t)n < k ? (int64_t)n : k;
                count = (int)kept;
                int64_t t = block_thr;
                if (kept == k) {
                    t = t > buf[k - 1] ? t : buf[k - 1];
                    atomicMax(reinterpret_cast<long long*>(row_thr + b), (long long)buf[k - 1]);
                }
                const int64_t shared_thr = *reinterpret_cast<volatile int64_t*>(row_thr + b);
                block_thr = t > shared_thr ? t : shared_thr;
            }
            __syncthreads();
        }
        if (block_thr != thr) {
            thr = block_thr;
            min_prob = min_probability(p, row, thr);
            scale = draw_scale(p, thr);
        }
        if (!more) break;
    }

    // the block's k best (sorted by the final compaction), padded with EMPTY_KEY
    int64_t* dst = partial + ((int64_t)b * splits + s) * k;
    const int64_t kept = count;
    for (int64_t i = threadIdx.x; i < k; i += THREADS) dst[i] = i < kept ? buf[i] : EMPTY_KEY;
}

__global__ void __launch_bounds__(THREADS)
merge_level_kernel(const int64_t* src, int64_t* dst, int64_t lists, int64_t k, int64_t slots) {
    const int64_t slot = (int64_t)blockIdx.x * THREADS + threadIdx.x;
    if (slot < slots) merge_level_slot(src, dst, lists, k, blockIdx.y, slot);
}

__global__ void __launch_bounds__(THREADS)
write_ids_kernel(const int64_t* keys, int64_t lists, int64_t k, int64_t* out) {
    const int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x;
    const int64_t b = blockIdx.y;
    if (i < k) {
        const int64_t key = keys[b * lists * k + i];  // the row's first (merged) list
        out[b * k + i] = key == EMPTY_KEY ? -1 : packed_id(key);
    }
}

// The launches below go to the calling thread's current device. Switching devices here and back
// would be wrong twice: cudaGetDevice reports device 0 when no context is current, and "restoring"
// it with cudaSetDevice(0) creates a context on device 0 (memory on a GPU this process may not
// own). The caller (kmas_kernels/backends/native.py) enters torch.cuda.device(tensor.device)
// first; a mismatch is a bug, reported, never patched up.
void require_current_device(int device) {
    int current = -1;
    check(cudaGetDevice(&current), "cudaGetDevice");
    if (current != device)
        throw std::invalid_argument("kmas cuda: device: the tensors are on cuda:" + std::to_string(device) +
                                    " but the current CUDA device is cuda:" + std::to_string(current) +
                                    " (launch inside torch.cuda.device(tensor.device))");
}

}  // namespace

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear
        return 0;
    }
    return n;
}

size_t scratch_bytes(int device, int64_t batch, int64_t num_entities, int64_t k) {
    // attributes of `device` only: no context, no switch
    return make_plan(device, batch, num_entities, k).total;
}

void top_k(const Problem& p, int64_t* out, void* scratch, size_t scratch_size, int device, uintptr_t stream_handle) {
    if (p.batch <= 0) return;
    require_current_device(device);
    const Plan pl = make_plan(device, p.batch, p.num_entities, p.k);
    if (scratch_size < pl.total) throw std::invalid_argument("kmas cuda: scratch buffer too small");
    cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
    char* base = static_cast<char*>(scratch);
    int64_t* row_thr = reinterpret_cast<int64_t*>(base);
    int64_t* partial = reinterpret_cast<int64_t*>(base + pl.off_partial);
    int64_t* select_buf = pl.select_global ? reinterpret_cast<int64_t*>(base + pl.off_select) : nullptr;
    int64_t* merge_buf = reinterpret_cast<int64_t*>(base + pl.off_merge);

    init_thresholds<<<(unsigned)((p.batch + 255) / 256), 256, 0, stream>>>(row_thr, p.batch);
    check(cudaGetLastError(), "init_thresholds launch");

    const size_t select_smem = pl.select_global ? 0 : (size_t)pl.cap * 8;
    for (int64_t row0 = 0; row0 < p.batch; row0 += 65535) {  // gridDim.y <= 65535
        const unsigned rows = (unsigned)std::min<int64_t>(p.batch - row0, 65535);
        select_kernel<<<dim3((unsigned)pl.splits, rows), THREADS, select_smem, stream>>>(p, row0, pl.splits, pl.cap,
                                                                                      select_buf, row_thr, partial);
        check(cudaGetLastError(), "select_kernel launch");
    }
    // tree merge: level by level, ping-pong between the partial and the merge buffers
    const int64_t k = p.k;
    int64_t* src = partial;
    int64_t* dst = merge_buf;
    for (int64_t lists = pl.splits; lists > 1; lists = (lists + 1) / 2) {
        const int64_t slots = (lists + 1) / 2 * 2 * k;
        for (int64_t row0 = 0; row0 < p.batch; row0 += 65535) {
            const unsigned rows = (unsigned)std::min<int64_t>(p.batch - row0, 65535);
            merge_level_kernel<<<dim3((unsigned)((slots + THREADS - 1) / THREADS), rows), THREADS, 0, stream>>>(
                src + row0 * lists * k, dst + row0 * ((lists + 1) / 2) * k, lists, k, slots);
            check(cudaGetLastError(), "merge_level_kernel launch");
        }
        std::swap(src, dst);
    }
    for (int64_t row0 = 0; row0 < p.batch; row0 += 65535) {
        const unsigned rows = (unsigned)std::min<int64_t>(p.batch - row0, 65535);
        write_ids_kernel<<<dim3((unsigned)((k + THREADS - 1) / THREADS), rows), THREADS, 0, stream>>>(src + row0 * k, 1, k, out + row0 * k);
        check(cudaGetLastError(), "write_ids_kernel launch");
    }
}

}  // namespace cuda
}  // namespace kmas

// CUDA backend launcher: raw device pointers and a stream handle; no torch and no CUDA headers
// here, so the pybind11 module that includes it is plain C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/kmas_core.h"

namespace kmas {
namespace cuda {

// Devices visible to this extension's CUDA runtime (0 when there is no driver or device).
int device_count();

// Bytes of device scratch memory that top_k needs for this shape on `device`.
size_t scratch_bytes(int device, int64_t batch, int64_t num_entities, int64_t k);

// Gumbel-top-k into out (B, k) int64 (device memory), descending, -1 past the row's support.
// Every pointer in `problem` is device memory on `device`; `scratch` holds scratch_bytes(...)
// bytes; `stream` is a cudaStream_t as an integer. Asynchronous on `stream`.
// Throws std::runtime_error on a CUDA error.
void top_k(const Problem& problem, int64_t* out, void* scratch, size_t scratch_size, int device, uintptr_t stream);

}  // namespace cuda
}  // namespace kmas

// kmas_kernels._native_cuda: the CUDA backend behind pybind11. Device pointers and the stream
// arrive as Python ints (tensor.data_ptr(), torch.cuda.current_stream().cuda_stream); no torch
// headers, no CUDA headers (the launcher is csrc/cuda/topk_cuda.cu, linked with static cudart).
#include <pybind11/pybind11.h>

#include "../cuda/topk_cuda.h"
#include "problem_args.h"

namespace py = pybind11;

namespace {

void top_k(uintptr_t ent_ptr, uintptr_t ent_rels, uintptr_t known_answers, uintptr_t scaled, uintptr_t positive,
           uintptr_t known_start, uintptr_t known_end, uintptr_t out, int64_t batch, int64_t num_entities,
           int64_t num_relations, int64_t k, uint64_t seed, double temperature_gumbel, uintptr_t scratch,
           size_t scratch_size, int device, uintptr_t stream) {
    kmas::Problem p = kmas::make_problem(ent_ptr, ent_rels, known_answers, scaled, positive, known_start, known_end,
                                         batch, num_entities, num_relations, k, seed, temperature_gumbel);
    py::gil_scoped_release release;
    kmas::cuda::top_k(p, reinterpret_cast<int64_t*>(out), reinterpret_cast<void*>(scratch), scratch_size, device,
                      stream);
}

size_t scratch_bytes(int device, int64_t batch, int64_t num_entities, int64_t k) {
    if (batch < 0 || num_entities < 1 || k < 1) throw std::invalid_argument("kmas cuda: bad sizes");
    return kmas::cuda::scratch_bytes(device, batch, num_entities, k);
}

}  // namespace

PYBIND11_MODULE(_native_cuda, m) {
    m.doc() = "kmas_kernels CUDA backend (raw device pointers; see kmas_kernels/backends/native.py)";
    m.def("top_k", &top_k, py::arg("ent_ptr"), py::arg("ent_rels"), py::arg("known_answers"), py::arg("scaled"),
          py::arg("positive"), py::arg("known_start"), py::arg("known_end"), py::arg("out"), py::arg("batch"),
          py::arg("num_entities"), py::arg("num_relations"), py::arg("k"), py::arg("seed"),
          py::arg("temperature_gumbel"), py::arg("scratch"), py::arg("scratch_size"), py::arg("device"),
          py::arg("stream"), "Gumbel-top-k ids into out (B, k) int64 on `device`, asynchronously on `stream`.");
    m.def("scratch_bytes", &scratch_bytes, py::arg("device"), py::arg("batch"), py::arg("num_entities"),
          py::arg("k"));
    m.def("device_count", &kmas::cuda::device_count);
}

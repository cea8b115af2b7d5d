// kmas_kernels._native_cpu: the C++/OpenMP backend behind pybind11. Pointers arrive as Python
// ints (tensor.data_ptr()); no torch headers.
#include <pybind11/pybind11.h>

#include "../cpu/rspmm_cpu.h"
#include "../cpu/topk_cpu.h"
#include "problem_args.h"

namespace py = pybind11;

namespace {

void top_k(uintptr_t ent_ptr, uintptr_t ent_rels, uintptr_t known_answers, uintptr_t scaled, uintptr_t positive,
           uintptr_t known_start, uintptr_t known_end, uintptr_t out, int64_t batch, int64_t num_entities,
           int64_t num_relations, int64_t k, uint64_t seed, double temperature_gumbel, int num_threads) {
    kmas::Problem p = kmas::make_problem(ent_ptr, ent_rels, known_answers, scaled, positive, known_start, known_end,
                                         batch, num_entities, num_relations, k, seed, temperature_gumbel);
    py::gil_scoped_release release;
    kmas::cpu::top_k(p, reinterpret_cast<int64_t*>(out), num_threads);
}

// Test hooks: the core's RNG on arrays of int64 (row, entity) pairs.
void random_uint32(uint64_t seed, uintptr_t rows, uintptr_t entities, uintptr_t out, int64_t n) {
    const int64_t* r = reinterpret_cast<const int64_t*>(rows);
    const int64_t* e = reinterpret_cast<const int64_t*>(entities);
    int64_t* o = reinterpret_cast<int64_t*>(out);
    for (int64_t i = 0; i < n; ++i) o[i] = (int64_t)kmas::random_uint32(seed, (uint32_t)r[i], (uint32_t)e[i]);
}

void gumbel_from_uint32(uintptr_t x, uintptr_t out, int64_t n) {
    const int64_t* in = reinterpret_cast<const int64_t*>(x);
    float* o = reinterpret_cast<float*>(out);
    for (int64_t i = 0; i < n; ++i) o[i] = kmas::gumbel_from_uint32((uint32_t)in[i]);
}

// Relational sparse-dense product (rspmm_cpu.h); float64 when double_precision, else float32.
void rspmm_gather(bool double_precision, uintptr_t ptr, uintptr_t col, uintptr_t typ, uintptr_t x, uintptr_t rel,
                  uintptr_t boundary, uintptr_t out, int64_t batch, int64_t num_out, int64_t num_in, int64_t num_rel,
                  int64_t dim, bool shared, int num_threads) {
    py::gil_scoped_release release;
    const auto* p = reinterpret_cast<const int64_t*>(ptr);
    const auto* c = reinterpret_cast<const int32_t*>(col);
    const auto* t = reinterpret_cast<const int32_t*>(typ);
    if (double_precision) {
        kmas::graph::gather<double>(p, c, t, reinterpret_cast<const double*>(x), reinterpret_cast<const double*>(rel),
                                    reinterpret_cast<const double*>(boundary), reinterpret_cast<double*>(out), batch,
                                    num_out, num_in, num_rel, dim, shared, num_threads);
    } else {
        kmas::graph::gather<float>(p, c, t, reinterpret_cast<const float*>(x), reinterpret_cast<const float*>(rel),
                                   reinterpret_cast<const float*>(boundary), reinterpret_cast<float*>(out), batch,
                                   num_out, num_in, num_rel, dim, shared, num_threads);
    }
}

void rspmm_relation_grad(bool double_precision, uintptr_t chunk_start, uintptr_t chunk_ptr, uintptr_t dst,
                         uintptr_t src, uintptr_t grad_out, uintptr_t x, uintptr_t grad_rel, int64_t batch,
                         int64_t num_out, int64_t num_in, int64_t num_rel, int64_t num_chunks, int64_t dim,
                         bool shared, int num_threads) {
    py::gil_scoped_release release;
    const auto* cs = reinterpret_cast<const int64_t*>(chunk_start);
    const auto* cp = reinterpret_cast<const int64_t*>(chunk_ptr);
    const auto* d = reinterpret_cast<const int32_t*>(dst);
    const auto* s = reinterpret_cast<const int32_t*>(src);
    if (double_precision) {
        kmas::graph::relation_grad<double>(cs, cp, d, s, reinterpret_cast<const double*>(grad_out),
                                           reinterpret_cast<const double*>(x), reinterpret_cast<double*>(grad_rel),
                                           batch, num_out, num_in, num_rel, num_chunks, dim, shared, num_threads);
    } else {
        kmas::graph::relation_grad<float>(cs, cp, d, s, reinterpret_cast<const float*>(grad_out),
                                          reinterpret_cast<const float*>(x), reinterpret_cast<float*>(grad_rel), batch,
                                          num_out, num_in, num_rel, num_chunks, dim, shared, num_threads);
    }
}

}  // namespace

PYBIND11_MODULE(_native_cpu, m) {
    m.doc() = "kmas_kernels C++/OpenMP backend (raw pointers; see kmas_kernels/backends/native.py)";
    m.def("top_k", &top_k, py::arg("ent_ptr"), py::arg("ent_rels"), py::arg("known_answers"), py::arg("scaled"),
          py::arg("positive"), py::arg("known_start"), py::arg("known_end"), py::arg("out"), py::arg("batch"),
          py::arg("num_entities"), py::arg("num_relations"), py::arg("k"), py::arg("seed"),
          py::arg("temperature_gumbel"), py::arg("num_threads") = 0,
          "Gumbel-top-k ids into out (B, k) int64; every pointer is a host address.");
    m.def("random_uint32", &random_uint32, "Philox word 0 at counter (entity, row, 0, 0) for int64 arrays");
    m.def("gumbel_from_uint32", &gumbel_from_uint32, "Gumbel mapping of int64-held uint32 draws into float32");
    m.def("rspmm_gather", &rspmm_gather,
          "out = boundary (0 when null) + CSR gather of x * rel (DistMult, sum); host addresses, checked by "
          "kmas_kernels.graph_ops");
    m.def("rspmm_relation_grad", &rspmm_relation_grad,
          "gradient of the relation vectors of rspmm_gather over relation-sorted edge chunks");
    m.def("max_threads", &kmas::cpu::max_threads);
#ifdef _OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif
}

// Shared by the pybind11 modules: a kmas::Problem from raw addresses (Python ints).
#pragma once

#include <cstdint>
#include <stdexcept>

#include "../core/kmas_core.h"

namespace kmas {

template <typename T>
inline const T* as_ptr(uintptr_t address) {
    return reinterpret_cast<const T*>(address);
}

// The Python layer (kmas_kernels/backends/native.py) checks dtypes, shapes, devices and
// contiguity before calling; these checks only guard the sizes.
inline Problem make_problem(uintptr_t ent_ptr, uintptr_t ent_rels, uintptr_t known_answers, uintptr_t scaled,
                            uintptr_t positive, uintptr_t known_start, uintptr_t known_end, int64_t batch,
                            int64_t num_entities, int64_t num_relations, int64_t k, uint64_t seed,
                            double temperature_gumbel) {
    if (batch < 0 || num_entities < 1 || num_relations < 1 || k < 1)
        throw std::invalid_argument("kmas native: batch >= 0, num_entities >= 1, num_relations >= 1, k >= 1 required");
    if (num_entities > 0x7FFFFFFF || batch > 0xFFFFFFFFLL)
        throw std::invalid_argument("kmas native: num_entities must be < 2**31 and batch < 2**32");
    if (!(temperature_gumbel >= 0.0)) throw std::invalid_argument("kmas native: temperature_gumbel must be >= 0");
    if (seed >> 63) throw std::invalid_argument("kmas native: seed must be in [0, 2**63)");
    Problem p;
    p.ent_ptr = as_ptr<int64_t>(ent_ptr);
    p.ent_rels = as_ptr<int32_t>(ent_rels);
    p.known = as_ptr<int32_t>(known_answers);
    p.scaled = as_ptr<float>(scaled);
    p.positive = as_ptr<int64_t>(positive);
    p.known_start = as_ptr<int64_t>(known_start);
    p.known_end = as_ptr<int64_t>(known_end);
    p.batch = batch;
    p.num_entities = num_entities;
    p.num_relations = num_relations;
    p.k = k;
    p.seed = seed;
    p.temperature_gumbel = (float)temperature_gumbel;  // as torch: python float * fp32 tensor
    return p;
}

}  // namespace kmas

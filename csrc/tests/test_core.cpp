// Unit test of the shared core (csrc/core/kmas_core.h) on the host; compiled and run by
// tests/test_native.py when a C++ compiler exists:  g++ -std=c++17 -ffp-contract=off -I csrc
// Prints "OK" and exits 0 on success.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/kmas_core.h"

static int failures = 0;
#define CHECK(cond)                                                      \
    do {                                                                 \
        if (!(cond)) {                                                   \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                  \
        }                                                                \
    } while (0)

static void philox_known_answers() {  // Random123 kat_vectors, philox4x32_10
    struct Kat {
        uint32_t c[4], k[2], out[4];
    } kats[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8}},
        {{0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF},
         {0xFFFFFFFF, 0xFFFFFFFF},
         {0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD}},
        {{0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344},
         {0xA4093822, 0x299F31D0},
         {0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1}},
    };
    for (auto& kat : kats) {
        uint32_t c[4] = {kat.c[0], kat.c[1], kat.c[2], kat.c[3]};
        kmas::philox4x32_10(c, kat.k[0], kat.k[1]);
        for (int i = 0; i < 4; ++i) CHECK(c[i] == kat.out[i]);
    }
    // counter {entity, row, 0, 0}, key (seed lo, seed hi)
    uint64_t seed = 0x123456789ABCDEFull;
    uint32_t c[4] = {7, 3, 0, 0};
    kmas::philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    CHECK(kmas::random_uint32(seed, 3, 7) == c[0]);
}

static void gumbel_mapping() {
    float g0 = kmas::gumbel_from_uint32(0);
    CHECK(g0 > 22.18f && g0 < kmas::GUMBEL_BOUND);
    float prev = g0;
    for (uint32_t x : {1u, 1000u, 1u << 24, 1u << 31, 0xFFFFFF00u, 0xFFFFFFFFu}) {
        float g = kmas::gumbel_from_uint32(x);
        CHECK(g <= prev);
        CHECK(g == g && g > -10.0f);
        prev = g;
    }
}

static void packed_keys() {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> value(-50.0f, 50.0f);
    std::vector<std::pair<float, int64_t>> items;
    for (int i = 0; i < 2000; ++i) items.push_back({i % 7 == 0 ? 1.5f : value(rng), (int64_t)(rng() % 100000)});
    items.push_back({0.0f, 5});
    items.push_back({-0.0f + 0.0f, 4});
    items.push_back({-INFINITY, 3});
    for (size_t i = 0; i < items.size(); ++i)
        for (size_t j = 0; j < 50 && j < items.size(); ++j) {
            auto a = items[i], b = items[(i * 31 + j * 17) % items.size()];
            if (a.second == b.second) continue;
            bool a_first = a.first > b.first || (a.first == b.first && a.second < b.second);
            CHECK((kmas::pack_key(a.first, a.second) > kmas::pack_key(b.first, b.second)) == a_first);
        }
    for (auto& it : items) {
        int64_t key = kmas::pack_key(it.first, it.second);
        CHECK(kmas::packed_id(key) == it.second);
        CHECK(kmas::packed_value(key) == it.first);
        CHECK(key > kmas::EMPTY_KEY);
    }
}

static void heap_and_merge() {
    std::mt19937_64 rng(2);
    for (int trial = 0; trial < 200; ++trial) {
        int64_t k = 1 + rng() % 40, n = rng() % 200;
        std::vector<int64_t> all(n), heap(k), a(k), b(k), out(k);
        for (auto& x : all) x = (int64_t)(rng() % 1000) - 500;
        std::sort(all.begin(), all.end());
        all.erase(std::unique(all.begin(), all.end()), all.end());
        std::shuffle(all.begin(), all.end(), rng);
        int64_t size = 0;
        size_t half = all.size() / 2;
        for (size_t i = 0; i < half; ++i) kmas::heap_offer(heap.data(), &size, k, all[i]);
        kmas::heap_sort_descending(heap.data(), size);
        int64_t na = size;
        std::copy(heap.begin(), heap.begin() + na, a.begin());
        size = 0;
        for (size_t i = half; i < all.size(); ++i) {
            if (kmas::heap_threshold(heap.data(), size, k) < all[i]) kmas::heap_offer(heap.data(), &size, k, all[i]);
        }
        kmas::heap_sort_descending(heap.data(), size);
        int64_t nb = size;
        std::copy(heap.begin(), heap.begin() + nb, b.begin());
        int64_t m = kmas::merge_descending(a.data(), na, b.data(), nb, out.data(), k);
        std::vector<int64_t> expected = all;
        std::sort(expected.rbegin(), expected.rend());
        expected.resize(std::min<size_t>(expected.size(), (size_t)k));
        CHECK(m == (int64_t)expected.size());
        for (int64_t i = 0; i < m; ++i) CHECK(out[i] == expected[i]);
    }
}

static void exclusion_search() {
    std::vector<int32_t> known = {1, 4, 4, 9, 15, 16, 30};
    for (int64_t e = -1; e < 35; ++e) {
        bool expected = std::count(known.begin() + 1, known.begin() + 6, (int32_t)e) > 0 || e == 20;
        CHECK(kmas::is_excluded(e, 20, known.data(), 1, 6) == expected);
    }
    CHECK(!kmas::is_excluded(4, -1, known.data(), 3, 3));  // empty slice
}


// The CUDA merge (merge_level_slot, one thread per slot) emulated on the host: random descending
// k-lists with EMPTY_KEY padding, slots visited in a shuffled order (threads run in any order),
// levels until one list is left, against a sort of everything.
static void tree_merge_matches_sort() {
    std::mt19937_64 rng(7);
    const int64_t shapes[][3] = {{1, 1, 5}, {2, 2, 1}, {3, 3, 4}, {1, 7, 33}, {2, 13, 16}, {1, 64, 8}, {4, 5, 1}};
    for (auto& shape : shapes) {
        const int64_t B = shape[0], lists = shape[1], k = shape[2];
        std::vector<int64_t> src((size_t)(B * lists * k)), expected;
        for (int64_t b = 0; b < B; ++b) {
            std::vector<int64_t> all;
            for (int64_t l = 0; l < lists; ++l) {
                int64_t* list = src.data() + (b * lists + l) * k;
                const int64_t filled = (int64_t)(rng() % (uint64_t)(k + 1));  // some lists short
                for (int64_t i = 0; i < k; ++i) list[i] = i < filled ? kmas::pack_key((float)(rng() % 1000) - 500.0f, b * 100000 + l * 1000 + i) : kmas::EMPTY_KEY;
                std::sort(list, list + k, std::greater<int64_t>());
                all.insert(all.end(), list, list + k);
            }
            std::sort(all.begin(), all.end(), std::greater<int64_t>());
            expected.insert(expected.end(), all.begin(), all.begin() + k);
        }
        std::vector<int64_t> a = src, b((size_t)(B * ((lists + 1) / 2) * k));
        int64_t n = lists;
        while (n > 1) {
            const int64_t out_lists = (n + 1) / 2;
            std::vector<int64_t> slots((size_t)(out_lists * 2 * k));
            for (size_t s = 0; s < slots.size(); ++s) slots[s] = (int64_t)s;
            for (int64_t row = 0; row < B; ++row) {
                std::shuffle(slots.begin(), slots.end(), rng);
                for (int64_t slot : slots) kmas::merge_level_slot(a.data(), b.data(), n, k, row, slot);
            }
            std::swap(a, b);
            n = out_lists;
        }
        for (int64_t row = 0; row < B; ++row)
            for (int64_t i = 0; i < k; ++i) CHECK(a[(size_t)(row * k + i)] == expected[(size_t)(row * k + i)]);
    }
}

int main() {
    philox_known_answers();
    gumbel_mapping();
    packed_keys();
    heap_and_merge();
    exclusion_search();
    tree_merge_matches_sort();
    if (failures) {
        std::printf("%d failures\n", failures);
        return 1;
    }
    std::printf("OK\n");
    return 0;
}

// One bit-plane of a k-bit activation, float -> packed bits in one pass.
//
// q[r][c] = #{m in 1..levels : x[r][c] >= t[m-1][c]} (ordered >=: NaN counts no level, so q = 0);
// for an integer x in [0, levels] and t[m-1] = m - 0.5, q = x. The output bit of channel c is
// bit `plane` of q as ±1: +1 (bit 0) where it is set, -1 (bit 1) where it is clear. Pad bits are 0.
// With sorted thresholds t[0][c] <= t[1][c] <= ..., the compares are monotone in m, so bit j of q is
// the XOR of the compares at the levels m that are multiples of 2^j (the levels where bit j of m
// differs from bit j of m - 1): one compare per such level, no integer q is formed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor {

// x: rows x channels floats; thresholds: [levels][channels]; out: rows x ceil(channels / 64) words.
using BitplaneFn = void (*)(const float* x, size_t rows, size_t channels, const float* thresholds, size_t levels,
                            unsigned plane, uint64_t* out);

void bitplane_scalar(const float* x, size_t rows, size_t channels, const float* thresholds, size_t levels,
                     unsigned plane, uint64_t* out);
void bitplane_avx2(const float* x, size_t rows, size_t channels, const float* thresholds, size_t levels, unsigned plane,
                   uint64_t* out);
void bitplane_avx512(const float* x, size_t rows, size_t channels, const float* thresholds, size_t levels,
                     unsigned plane, uint64_t* out);

}  // namespace xnor

// Bit packing of float activations: one bit per value, bit = 1 for x < 0
// (the value -1), bit = 0 for x >= 0 (+1, so sign(0) = +1), packed along
// channels into uint64 words, channel c in word c / 64, bit c % 64. Bits past
// the real channel count are zero.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor {

inline int words_for_bits(int bits) { return (bits + 63) / 64; }

// x: rows x channels floats (row-major, e.g. NHWC pixels); out: rows x words.
using BitpackRowsFn = void (*)(const float* x, size_t rows, int channels, uint64_t* out);
// x: one image, channels x pixels floats (NCHW); out: pixels x words (NHWC).
using BitpackPlanarFn = void (*)(const float* x, int channels, size_t pixels, uint64_t* out);

void bitpack_rows_scalar(const float* x, size_t rows, int channels, uint64_t* out);
void bitpack_rows_avx2(const float* x, size_t rows, int channels, uint64_t* out);
void bitpack_rows_avx512(const float* x, size_t rows, int channels, uint64_t* out);

void bitpack_planar_scalar(const float* x, int channels, size_t pixels, uint64_t* out);
void bitpack_planar_avx2(const float* x, int channels, size_t pixels, uint64_t* out);
void bitpack_planar_avx512(const float* x, int channels, size_t pixels, uint64_t* out);

}  // namespace xnor

#include <immintrin.h>

#include "kernels/bitpack.h"

namespace xnor {

// 8 floats -> 8 sign bits (x < 0), via an ordered less-than compare so that
// -0.0 packs as +1 like 0.0.
static inline uint32_t negative_mask8(const float* p) {
  __m256 v = _mm256_loadu_ps(p);
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ)));
}

void bitpack_rows_avx2(const float* x, size_t rows, int channels, uint64_t* out) {
  const int words = words_for_bits(channels);
  const int full_words = channels / 64;
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * static_cast<size_t>(channels);
    uint64_t* dst = out + r * static_cast<size_t>(words);
    for (int w = 0; w < full_words; ++w) {
      uint64_t word = 0;
      for (int g = 0; g < 8; ++g) word |= static_cast<uint64_t>(negative_mask8(row + w * 64 + g * 8)) << (g * 8);
      dst[w] = word;
    }
    if (full_words < words) {
      uint64_t word = 0;
      for (int c = full_words * 64; c < channels; ++c)
        word |= static_cast<uint64_t>(row[c] < 0.0f) << (c - full_words * 64);
      dst[full_words] = word;
    }
  }
}

void bitpack_planar_avx2(const float* x, int channels, size_t pixels, uint64_t* out) {
  // Planar input has no contiguous channel run to vectorise over; the scalar
  // loop is memory bound already.
  bitpack_planar_scalar(x, channels, pixels, out);
}

}  // namespace xnor

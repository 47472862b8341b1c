#include "kernels/bitpack.h"

namespace xnor {

void bitpack_rows_scalar(const float* x, size_t rows, int channels, uint64_t* out) {
  const int words = words_for_bits(channels);
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * static_cast<size_t>(channels);
    uint64_t* dst = out + r * static_cast<size_t>(words);
    for (int w = 0; w < words; ++w) {
      uint64_t word = 0;
      const int c_end = channels - w * 64 < 64 ? channels - w * 64 : 64;
      for (int b = 0; b < c_end; ++b) word |= static_cast<uint64_t>(row[w * 64 + b] < 0.0f) << b;
      dst[w] = word;
    }
  }
}

void bitpack_planar_scalar(const float* x, int channels, size_t pixels, uint64_t* out) {
  const int words = words_for_bits(channels);
  for (size_t p = 0; p < pixels * static_cast<size_t>(words); ++p) out[p] = 0;
  for (int c = 0; c < channels; ++c) {
    const float* plane = x + static_cast<size_t>(c) * pixels;
    const uint64_t bit = uint64_t{1} << (c % 64);
    uint64_t* dst = out + c / 64;
    for (size_t p = 0; p < pixels; ++p) {
      if (plane[p] < 0.0f) dst[p * static_cast<size_t>(words)] |= bit;
    }
  }
}

}  // namespace xnor

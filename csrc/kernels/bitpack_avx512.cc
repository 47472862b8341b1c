#include <immintrin.h>

#include "kernels/bitpack.h"

namespace xnor {

void bitpack_rows_avx512(const float* x, size_t rows, int channels, uint64_t* out) {
  const int words = words_for_bits(channels);
  const __m512 zero = _mm512_setzero_ps();
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * static_cast<size_t>(channels);
    uint64_t* dst = out + r * static_cast<size_t>(words);
    for (int w = 0; w < words; ++w) {
      uint64_t word = 0;
      for (int g = 0; g < 4; ++g) {
        const int c0 = w * 64 + g * 16;
        const int n = channels - c0;
        if (n <= 0) break;
        const __mmask16 load = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
        // Masked-off lanes load 0.0, which packs as +1 = bit 0 (pad bits zero).
        __m512 v = _mm512_maskz_loadu_ps(load, row + c0);
        word |= static_cast<uint64_t>(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ)) << (g * 16);
      }
      dst[w] = word;
    }
  }
}

void bitpack_planar_avx512(const float* x, int channels, size_t pixels, uint64_t* out) {
  // Sixteen pixels at a time: one compare per channel gives a 16-bit mask
  // (bit j = pixel j); a bit-matrix transpose via vptestmw turns 64 such masks
  // into sixteen 64-channel words.
  const int words = words_for_bits(channels);
  const __m512 zero = _mm512_setzero_ps();
  alignas(64) uint16_t masks[64];
  size_t p0 = 0;
  for (; p0 + 16 <= pixels; p0 += 16) {
    for (int w = 0; w < words; ++w) {
      const int c_end = channels - w * 64 < 64 ? channels - w * 64 : 64;
      for (int b = 0; b < 64; ++b) {
        masks[b] = b < c_end ? static_cast<uint16_t>(_mm512_cmp_ps_mask(
                                   _mm512_loadu_ps(x + static_cast<size_t>(w * 64 + b) * pixels + p0),
                                   zero, _CMP_LT_OQ))
                             : uint16_t{0};
      }
      const __m512i lo = _mm512_load_si512(masks);
      const __m512i hi = _mm512_load_si512(masks + 32);
      for (int j = 0; j < 16; ++j) {
        const __m512i sel = _mm512_set1_epi16(static_cast<short>(1u << j));
        const uint64_t word = static_cast<uint64_t>(_mm512_test_epi16_mask(lo, sel)) |
                              (static_cast<uint64_t>(_mm512_test_epi16_mask(hi, sel)) << 32);
        out[(p0 + j) * static_cast<size_t>(words) + w] = word;
      }
    }
  }
  if (p0 < pixels) {
    // Tail pixels: pack a strided copy with the scalar kernel's logic.
    for (size_t p = p0; p < pixels; ++p) {
      for (int w = 0; w < words; ++w) {
        uint64_t word = 0;
        const int c_end = channels - w * 64 < 64 ? channels - w * 64 : 64;
        for (int b = 0; b < c_end; ++b)
          word |= static_cast<uint64_t>(x[static_cast<size_t>(w * 64 + b) * pixels + p] < 0.0f) << b;
        out[p * static_cast<size_t>(words) + w] = word;
      }
    }
  }
}

}  // namespace xnor

// Sign and unpack with AVX2 compares and masks, for the avx2 and avx512 builds of bsign.cc: one
// compare + movemask gives the sign bits of 8 channels, where the portable loop sets one bit per
// iteration. Same results bit for bit: the compares are the
// ordered, quiet x < t (x <= t when sign(0) is -1), false for NaN as in the portable loop, and
// -0.0 compares equal to 0.0. Binarizing a float tensor must not cost more than the binary layer
// that reads it (DESIGN.md, the performance contract).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace xnor::XNOR_ISA_NAMESPACE::bsign_x86 {

#if defined(__AVX512F__)
// The bits of 16 channels: one compare straight into a mask register (the predicate of the
// 8-channel compare below).
template <bool kZeroIsMinus>
inline uint64_t below16(const float* x, const float* t) {
  return _mm512_cmp_ps_mask(_mm512_loadu_ps(x), _mm512_loadu_ps(t), kZeroIsMinus ? _CMP_LE_OQ : _CMP_LT_OQ);
}
#endif

// The bits of 8 channels: one compare and a movemask.
template <bool kZeroIsMinus>
inline uint64_t below8(const float* x, const float* t) {
  const __m256 below = _mm256_cmp_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(t), kZeroIsMinus ? _CMP_LE_OQ : _CMP_LT_OQ);
  return static_cast<uint32_t>(_mm256_movemask_ps(below));
}

// Rows of a channel count that is a multiple of G (8 or 16), G channels per compare (below(x, t)):
// a row's bits come in order and never straddle a word, so each word is assembled in a register
// and stored once (no zeroing, no read-modify-write). OR-ing each compare's bits into the word in
// memory chained the compares through store forwarding: about 6 cycles each, 3-5x slower.
template <size_t G, typename Below>
inline void sign_rows_assembled(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,
                                uint64_t* out, Below below) {
  const size_t row_bits = groups * channels;
  const size_t words = (row_bits + 63) / 64;
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * channels;
    uint64_t* __restrict o = out + r * words;
    uint64_t word = 0;
    for (size_t j = 0; j < groups; ++j) {
      const float* __restrict t = thresholds + j * channels;
      for (size_t c = 0; c < channels; c += G) {
        const size_t bit = j * channels + c;
        word |= below(xr + c, t + c) << (bit & 63);
        if ((bit & 63) == 64 - G) {
          o[bit >> 6] = word;
          word = 0;
        }
      }
    }
    if (row_bits % 64 != 0) o[row_bits >> 6] = word;  // the last, partial word (pad bits 0)
  }
}

template <bool kZeroIsMinus>
inline void sign_rows(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,
                      uint64_t* out) {
  const size_t words = (groups * channels + 63) / 64;
#if defined(__AVX512F__)
  if (channels % 16 == 0) {
    sign_rows_assembled<16>(x, rows, channels, thresholds, groups, out,
                            [](const float* v, const float* t) { return below16<kZeroIsMinus>(v, t); });
    return;
  }
#endif
  if (channels % 8 == 0) {
    sign_rows_assembled<8>(x, rows, channels, thresholds, groups, out,
                           [](const float* v, const float* t) { return below8<kZeroIsMinus>(v, t); });
    return;
  }
  const size_t vectorised = channels & ~size_t{7};
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * channels;
    uint64_t* __restrict o = out + r * words;
    for (size_t w = 0; w < words; ++w) o[w] = 0;
    for (size_t j = 0; j < groups; ++j) {
      const float* __restrict t = thresholds + j * channels;
      const size_t base = j * channels;  // bit index of this group's channel 0
      for (size_t c = 0; c < vectorised; c += 8) {
        const uint64_t bits = below8<kZeroIsMinus>(xr + c, t + c);
        const size_t bit = base + c;
        const size_t shift = bit & 63;
        o[bit >> 6] |= bits << shift;
        if (shift > 56) o[(bit >> 6) + 1] |= bits >> (64 - shift);  // the 8 bits straddle two words
      }
      bsign_portable::sign_bits(xr, t, vectorised, channels, base, kZeroIsMinus, o);
    }
  }
}

inline void sign(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,
                 bool zero_is_minus, uint64_t* out) {
  if (zero_is_minus) {
    sign_rows<true>(x, rows, channels, thresholds, groups, out);
  } else {
    sign_rows<false>(x, rows, channels, thresholds, groups, out);
  }
}

inline void unpack(const uint64_t* bits, size_t rows, size_t channels, float* y) {
  const size_t words = (channels + 63) / 64;
  const size_t vectorised = channels & ~size_t{7};
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 plus = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
  for (size_t r = 0; r < rows; ++r) {
    const uint64_t* __restrict b = bits + r * words;
    float* __restrict yr = y + r * channels;
    for (size_t c = 0; c < vectorised; c += 8) {
      const int byte = static_cast<int>((b[c >> 6] >> (c & 63)) & 0xFF);  // c is a multiple of 8
      const __m256i set = _mm256_and_si256(_mm256_set1_epi32(byte), lane_bit);
      const __m256 is_minus = _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane_bit));
      _mm256_storeu_ps(yr + c, _mm256_blendv_ps(plus, minus, is_minus));
    }
    bsign_portable::unpack_range(b, vectorised, channels, yr);
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE::bsign_x86

// AVX2 output stage of a binary GEMM tile: the popcounts of up to kBgemmMr pixels x 32 channels
// (int64, as the tile's VPSADBW sums leave them) -> the block's int32 / float / bit outputs, the
// same values as bgemm_store_pixel_scalar (bconv2d_common.h), 4 or 8 channels per instruction.
// On layers with a short reduction (1x1 convs over 32-128 channels) the scalar stage cost as much
// as the XOR + popcount loop: one int64 -> float conversion per value has no AVX2 instruction.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "microkernels/bconv2d_common.h"

namespace xnor {
inline namespace XNOR_ISA_NAMESPACE {

// Eight int64 values < 2^31 in magnitude (two vectors of 4) -> one vector of 8 int32, in order.
inline __m256i narrow_epi64_to_epi32(__m256i lo, __m256i hi) {
  // Per 128-bit lane, the low dwords of lo then hi: [l0 l1 h0 h1 | l2 l3 h2 h3]; then the 64-bit
  // quarters in the order 0, 2, 1, 3: [l0 l1 l2 l3 h0 h1 h2 h3].
  const __m256 packed = _mm256_shuffle_ps(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi), _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_permute4x64_epi64(_mm256_castps_si256(packed), _MM_SHUFFLE(3, 1, 2, 0));
}

// Lane mask (all ones in lane i when bit i of `bits` is set) for maskstore of 8 int32/float lanes.
inline __m256i lane_mask8(uint32_t bits) {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits & 0xFFu)), lane_bit);
  return _mm256_cmpeq_epi32(set, lane_bit);
}

// The exact sums s = k_bits - 2 * pop - padding correction of tile pixel m, channels [0, 4 * nv4),
// as int64 vectors of 4 channels.
inline void exact_sums_avx2(const BgemmTileArgs& a, int m, const int64_t* pop, int nv4, __m256i* s) {
  const __m256i k = _mm256_set1_epi64x(a.k_bits);
  for (int n = 0; n < nv4; ++n) {
    const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pop + 4 * n));
    s[n] = _mm256_sub_epi64(k, _mm256_slli_epi64(p, 1));
  }
  if (a.tap_weight_sum == nullptr) return;
  const int16_t* taps = a.padded_taps + m * a.taps_stride;
  for (int i = 0; i < a.padded_count[m]; ++i) {
    const int32_t* ws = a.tap_weight_sum + taps[i] * kBconvBlock;
    for (int n = 0; n < nv4; ++n) {
      const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ws + 4 * n));
      s[n] = _mm256_sub_epi64(s[n], _mm256_cvtepi32_epi64(w));
    }
  }
}

// pop[m][c] for m < a.rows and the block's channels -> the block's outputs.
inline void bgemm_store_tile_avx2(const BgemmTileArgs& a, const int64_t (*pop)[kBconvBlock]) {
  const BconvBlockEpilogue& e = *a.epilogue;
  const int channels = block_channels(e);
  // |s| <= k_bits + the padding correction (<= k_bits): int32 holds it below 2^30 bits of reduction;
  // beyond (no real layer), the scalar stage.
  if (a.k_bits >= (int64_t{1} << 30)) {
    for (int m = 0; m < a.rows; ++m) {
      int64_t s[kBconvBlock];
      for (int c = 0; c < channels; ++c) s[c] = a.k_bits - 2 * pop[m][c] - bgemm_padding_correction(a, m, c);
      bgemm_store_pixel_scalar(a, m, s);
    }
    return;
  }
  const int nv4 = (channels + 3) / 4;  // vectors of 4 int64 lanes
  const int nv8 = (channels + 7) / 8;  // vectors of 8 int32 / float lanes
  for (int m = 0; m < a.rows; ++m) {
    const int64_t* p = pop[m];
    if (a.kind == OutputKind::kBits) {
      // bit c = (s < threshold[c]) ^ flip; without padding, the same test on the popcount.
      const bool direct = a.tap_weight_sum == nullptr || a.padded_count[m] == 0;
      uint32_t bits = 0;
      if (direct) {
        for (int n = 0; n < nv4; ++n) {
          const __m256i pv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 4 * n));
          const __m256i t = _mm256_load_si256(reinterpret_cast<const __m256i*>(e.pop_threshold + 4 * n));
          bits |= static_cast<uint32_t>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(pv, t)))) << (4 * n);
        }
      } else {
        __m256i s[kBconvBlock / 4];
        exact_sums_avx2(a, m, p, nv4, s);
        for (int n = 0; n < nv4; ++n) {
          const __m256i t = _mm256_load_si256(reinterpret_cast<const __m256i*>(e.threshold + 4 * n));
          bits |= static_cast<uint32_t>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(t, s[n]))))
                  << (4 * n);
        }
      }
      bits = (bits ^ e.flip) & e.valid_mask;
      std::memcpy(static_cast<uint32_t*>(a.output) + m * a.out_pixel_stride, &bits, sizeof bits);
      continue;
    }
    __m256i s64[kBconvBlock / 4 + 1];
    exact_sums_avx2(a, m, p, nv4, s64);
    if (nv4 % 2 == 1) s64[nv4] = _mm256_setzero_si256();  // the unused upper half of the last 8 lanes
    for (int n = 0; n < nv8; ++n) {
      const __m256i s = narrow_epi64_to_epi32(s64[2 * n], s64[2 * n + 1]);
      const __m256i mask = lane_mask8(e.valid_mask >> (8 * n));
      const bool full = channels - 8 * n >= 8;
      if (a.kind == OutputKind::kInt32) {
        int32_t* out = static_cast<int32_t*>(a.output) + m * a.out_pixel_stride + 8 * n;
        if (full) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), s);
        } else {
          _mm256_maskstore_epi32(out, mask, s);
        }
        continue;
      }
      // fma(multiplier, fl(s), bias), or with a pixel scale K fma(multiplier, fl(fl(s) * K), bias):
      // the float operations of bgemm_store_pixel_scalar, in its order.
      __m256 sf = _mm256_cvtepi32_ps(s);
      if (a.pixel_scale != nullptr) sf = _mm256_mul_ps(sf, _mm256_set1_ps(a.pixel_scale[m]));
      const __m256 y = _mm256_fmadd_ps(_mm256_load_ps(e.multiplier + 8 * n), sf, _mm256_load_ps(e.bias + 8 * n));
      float* out = static_cast<float*>(a.output) + m * a.out_pixel_stride + 8 * n;
      if (full) {
        _mm256_storeu_ps(out, y);
      } else {
        _mm256_maskstore_ps(out, mask, y);
      }
    }
  }
}

}  // namespace XNOR_ISA_NAMESPACE
}  // namespace xnor

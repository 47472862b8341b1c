// AVX-512 VPOPCNTDQ binary GEMM tile: MR pixels x NV vectors of 8 channels
// keep MR*NV 64-bit popcount accumulators in zmm registers (6 x 4 = 24). Each
// K word costs NV weight loads, MR broadcasts, then XOR + VPOPCNTQ + ADD per
// accumulator: the 3-op floor of this instruction mix.
// GCC 12's AVX-512 headers start some intrinsics from an "undefined" register written as
// `__m512i __Y = __Y;`, which -Wmaybe-uninitialized reports once inlined at -O2 (GCC bug
// 105593, fixed in GCC 13). The pragma covers the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <chrono>

#include "microkernels/bconv2d_common.h"

namespace xnor {
namespace {

template <int NV>
__attribute__((always_inline)) inline void store_pixel(const BgemmTileArgs& a, int m, const __m512i (&pop)[NV]) {
  const BconvBlockEpilogue& e = *a.epilogue;
  if (a.kind == OutputKind::kBits && (a.tap_weight_sum == nullptr || a.padded_count[m] == 0)) {
    // No padding correction: compare the popcount directly (one op per vector).
    uint32_t bits = 0;
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n)
      bits |= static_cast<uint32_t>(_mm512_cmpgt_epi64_mask(pop[n], _mm512_load_si512(e.pop_threshold + n * 8)))
              << (8 * n);
    bits = (bits ^ e.flip) & e.valid_mask;
    std::memcpy(static_cast<uint32_t*>(a.output) + m * a.out_pixel_stride, &bits, sizeof bits);
    return;
  }
  const __m512i k = _mm512_set1_epi64(a.k_bits);
  __m512i s[NV];
#pragma GCC unroll 4
  for (int n = 0; n < NV; ++n) s[n] = _mm512_sub_epi64(k, _mm512_slli_epi64(pop[n], 1));
  if (a.tap_weight_sum != nullptr) {
    const int16_t* taps = a.padded_taps + m * a.taps_stride;
    for (int i = 0; i < a.padded_count[m]; ++i) {
      // Unaligned loads: the tap sums are a plain vector (16-byte aligned at best).
      const int32_t* ws = a.tap_weight_sum + taps[i] * kBconvBlock;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n)
        s[n] = _mm512_sub_epi64(
            s[n], _mm512_cvtepi32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + n * 8))));
    }
  }
  switch (a.kind) {
    case OutputKind::kInt32: {
      int32_t* out = static_cast<int32_t*>(a.output) + m * a.out_pixel_stride;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n)
        _mm256_mask_storeu_epi32(out + n * 8, static_cast<__mmask8>(e.valid_mask >> (8 * n)),
                                 _mm512_cvtepi64_epi32(s[n]));
      break;
    }
    case OutputKind::kFloat: {
      float* out = static_cast<float*>(a.output) + m * a.out_pixel_stride;
      // With a pixel scale K: fma(multiplier, fl(s * K), bias), as bgemm_store_pixel_scalar.
      const bool scaled = a.pixel_scale != nullptr;
      const __m256 k_scale = _mm256_set1_ps(scaled ? a.pixel_scale[m] : 1.0f);
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) {
        const __m256 sf = _mm512_cvtepi64_ps(s[n]);
        const __m256 y = _mm256_fmadd_ps(_mm256_load_ps(e.multiplier + n * 8), scaled ? _mm256_mul_ps(sf, k_scale) : sf,
                                         _mm256_load_ps(e.bias + n * 8));
        _mm256_mask_storeu_ps(out + n * 8, static_cast<__mmask8>(e.valid_mask >> (8 * n)), y);
      }
      break;
    }
    case OutputKind::kBits: {
      uint32_t bits = 0;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n)
        bits |= static_cast<uint32_t>(_mm512_cmplt_epi64_mask(s[n], _mm512_load_si512(e.threshold + n * 8))) << (8 * n);
      bits = (bits ^ e.flip) & e.valid_mask;
      std::memcpy(static_cast<uint32_t*>(a.output) + m * a.out_pixel_stride, &bits, sizeof bits);
      break;
    }
  }
}

template <int MR, int NV>
void tile(const BgemmTileArgs& a) {
  __m512i acc[MR][NV];
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) acc[m][n] = _mm512_setzero_si512();
  const uint64_t* base[MR];
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m) base[m] = a.pixel_base[m];
  const uint64_t* w = a.weights;
  const int64_t* k_offset = a.k_offset;
  for (int k = 0; k < a.k_words; ++k, w += a.weight_stride) {
    const int64_t off = k_offset[k];
    __m512i wv[NV];
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) wv[n] = _mm512_load_si512(w + n * 8);
#pragma GCC unroll 6
    for (int m = 0; m < MR; ++m) {
      const __m512i xb = _mm512_set1_epi64(static_cast<int64_t>(base[m][off]));
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n)
        acc[m][n] = _mm512_add_epi64(acc[m][n], _mm512_popcnt_epi64(_mm512_xor_si512(xb, wv[n])));
    }
  }
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m) store_pixel<NV>(a, m, acc[m]);
}

template <int NV>
void tile_rows(const BgemmTileArgs& a) {
  switch (a.rows) {
    case 6: tile<6, NV>(a); break;
    case 5: tile<5, NV>(a); break;
    case 4: tile<4, NV>(a); break;
    case 3: tile<3, NV>(a); break;
    case 2: tile<2, NV>(a); break;
    default: tile<1, NV>(a); break;
  }
}

}  // namespace

void bgemm_tile_avx512(const BgemmTileArgs& a) {
  switch ((a.epilogue->channels + 7) / 8) {
    case 1: tile_rows<1>(a); break;
    case 2: tile_rows<2>(a); break;
    case 3: tile_rows<3>(a); break;
    default: tile_rows<4>(a); break;
  }
}

double bgemm_register_peak_avx512(long iterations) {
  __m512i acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_epi64(i);
  __m512i w0 = _mm512_set1_epi64(0x0123456789abcdefLL), w1 = _mm512_set1_epi64(0x7edcba9876543210LL);
  __m512i w2 = _mm512_set1_epi64(0x00ff00ff00ff00ffLL), w3 = _mm512_set1_epi64(0x0f0f0f0f0f0f0f0fLL);
  __m512i x[6];
  // Distinct patterns 0x55..55 * (i + 1), multiplied unsigned: the signed product overflows (UB).
  for (int i = 0; i < 6; ++i)
    x[i] = _mm512_set1_epi64(static_cast<long long>(0x5555555555555555ULL * static_cast<uint64_t>(i + 1)));
  const auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 6
    for (int m = 0; m < 6; ++m) {
      acc[m * 4 + 0] = _mm512_add_epi64(acc[m * 4 + 0], _mm512_popcnt_epi64(_mm512_xor_si512(x[m], w0)));
      acc[m * 4 + 1] = _mm512_add_epi64(acc[m * 4 + 1], _mm512_popcnt_epi64(_mm512_xor_si512(x[m], w1)));
      acc[m * 4 + 2] = _mm512_add_epi64(acc[m * 4 + 2], _mm512_popcnt_epi64(_mm512_xor_si512(x[m], w2)));
      acc[m * 4 + 3] = _mm512_add_epi64(acc[m * 4 + 3], _mm512_popcnt_epi64(_mm512_xor_si512(x[m], w3)));
    }
    // Keep the operands opaque so the loop is not folded away.
    __asm__ volatile("" : "+v"(w0), "+v"(w1), "+v"(w2), "+v"(w3));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  __m512i sum = acc[0];
  for (int i = 1; i < 24; ++i) sum = _mm512_add_epi64(sum, acc[i]);
  volatile int64_t sink = _mm512_reduce_add_epi64(sum);
  (void)sink;
  return static_cast<double>(iterations) * 24.0 * 512.0 / seconds;
}

}  // namespace xnor

// AVX-512 VPOPCNTDQ binary convolution: a tile of MR output pixels x NV
// vectors of 8 output channels keeps MR*NV 64-bit popcount accumulators in
// zmm registers; each K step is one weight load per vector, one broadcast per
// pixel, then XOR + VPOPCNTQ + ADD per accumulator (the hardware's 3-op floor).
#include <immintrin.h>

#include "kernels/bconv2d_common.h"

namespace xnor {
namespace {

constexpr int kMaxMr = 6;

template <int NV>
inline void store_pixel(const BconvKernelArgs& a, int p, int oh, int ow, __m512i (&pop)[NV]) {
  const BconvBlockEpilogue& e = *a.epilogue;
  const __m512i k = _mm512_set1_epi64(a.k_bits);
  __m512i s[NV];
#pragma GCC unroll 4
  for (int n = 0; n < NV; ++n) s[n] = _mm512_sub_epi64(k, _mm512_slli_epi64(pop[n], 1));
  if (a.tap_weight_sum != nullptr && bconv_pixel_touches_padding(a, oh, ow)) {
    bconv_for_each_padded_tap(a, oh, ow, [&](int t) {
      const int32_t* ws = a.tap_weight_sum + t * kBconvBlock;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n)
        s[n] = _mm512_sub_epi64(s[n], _mm512_cvtepi32_epi64(_mm256_loadu_si256(
                                          reinterpret_cast<const __m256i*>(ws + n * 8))));
    });
  }
  switch (a.kind) {
    case OutputKind::kInt32: {
      int32_t* out = static_cast<int32_t*>(a.output) + p * a.out_pixel_stride;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n)
        _mm256_mask_storeu_epi32(out + n * 8, static_cast<__mmask8>(e.valid_mask >> (8 * n)),
                                 _mm512_cvtepi64_epi32(s[n]));
      break;
    }
    case OutputKind::kFloat: {
      float* out = static_cast<float*>(a.output) + p * a.out_pixel_stride;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) {
        const __m256 y = _mm256_fmadd_ps(_mm256_load_ps(e.multiplier + n * 8), _mm512_cvtepi64_ps(s[n]),
                                         _mm256_load_ps(e.bias + n * 8));
        _mm256_mask_storeu_ps(out + n * 8, static_cast<__mmask8>(e.valid_mask >> (8 * n)), y);
      }
      break;
    }
    case OutputKind::kBits: {
      uint32_t bits = 0;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) {
        const __m512i thr = _mm512_load_si512(e.threshold + n * 8);
        bits |= static_cast<uint32_t>(_mm512_cmplt_epi64_mask(s[n], thr)) << (8 * n);
      }
      static_cast<uint32_t*>(a.output)[p * a.out_pixel_stride] = (bits ^ e.flip) & e.valid_mask;
      break;
    }
  }
}

template <int MR, int NV>
inline void tile(const BconvKernelArgs& a, int p0) {
  __m512i acc[MR][NV];
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) acc[m][n] = _mm512_setzero_si512();
  int oh[MR], ow[MR];
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m) {
    oh[m] = (p0 + m) / a.out_w;
    ow[m] = (p0 + m) % a.out_w;
  }
  const int in_words = a.in_words;
  const uint64_t* w = a.weights;
  for (int ky = 0; ky < a.kernel_h; ++ky) {
    for (int kx = 0; kx < a.kernel_w; ++kx) {
      const uint64_t* rows[MR];
#pragma GCC unroll 6
      for (int m = 0; m < MR; ++m) rows[m] = bconv_tap_row(a, oh[m], ow[m], ky, kx);
      for (int iw = 0; iw < in_words; ++iw, w += kBconvBlock) {
        __m512i wv[NV];
#pragma GCC unroll 4
        for (int n = 0; n < NV; ++n) wv[n] = _mm512_load_si512(w + n * 8);
#pragma GCC unroll 6
        for (int m = 0; m < MR; ++m) {
          const __m512i x = _mm512_set1_epi64(static_cast<int64_t>(rows[m][iw]));
#pragma GCC unroll 4
          for (int n = 0; n < NV; ++n)
            acc[m][n] = _mm512_add_epi64(acc[m][n], _mm512_popcnt_epi64(_mm512_xor_si512(x, wv[n])));
        }
      }
    }
  }
#pragma GCC unroll 6
  for (int m = 0; m < MR; ++m) store_pixel<NV>(a, p0 + m, oh[m], ow[m], acc[m]);
}

template <int NV>
void run_block(const BconvKernelArgs& a) {
  int p = a.pixel_begin;
  for (; p + kMaxMr <= a.pixel_end; p += kMaxMr) tile<kMaxMr, NV>(a, p);
  switch (a.pixel_end - p) {
    case 5: tile<5, NV>(a, p); break;
    case 4: tile<4, NV>(a, p); break;
    case 3: tile<3, NV>(a, p); break;
    case 2: tile<2, NV>(a, p); break;
    case 1: tile<1, NV>(a, p); break;
    default: break;
  }
}

}  // namespace

void bconv_block_avx512(const BconvKernelArgs& a) {
  switch ((a.epilogue->channels + 7) / 8) {
    case 1: run_block<1>(a); break;
    case 2: run_block<2>(a); break;
    case 3: run_block<3>(a); break;
    default: run_block<4>(a); break;
  }
}

}  // namespace xnor

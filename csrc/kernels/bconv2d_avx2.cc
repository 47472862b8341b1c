// AVX2 binary convolution: no vector popcount here, so each 256-bit XOR is
// counted with the nibble-lookup method (two VPSHUFB) and VPSADBW folds the
// byte counts into the four 64-bit lanes of 4 output channels. One output
// pixel at a time, up to 8 vectors (32 channels) of accumulators.
#include <immintrin.h>

#include "kernels/bconv2d_common.h"

namespace xnor {
namespace {

inline __m256i popcount_epi64(__m256i v, __m256i lut, __m256i low_mask) {
  const __m256i lo = _mm256_and_si256(v, low_mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_mask);
  const __m256i bytes = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
  return _mm256_sad_epu8(bytes, _mm256_setzero_si256());
}

template <int NV>
void run_block(const BconvKernelArgs& a) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2,
                                       2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const BconvBlockEpilogue& e = *a.epilogue;
  for (int p = a.pixel_begin; p < a.pixel_end; ++p) {
    const int oh = p / a.out_w;
    const int ow = p % a.out_w;
    __m256i acc[NV];
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) acc[n] = _mm256_setzero_si256();
    const uint64_t* w = a.weights;
    for (int ky = 0; ky < a.kernel_h; ++ky) {
      for (int kx = 0; kx < a.kernel_w; ++kx) {
        const uint64_t* row = bconv_tap_row(a, oh, ow, ky, kx);
        for (int iw = 0; iw < a.in_words; ++iw, w += kBconvBlock) {
          const __m256i x = _mm256_set1_epi64x(static_cast<int64_t>(row[iw]));
#pragma GCC unroll 8
          for (int n = 0; n < NV; ++n) {
            const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + n * 4));
            acc[n] = _mm256_add_epi64(acc[n], popcount_epi64(_mm256_xor_si256(x, wv), lut, low_mask));
          }
        }
      }
    }
    alignas(32) int64_t pop[kBconvBlock];
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) _mm256_store_si256(reinterpret_cast<__m256i*>(pop + n * 4), acc[n]);
    int64_t corr[kBconvBlock] = {0};
    if (a.tap_weight_sum != nullptr && bconv_pixel_touches_padding(a, oh, ow)) {
      bconv_for_each_padded_tap(a, oh, ow, [&](int t) {
        for (int c = 0; c < NV * 4; ++c) corr[c] += a.tap_weight_sum[t * kBconvBlock + c];
      });
    }
    uint32_t bits = 0;
    for (int c = 0; c < e.channels; ++c) {
      const int64_t s = a.k_bits - 2 * pop[c] - corr[c];
      if (a.kind == OutputKind::kBits) {
        bits |= bconv_bit_scalar(e, c, s) << c;
      } else {
        bconv_store_scalar(a, p, c, s);
      }
    }
    if (a.kind == OutputKind::kBits) static_cast<uint32_t*>(a.output)[p * a.out_pixel_stride] = bits;
  }
}

}  // namespace

void bconv_block_avx2(const BconvKernelArgs& a) {
  switch ((a.epilogue->channels + 3) / 4) {
    case 1: run_block<1>(a); break;
    case 2: run_block<2>(a); break;
    case 3: run_block<3>(a); break;
    case 4: run_block<4>(a); break;
    case 5: run_block<5>(a); break;
    case 6: run_block<6>(a); break;
    case 7: run_block<7>(a); break;
    default: run_block<8>(a); break;
  }
}

}  // namespace xnor

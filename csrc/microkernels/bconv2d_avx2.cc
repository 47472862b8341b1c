// AVX2 binary GEMM tile. AVX2 has no vector popcount: each 256-bit XOR is
// counted with the nibble lookup (two VPSHUFB). The byte counts (at most 8 per
// byte per word) add up in bytes over chunks of up to 31 words; one VPSADBW per
// chunk then folds them into four 64-bit lanes (4 output channels), where a
// VPSADBW + 64-bit add per word took 2 of its 9 vector ops. Two pixels x up to
// 4 vectors per half block of 16 channels; a narrow block reads only the
// vectors its channels need (its weight rows are no wider).
#include <immintrin.h>

#include "microkernels/bconv2d_common.h"
#include "microkernels/bconv2d_store_avx2.h"

namespace xnor {
namespace {

// Byte counts of v's nibbles (0..8 per byte).
inline __m256i popcount_epi8(__m256i v, __m256i lut, __m256i low_mask) {
  const __m256i lo = _mm256_and_si256(v, low_mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_mask);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

constexpr int kChunk = 31;  // words per byte-accumulation round: 31 x 8 <= 255

// Pixels [m0, m0 + MR) x channels [16 * half, 16 * half + 4 * NV).
template <int MR, int NV>
void tile_half(const BgemmTileArgs& a, int m0, int half, int64_t (*pop)[kBconvBlock]) {
  const __m256i lut =
      _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i zero = _mm256_setzero_si256();
  const uint64_t* w = a.weights + half * 16;
  for (int k0 = 0; k0 < a.k_words; k0 += kChunk) {
    const int k1 = a.k_words - k0 < kChunk ? a.k_words : k0 + kChunk;
    __m256i acc[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int n = 0; n < NV; ++n) acc[m][n] = zero;
    for (int k = k0; k < k1; ++k, w += a.weight_stride) {
      const int64_t off = a.k_offset[k];
      __m256i wv[NV];
      for (int n = 0; n < NV; ++n) wv[n] = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + n * 4));
      for (int m = 0; m < MR; ++m) {
        const __m256i x = _mm256_set1_epi64x(static_cast<int64_t>(a.pixel_base[m0 + m][off]));
        for (int n = 0; n < NV; ++n)
          acc[m][n] = _mm256_add_epi8(acc[m][n], popcount_epi8(_mm256_xor_si256(x, wv[n]), lut, low_mask));
      }
    }
    // Fold the chunk's byte counts into the 64-bit lanes: the first chunk stores, later ones add.
    for (int m = 0; m < MR; ++m)
      for (int n = 0; n < NV; ++n) {
        __m256i* p = reinterpret_cast<__m256i*>(&pop[m0 + m][half * 16 + n * 4]);
        const __m256i s = _mm256_sad_epu8(acc[m][n], zero);
        _mm256_storeu_si256(p, k0 == 0 ? s : _mm256_add_epi64(_mm256_loadu_si256(p), s));
      }
  }
}

template <int NV>
void half_rows(const BgemmTileArgs& a, int half, int64_t (*pop)[kBconvBlock]) {
  int m = 0;
  for (; m + 2 <= a.rows; m += 2) tile_half<2, NV>(a, m, half, pop);
  if (m < a.rows) tile_half<1, NV>(a, m, half, pop);
}

}  // namespace

void bgemm_tile_avx2(const BgemmTileArgs& a) {
  int64_t pop[kBgemmMr][kBconvBlock];
  const int channels = block_channels(*a.epilogue);
  const int halves = channels > 16 ? 2 : 1;
  for (int half = 0; half < halves; ++half) {
    switch ((channels - 16 * half + 3) / 4) {
      case 1: half_rows<1>(a, half, pop); break;
      case 2: half_rows<2>(a, half, pop); break;
      case 3: half_rows<3>(a, half, pop); break;
      default: half_rows<4>(a, half, pop); break;
    }
  }
  bgemm_store_tile_avx2(a, pop);
}

}  // namespace xnor

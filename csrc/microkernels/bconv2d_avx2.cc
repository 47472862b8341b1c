// AVX2 binary GEMM tile. AVX2 has no vector popcount: each 256-bit XOR is
// counted with the nibble lookup (two VPSHUFB). The byte counts (at most 8 per
// byte per word) add up in bytes over chunks of up to 31 words; one VPSADBW per
// chunk then folds them into four 64-bit lanes (4 output channels), where a
// VPSADBW + 64-bit add per word took 2 of its 9 vector ops. Two pixels x up to
// 4 vectors per half block of 16 channels; a narrow block reads only the
// vectors its channels need (its weight rows are no wider).
#include <immintrin.h>

#include <cstring>

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

// Byte counts of pixels [m0, m0 + MR) x the 4 * NV channels whose word-k0 row starts at w, over
// words [k0, k1) (at most kChunk), into acc.
template <int MR, int NV>
__attribute__((always_inline)) inline void count_chunk(const BgemmTileArgs& a, int m0, int k0, int k1,
                                                       const uint64_t* w, __m256i (&acc)[MR][NV]) {
  const __m256i lut =
      _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NV; ++n) acc[m][n] = _mm256_setzero_si256();
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
}

// Pixels [m0, m0 + MR) x channels [16 * half, 16 * half + 4 * NV).
template <int MR, int NV>
void tile_half(const BgemmTileArgs& a, int m0, int half, int64_t (*pop)[kBconvBlock]) {
  const __m256i zero = _mm256_setzero_si256();
  for (int k0 = 0; k0 < a.k_words; k0 += kChunk) {
    const int k1 = a.k_words - k0 < kChunk ? a.k_words : k0 + kChunk;
    __m256i acc[MR][NV];
    count_chunk<MR, NV>(a, m0, k0, k1, a.weights + half * 16 + k0 * a.weight_stride, acc);
    // Fold the chunk's byte counts into the 64-bit lanes: the first chunk stores, later ones add.
    for (int m = 0; m < MR; ++m)
      for (int n = 0; n < NV; ++n) {
        __m256i* p = reinterpret_cast<__m256i*>(&pop[m0 + m][half * 16 + n * 4]);
        const __m256i s = _mm256_sad_epu8(acc[m][n], zero);
        _mm256_storeu_si256(p, k0 == 0 ? s : _mm256_add_epi64(_mm256_loadu_si256(p), s));
      }
  }
}

// The same tile for a reduction of one chunk (k_words <= kChunk) and pixels without padding
// correction or pixel scale, with float or bit output: the counts go from registers straight to
// the output, the operations of bgemm_store_tile_avx2 in its order (so the same bytes), without
// the popcount round trip through memory and a second pass over the tile. On short reductions
// (1x1 convs over 32-512 channels, grouped 3x3 convs over 16-32) that pass cost about as much as
// the popcounts.
template <int MR, int NV>
void tile_half_direct(const BgemmTileArgs& a, int m0, int half, int halves) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[MR][NV];
  count_chunk<MR, NV>(a, m0, 0, a.k_words, a.weights + half * 16, acc);
  const BconvBlockEpilogue& e = *a.epilogue;
  const int c0 = 16 * half;  // the half's first channel in the block
  for (int m = 0; m < MR; ++m) {
    __m256i pop[NV + 1];
    for (int n = 0; n < NV; ++n) pop[n] = _mm256_sad_epu8(acc[m][n], zero);
    if (a.kind == OutputKind::kBits) {
      uint32_t bits = 0;
      for (int n = 0; n < NV; ++n) {
        const __m256i t = _mm256_load_si256(reinterpret_cast<const __m256i*>(e.pop_threshold + c0 + 4 * n));
        bits |= static_cast<uint32_t>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(pop[n], t))))
                << (4 * n);
      }
      bits = ((bits << c0) ^ e.flip) & e.valid_mask & (0xFFFFu << c0);
      uint32_t* out = static_cast<uint32_t*>(a.output) + (m0 + m) * a.out_pixel_stride;
      if (halves == 1) {
        std::memcpy(out, &bits, sizeof bits);  // the block's only half: no upper channels, zero bits
      } else {
        const uint16_t part = static_cast<uint16_t>(bits >> c0);
        std::memcpy(reinterpret_cast<uint16_t*>(out) + half, &part, sizeof part);  // little-endian halves
      }
      continue;
    }
    const __m256i k = _mm256_set1_epi64x(a.k_bits);
    for (int n = 0; n < NV; ++n) pop[n] = _mm256_sub_epi64(k, _mm256_slli_epi64(pop[n], 1));
    if (NV % 2 == 1) pop[NV] = _mm256_setzero_si256();
    float* out = static_cast<float*>(a.output) + (m0 + m) * a.out_pixel_stride + c0;
    for (int g = 0; 2 * g < NV; ++g) {
      const __m256 sf = _mm256_cvtepi32_ps(narrow_epi64_to_epi32(pop[2 * g], pop[2 * g + 1]));
      const __m256 y =
          _mm256_fmadd_ps(_mm256_load_ps(e.multiplier + c0 + 8 * g), sf, _mm256_load_ps(e.bias + c0 + 8 * g));
      if (e.channels - (c0 + 8 * g) >= 8) {
        _mm256_storeu_ps(out + 8 * g, y);
      } else {
        _mm256_maskstore_ps(out + 8 * g, lane_mask8(e.valid_mask >> (c0 + 8 * g)), y);
      }
    }
  }
}

template <int NV>
void half_rows(const BgemmTileArgs& a, int half, int64_t (*pop)[kBconvBlock]) {
  int m = 0;
  for (; m + 2 <= a.rows; m += 2) tile_half<2, NV>(a, m, half, pop);
  if (m < a.rows) tile_half<1, NV>(a, m, half, pop);
}

template <int NV>
void half_rows_direct(const BgemmTileArgs& a, int half, int halves) {
  int m = 0;
  for (; m + 2 <= a.rows; m += 2) tile_half_direct<2, NV>(a, m, half, halves);
  if (m < a.rows) tile_half_direct<1, NV>(a, m, half, halves);
}

}  // namespace

void bgemm_tile_avx2(const BgemmTileArgs& a) {
  const int channels = block_channels(*a.epilogue);
  const int halves = channels > 16 ? 2 : 1;
  if (a.k_words <= kChunk && a.tap_weight_sum == nullptr && a.pixel_scale == nullptr && a.kind != OutputKind::kInt32) {
    for (int half = 0; half < halves; ++half) {
      switch ((channels - 16 * half + 3) / 4) {
        case 1: half_rows_direct<1>(a, half, halves); break;
        case 2: half_rows_direct<2>(a, half, halves); break;
        case 3: half_rows_direct<3>(a, half, halves); break;
        default: half_rows_direct<4>(a, half, halves); break;
      }
    }
    return;
  }
  int64_t pop[kBgemmMr][kBconvBlock];
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

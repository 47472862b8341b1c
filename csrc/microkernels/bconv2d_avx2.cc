// AVX2 binary GEMM tile. AVX2 has no vector popcount: each 256-bit XOR is
// counted with the nibble lookup (VPSHUFB of a 16-entry table). Two things
// make the inner loop 6 vector ops per 256 binary MACs (the nibble lookup
// with a VPSADBW per word took 9-10):
//  - XOR commutes with the nibble split: (x ^ w) & 0x0F = (x & 0x0F) ^ (w & 0x0F),
//    likewise for the high nibble. The split is done once per K chunk, for the
//    weights with vector ops (shared by all tile pixels) and for the
//    activations with scalar ops on the integer pipes; the inner loop is then
//    2 x (XOR with the split weights in memory, VPSHUFB, byte add).
//  - Byte counts: a word adds at most 4 + 4 = 8 to a byte, so 31 words fit in
//    the unsigned byte accumulators; a chunk of 31 words ends with one VPSADBW
//    per accumulator, folding its bytes into the 64-bit lane of its channel.
// Register blocking: 3 pixels x 4 vectors of 4 channels (12 accumulators +
// the table + 2 activation broadcasts + a temporary), iterated over the tile.
// The output stage is bgemm_store_tile_avx2 (bconv2d_store_avx2.h).
#include <immintrin.h>

#include "microkernels/bconv2d_common.h"
#include "microkernels/bconv2d_store_avx2.h"

namespace xnor {
namespace {

constexpr int kChunk = 31;   // K words per byte-accumulation round (31 x 8 <= 255)
constexpr int kVectors = 8;  // 4-channel vectors in a block of 32 channels
constexpr int kMr = 3;       // pixels per register block
constexpr int kNv = 4;       // vectors per register block
constexpr uint64_t kLowNibbles = 0x0F0F0F0F0F0F0F0FULL;

// One K chunk, split into nibbles, and the popcounts of the whole tile.
struct Scratch {
  __m256i w[kChunk][kVectors][2];   // weights: [k][vector][low, high nibbles]
  uint64_t x[kBgemmMr][kChunk][2];  // activations: [pixel][k][low, high nibbles]
  alignas(32) int64_t pop[kBgemmMr][kBconvBlock];
};

inline __m256i nibble_lut() {
  return _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3,
                          4);
}

// pop[0, 4) (+)= the byte counts of acc summed per 64-bit lane (VPSADBW against zero).
inline void flush(int64_t* pop, __m256i acc, bool first) {
  __m256i* p = reinterpret_cast<__m256i*>(pop);
  const __m256i sum = _mm256_sad_epu8(acc, _mm256_setzero_si256());
  _mm256_store_si256(p, first ? sum : _mm256_add_epi64(_mm256_load_si256(p), sum));
}

// One step of the 3 x 4 block below: accumulator A += lookup(x ^ w) for the low and the
// high nibbles of weight vector N of the k row at %[w]. ymm13, ymm14: the pixel's broadcast
// low and high nibbles; ymm15: the temporary.
// clang-format off
#define XNOR_BGEMM_STEP(N, A)                          \
  "vpxor " #N "*64(%[w]), %%ymm13, %%ymm15\n\t"       \
  "vpshufb %%ymm15, %[lut], %%ymm15\n\t"              \
  "vpaddb %%ymm15, %[" #A "], %[" #A "]\n\t"          \
  "vpxor " #N "*64+32(%[w]), %%ymm14, %%ymm15\n\t"    \
  "vpshufb %%ymm15, %[lut], %%ymm15\n\t"              \
  "vpaddb %%ymm15, %[" #A "], %[" #A "]\n\t"
// Pixel M of the block (its split words at %[x] + M * 496, the row stride of Scratch::x).
#define XNOR_BGEMM_PIXEL(M, A0, A1, A2, A3)            \
  "vpbroadcastq " #M "*496(%[x]), %%ymm13\n\t"        \
  "vpbroadcastq " #M "*496+8(%[x]), %%ymm14\n\t"      \
  XNOR_BGEMM_STEP(0, A0) XNOR_BGEMM_STEP(1, A1) XNOR_BGEMM_STEP(2, A2) XNOR_BGEMM_STEP(3, A3)
// clang-format on

// The 3 pixel x 4 vector block, all of the chunk, in registers: 12 accumulators, the table,
// two broadcasts and one temporary are the 16 ymm registers. Written in assembly because
// GCC spills accumulators of the same loop written with intrinsics (2x slower).
// The offsets in the assembly: a pixel's row of s.x, a k row of s.w.
static_assert(sizeof(Scratch::x[0]) == 496 && sizeof(Scratch::w[0]) == 512, "update the offsets in block_3x4");
void block_3x4(Scratch& s, int m0, int n0, int kc, bool first) {
  const __m256i lut = nibble_lut();
  __m256i a00 = _mm256_setzero_si256(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
          a20 = a00, a21 = a00, a22 = a00, a23 = a00;
  const __m256i* w = s.w[0][n0];
  // Where w stops: kc rows on, inside the Scratch object (s.x follows s.w).
  const char* const w_end = reinterpret_cast<const char*>(w) + static_cast<size_t>(kc) * sizeof(s.w[0]);
  const uint64_t* x = s.x[m0][0];
  // clang-format off
  asm("1:\n\t"
      XNOR_BGEMM_PIXEL(0, a00, a01, a02, a03)
      XNOR_BGEMM_PIXEL(1, a10, a11, a12, a13)
      XNOR_BGEMM_PIXEL(2, a20, a21, a22, a23)
      "add $512, %[w]\n\t"  // next k row of Scratch::w
      "add $16, %[x]\n\t"   // next k of Scratch::x
      "cmp %[w_end], %[w]\n\t"
      "jne 1b\n\t"
      : [a00] "+x"(a00), [a01] "+x"(a01), [a02] "+x"(a02), [a03] "+x"(a03),
        [a10] "+x"(a10), [a11] "+x"(a11), [a12] "+x"(a12), [a13] "+x"(a13),
        [a20] "+x"(a20), [a21] "+x"(a21), [a22] "+x"(a22), [a23] "+x"(a23),
        [w] "+r"(w), [x] "+r"(x)
      : [lut] "x"(lut), [w_end] "r"(w_end)
      : "memory", "cc", "xmm13", "xmm14", "xmm15");
  // clang-format on
  const __m256i acc[3][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}};
  for (int m = 0; m < 3; ++m)
    for (int n = 0; n < 4; ++n) flush(&s.pop[m0 + m][4 * (n0 + n)], acc[m][n], first);
}
#undef XNOR_BGEMM_PIXEL
#undef XNOR_BGEMM_STEP

// pop[m0 + m][4 * (n0 + n) + lane] += popcounts of chunk words [0, kc) for an MR x NV block.
template <int MR, int NV>
void block(Scratch& s, int m0, int n0, int kc, bool first) {
  if constexpr (MR == 3 && NV == 4) {
    block_3x4(s, m0, n0, kc, first);
    return;
  }
  const __m256i lut = nibble_lut();
  __m256i acc[MR][NV];
#pragma GCC unroll 3
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) acc[m][n] = _mm256_setzero_si256();
  for (int k = 0; k < kc; ++k) {
#pragma GCC unroll 3
    for (int m = 0; m < MR; ++m) {
      const __m256i xl = _mm256_set1_epi64x(static_cast<int64_t>(s.x[m0 + m][k][0]));
      const __m256i xh = _mm256_set1_epi64x(static_cast<int64_t>(s.x[m0 + m][k][1]));
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) {
        const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_xor_si256(xl, s.w[k][n0 + n][0]));
        const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_xor_si256(xh, s.w[k][n0 + n][1]));
        acc[m][n] = _mm256_add_epi8(_mm256_add_epi8(acc[m][n], lo), hi);
      }
    }
  }
#pragma GCC unroll 3
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) flush(&s.pop[m0 + m][4 * (n0 + n)], acc[m][n], first);
}

template <int MR>
void block_rows(Scratch& s, int m0, int vectors, int kc, bool first) {
  int n0 = 0;
  for (; n0 + kNv <= vectors; n0 += kNv) block<MR, kNv>(s, m0, n0, kc, first);
  switch (vectors - n0) {
    case 1: block<MR, 1>(s, m0, n0, kc, first); break;
    case 2: block<MR, 2>(s, m0, n0, kc, first); break;
    case 3: block<MR, 3>(s, m0, n0, kc, first); break;
    default: break;
  }
}

}  // namespace

void bgemm_tile_avx2(const BgemmTileArgs& a) {
  Scratch s;
  // The weight rows hold whole 8-channel groups; the output stage reads channels [0, 4 * vectors).
  const int vectors = (block_channels(*a.epilogue) + 3) / 4;
  for (int k0 = 0; k0 < a.k_words; k0 += kChunk) {
    const int kc = a.k_words - k0 < kChunk ? a.k_words - k0 : kChunk;
    const __m256i low = _mm256_set1_epi8(0x0F);
    const uint64_t* w = a.weights + k0 * a.weight_stride;
    for (int k = 0; k < kc; ++k, w += a.weight_stride) {
      for (int n = 0; n < vectors; ++n) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 4 * n));
        s.w[k][n][0] = _mm256_and_si256(v, low);
        s.w[k][n][1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
      }
    }
    for (int m = 0; m < a.rows; ++m) {
      const uint64_t* px = a.pixel_base[m];
      for (int k = 0; k < kc; ++k) {
        const uint64_t x = px[a.k_offset[k0 + k]];
        s.x[m][k][0] = x & kLowNibbles;
        s.x[m][k][1] = (x >> 4) & kLowNibbles;
      }
    }
    int m0 = 0;
    const bool first = k0 == 0;  // the chunk's counts are stored, not added
    for (; m0 + kMr <= a.rows; m0 += kMr) block_rows<kMr>(s, m0, vectors, kc, first);
    switch (a.rows - m0) {
      case 1: block_rows<1>(s, m0, vectors, kc, first); break;
      case 2: block_rows<2>(s, m0, vectors, kc, first); break;
      default: break;
    }
  }
  bgemm_store_tile_avx2(a, s.pop);
}

}  // namespace xnor

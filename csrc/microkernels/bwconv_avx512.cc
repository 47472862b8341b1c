// bwconv row, AVX-512: 64 output channels (one weight word) at a time, four 16-lane blocks, each
// with a positive and a negative accumulator; the weight bits are the masks of masked adds (bits
// 16j..16j+15 of a little-endian weight word are its j-th 16-bit mask).
#include <immintrin.h>

#include "microkernels/bwconv.h"

namespace xnor {
namespace {

// A 16-bit view of the weight words (may_alias: reading uint64_t storage through it is defined).
typedef uint16_t __attribute__((__may_alias__)) AliasU16;

// Bits 16j..16j+15 of the little-endian word at `word`, loaded straight into a mask register
// (kmovw k, m16: a load-port uop; compilers otherwise load a GPR and move it over port 5, which the
// masked adds need).
inline __mmask16 mask_at(const uint64_t* word, int j) {
  __mmask16 k;
  asm("kmovw %1, %0" : "=k"(k) : "m"(reinterpret_cast<const AliasU16*>(word)[j]));
  return k;
}

}  // namespace

void bwconv_row_avx512(const float* image, const uint64_t* pos, const uint64_t* neg, const float* scale_pos,
                       const float* scale_neg, const float* bias, const BwconvGeometry& g, int64_t oy, float* out) {
  for (int64_t ox = 0; ox < g.out_w; ++ox) {
    for (int64_t w = 0; w < g.o_words; ++w) {
      __m512 p0 = _mm512_setzero_ps(), p1 = p0, p2 = p0, p3 = p0;
      __m512 n0 = p0, n1 = p0, n2 = p0, n3 = p0;
      for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        if (iy < 0 || iy >= g.in_h) continue;
        for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (ix < 0 || ix >= g.in_w) continue;
          const float* x = image + (iy * g.in_w + ix) * g.in_c;
          const int64_t row = (ky * g.kernel_w + kx) * g.in_c;
          const uint64_t* pw = pos + row * g.o_words + w;
          const uint64_t* nw = neg + row * g.o_words + w;
          for (int64_t c = 0; c < g.in_c; ++c) {
            const __m512 v = _mm512_set1_ps(x[c]);
            // The masks load straight into mask registers (kmovw k, m16: no port-5 move from a GPR).
            const uint64_t* mp = pw + c * g.o_words;
            const uint64_t* mn = nw + c * g.o_words;
            p0 = _mm512_mask_add_ps(p0, mask_at(mp, 0), p0, v);
            p1 = _mm512_mask_add_ps(p1, mask_at(mp, 1), p1, v);
            p2 = _mm512_mask_add_ps(p2, mask_at(mp, 2), p2, v);
            p3 = _mm512_mask_add_ps(p3, mask_at(mp, 3), p3, v);
            n0 = _mm512_mask_add_ps(n0, mask_at(mn, 0), n0, v);
            n1 = _mm512_mask_add_ps(n1, mask_at(mn, 1), n1, v);
            n2 = _mm512_mask_add_ps(n2, mask_at(mn, 2), n2, v);
            n3 = _mm512_mask_add_ps(n3, mask_at(mn, 3), n3, v);
          }
        }
      }
      const __m512 ps[4] = {p0, p1, p2, p3}, ns[4] = {n0, n1, n2, n3};
      for (int64_t b = 0; b < 4; ++b) {
        const int64_t o = w * 64 + b * 16;
        if (o >= g.out_c) break;
        const int64_t live = g.out_c - o < 16 ? g.out_c - o : 16;
        const __mmask16 k = static_cast<__mmask16>((1u << live) - 1u);
        const __m512 sp = _mm512_maskz_loadu_ps(k, scale_pos + o), sn = _mm512_maskz_loadu_ps(k, scale_neg + o);
        const __m512 bb = _mm512_maskz_loadu_ps(k, bias + o);
        const __m512 y = _mm512_fmadd_ps(sp, ps[b], _mm512_fnmadd_ps(sn, ns[b], bb));
        _mm512_mask_storeu_ps(out + ox * g.out_c + o, k, y);
      }
    }
  }
}

}  // namespace xnor

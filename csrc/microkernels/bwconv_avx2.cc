// bwconv row, AVX2: 32 output channels at a time (four 8-lane blocks, each with a positive and a
// negative accumulator); a weight byte selects its lanes through a 256-entry table of lane masks,
// and x AND mask adds +0 in the lanes that are off (the same sums as skipping them, bwconv.h).
#include <immintrin.h>

#include <array>

#include "microkernels/bwconv.h"

namespace xnor {
namespace {

struct LaneMasks {
  alignas(32) std::array<std::array<uint32_t, 8>, 256> m;
};

constexpr LaneMasks make_lane_masks() {
  LaneMasks t{};
  for (int b = 0; b < 256; ++b) {
    for (int l = 0; l < 8; ++l) t.m[b][l] = (b >> l) & 1 ? 0xFFFFFFFFu : 0u;
  }
  return t;
}

constexpr LaneMasks kLaneMasks = make_lane_masks();

inline __m256 lanes(uint64_t word, int shift) {
  const auto* row = kLaneMasks.m[(word >> shift) & 0xFF].data();
  return _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(row)));
}

}  // namespace

void bwconv_row_avx2(const float* image, const uint64_t* pos, const uint64_t* neg, const float* scale_pos,
                     const float* scale_neg, const float* bias, const BwconvGeometry& g, int64_t oy, float* out) {
  for (int64_t ox = 0; ox < g.out_w; ++ox) {
    for (int64_t o0 = 0; o0 < g.out_c; o0 += 32) {
      const int64_t w = o0 / 64;
      const int shift = static_cast<int>(o0 % 64);
      __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0;
      __m256 n0 = p0, n1 = p0, n2 = p0, n3 = p0;
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
            const __m256 v = _mm256_set1_ps(x[c]);
            const uint64_t mp = pw[c * g.o_words], mn = nw[c * g.o_words];
            p0 = _mm256_add_ps(p0, _mm256_and_ps(v, lanes(mp, shift)));
            p1 = _mm256_add_ps(p1, _mm256_and_ps(v, lanes(mp, shift + 8)));
            p2 = _mm256_add_ps(p2, _mm256_and_ps(v, lanes(mp, shift + 16)));
            p3 = _mm256_add_ps(p3, _mm256_and_ps(v, lanes(mp, shift + 24)));
            n0 = _mm256_add_ps(n0, _mm256_and_ps(v, lanes(mn, shift)));
            n1 = _mm256_add_ps(n1, _mm256_and_ps(v, lanes(mn, shift + 8)));
            n2 = _mm256_add_ps(n2, _mm256_and_ps(v, lanes(mn, shift + 16)));
            n3 = _mm256_add_ps(n3, _mm256_and_ps(v, lanes(mn, shift + 24)));
          }
        }
      }
      const __m256 ps[4] = {p0, p1, p2, p3}, ns[4] = {n0, n1, n2, n3};
      for (int64_t b = 0; b < 4; ++b) {
        const int64_t o = o0 + b * 8;
        if (o >= g.out_c) break;
        float* dst = out + ox * g.out_c + o;
        if (g.out_c - o >= 8) {
          const __m256 y =
              _mm256_fmadd_ps(_mm256_loadu_ps(scale_pos + o), ps[b],
                              _mm256_fnmadd_ps(_mm256_loadu_ps(scale_neg + o), ns[b], _mm256_loadu_ps(bias + o)));
          _mm256_storeu_ps(dst, y);
        } else {  // the last channels: the same fma per lane, done on one lane at a time
          alignas(32) float pv[8], nv[8];
          _mm256_store_ps(pv, ps[b]);
          _mm256_store_ps(nv, ns[b]);
          for (int64_t l = 0; l < g.out_c - o; ++l) {
            const __m128 sp = _mm_set_ss(scale_pos[o + l]), sn = _mm_set_ss(scale_neg[o + l]);
            const __m128 t = _mm_fnmadd_ss(sn, _mm_set_ss(nv[l]), _mm_set_ss(bias[o + l]));
            dst[l] = _mm_cvtss_f32(_mm_fmadd_ss(sp, _mm_set_ss(pv[l]), t));
          }
        }
      }
    }
  }
}

}  // namespace xnor

// The ternary-weight binary conv row (tbconv.h), written once and compiled per ISA (per_isa.h):
// integer popcounts, so the ISA flags change the speed only.
#include "microkernels/tbconv.h"

#include <cmath>

#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE {

inline void tbconv_row(const uint64_t* image, const uint64_t* plus, const uint64_t* minus, const int32_t* count_plus,
                       const int32_t* count_minus, const float* scale_pos, const float* scale_neg, const float* bias,
                       const TbconvGeometry& g, int64_t oy, float* out) {
  const int64_t taps = g.kernel_h * g.kernel_w;
  for (int64_t ox = 0; ox < g.out_w; ++ox) {
    for (int64_t o = 0; o < g.out_c; ++o) {
      int64_t p = 0, n = 0;
      for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        if (iy < 0 || iy >= g.in_h) continue;
        for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (ix < 0 || ix >= g.in_w) continue;
          const int64_t t = ky * g.kernel_w + kx;
          const uint64_t* __restrict x = image + (iy * g.in_w + ix) * g.words;
          const uint64_t* __restrict wp = plus + (o * taps + t) * g.words;
          const uint64_t* __restrict wn = minus + (o * taps + t) * g.words;
          int64_t dp = 0, dn = 0;
          for (int64_t w = 0; w < g.words; ++w) {
            dp += __builtin_popcountll(wp[w] & x[w]);
            dn += __builtin_popcountll(wn[w] & x[w]);
          }
          p += count_plus[o * taps + t] - 2 * dp;
          n += count_minus[o * taps + t] - 2 * dn;
        }
      }
      out[ox * g.out_c + o] =
          std::fma(scale_pos[o], static_cast<float>(p), std::fma(-scale_neg[o], static_cast<float>(n), bias[o]));
    }
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_TBCONV_KERNEL(isa)                                                                                 \
  void tbconv_row_##isa(const uint64_t* image, const uint64_t* plus, const uint64_t* minus, const int32_t* count_plus, \
                        const int32_t* count_minus, const float* scale_pos, const float* scale_neg, const float* bias, \
                        const TbconvGeometry& g, int64_t oy, float* out) {                                             \
    isa::tbconv_row(image, plus, minus, count_plus, count_minus, scale_pos, scale_neg, bias, g, oy, out);              \
  }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_TBCONV_KERNEL)
}  // namespace xnor

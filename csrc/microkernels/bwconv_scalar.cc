// bwconv row, scalar: one output channel at a time (the summation order of bwconv.h).
#include <cmath>

#include "microkernels/bwconv.h"

namespace xnor {

void bwconv_row_scalar(const float* image, const uint64_t* pos, const uint64_t* neg, const float* scale_pos,
                       const float* scale_neg, const float* bias, const BwconvGeometry& g, int64_t oy, float* out) {
  for (int64_t ox = 0; ox < g.out_w; ++ox) {
    for (int64_t o = 0; o < g.out_c; ++o) {
      const int64_t w = o / 64;
      const uint64_t bit = uint64_t{1} << (o % 64);
      float p = 0.0f, n = 0.0f;
      for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        if (iy < 0 || iy >= g.in_h) continue;
        for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (ix < 0 || ix >= g.in_w) continue;
          const float* x = image + (iy * g.in_w + ix) * g.in_c;
          const int64_t row = (ky * g.kernel_w + kx) * g.in_c;
          for (int64_t c = 0; c < g.in_c; ++c) {
            if (pos[(row + c) * g.o_words + w] & bit) p += x[c];
            if (neg[(row + c) * g.o_words + w] & bit) n += x[c];
          }
        }
      }
      out[ox * g.out_c + o] = std::fma(scale_pos[o], p, std::fma(-scale_neg[o], n, bias[o]));
    }
  }
}

}  // namespace xnor

// The ternary-weight binary conv row (tbconv.h), written once and compiled per ISA (per_isa.h):
// integer popcounts, so the ISA flags change the speed only.
#include "microkernels/tbconv.h"

#include <cmath>

#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE {

constexpr int64_t kBlock = 64;  // output channels per block of int64 accumulators (on the stack)

inline void tbconv_row(const uint64_t* image, const uint64_t* plus, const uint64_t* minus, const int32_t* count_plus,
                       const int32_t* count_minus, const float* scale_pos, const float* scale_neg, const float* bias,
                       const TbconvEpilogue& epi, const TbconvGeometry& g, int64_t oy, void* out) {
  const int64_t oc = g.out_c, out_words = (oc + kBlock - 1) / kBlock;
  for (int64_t ox = 0; ox < g.out_w; ++ox) {
    for (int64_t o0 = 0; o0 < oc; o0 += kBlock) {
      const int64_t nb = oc - o0 < kBlock ? oc - o0 : kBlock;
      int64_t p[kBlock] = {}, n[kBlock] = {};
      for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
        const int64_t iy = oy * g.stride_h - g.pad_h + ky;
        if (iy < 0 || iy >= g.in_h) continue;
        for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
          const int64_t ix = ox * g.stride_w - g.pad_w + kx;
          if (ix < 0 || ix >= g.in_w) continue;
          const int64_t t = ky * g.kernel_w + kx;
          const int32_t* __restrict cp = count_plus + t * oc + o0;
          const int32_t* __restrict cn = count_minus + t * oc + o0;
          for (int64_t b = 0; b < nb; ++b) {
            p[b] += cp[b];
            n[b] += cn[b];
          }
          const uint64_t* x = image + (iy * g.in_w + ix) * g.words;
          for (int64_t w = 0; w < g.words; ++w) {
            const uint64_t xw = x[w];
            const uint64_t* __restrict wp = plus + (t * g.words + w) * oc + o0;
            const uint64_t* __restrict wn = minus + (t * g.words + w) * oc + o0;
            for (int64_t b = 0; b < nb; ++b) {
              p[b] -= 2 * static_cast<int64_t>(__builtin_popcountll(wp[b] & xw));
              n[b] -= 2 * static_cast<int64_t>(__builtin_popcountll(wn[b] & xw));
            }
          }
        }
      }
      if (epi.kind == TbconvOutput::kFloat) {
        float* dst = static_cast<float*>(out) + ox * oc + o0;
        for (int64_t b = 0; b < nb; ++b) {
          dst[b] = std::fma(scale_pos[o0 + b], static_cast<float>(p[b]),
                            std::fma(-scale_neg[o0 + b], static_cast<float>(n[b]), bias[o0 + b]));
        }
        continue;
      }
      // One block of kBlock = 64 channels is one output word.
      uint64_t word = 0;
      if (epi.kind == TbconvOutput::kIntSign) {
        for (int64_t b = 0; b < nb; ++b) {
          const bool below = p[b] - n[b] < static_cast<int64_t>(epi.threshold[o0 + b]);
          word |= static_cast<uint64_t>(below != (epi.flip[o0 + b] != 0)) << b;
        }
      } else {
        float z[kBlock];  // the float output, then the affine: a loop that vectorises, then the compare
        for (int64_t b = 0; b < nb; ++b) {
          const int64_t o = o0 + b;
          const float y = std::fma(scale_pos[o], static_cast<float>(p[b]),
                                   std::fma(-scale_neg[o], static_cast<float>(n[b]), bias[o]));
          z[b] = std::fma(y, epi.post_scale[o], epi.post_shift[o]);
        }
        const float* t = epi.sign_threshold + o0;
        for (int64_t b = 0; b < nb; ++b) {
          const bool minus = epi.zero_is_minus ? (z[b] <= t[b]) : (z[b] < t[b]);
          word |= static_cast<uint64_t>(minus) << b;
        }
      }
      static_cast<uint64_t*>(out)[ox * out_words + o0 / kBlock] = word;
    }
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_TBCONV_KERNEL(isa)                                                                                 \
  void tbconv_row_##isa(const uint64_t* image, const uint64_t* plus, const uint64_t* minus, const int32_t* count_plus, \
                        const int32_t* count_minus, const float* scale_pos, const float* scale_neg, const float* bias, \
                        const TbconvEpilogue& epi, const TbconvGeometry& g, int64_t oy, void* out) {                   \
    isa::tbconv_row(image, plus, minus, count_plus, count_minus, scale_pos, scale_neg, bias, epi, g, oy, out);         \
  }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_TBCONV_KERNEL)
}  // namespace xnor

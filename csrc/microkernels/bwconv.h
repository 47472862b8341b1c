// Binary-weight convolution (BWN) and ternary-weight convolution (TTQ) on float NHWC activations.
// A weight is +, - or 0 (ternary only); its bits select whether x joins the positive or the negative
// sum, so no product is rounded. Per output channel o:
//   P = sum of x over the + weights, N = sum of x over the - weights, each accumulated from +0 in
//   the order (ky, kx, c) with padded taps skipped;
//   y = fma(scale_pos[o], P, fma(-scale_neg[o], N, bias[o])).
// Every ISA path vectorises across output channels only (a lane per channel, the same adds in the
// same order), so every path gives the same bits. A lane whose weight bit is off adds +0, which is
// the same as skipping it: a sum that starts at +0 is never -0 under round-to-nearest.
#pragma once

#include <cstdint>

namespace xnor {

struct BwconvGeometry {
  int64_t in_h, in_w, in_c;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t out_w, out_c;
  int64_t o_words;  // ceil(out_c / 64): words per (tap, input channel) row of pos / neg
};

// image: one image [in_h][in_w][in_c]; pos / neg: [kernel_h * kernel_w * in_c][o_words], bit o % 64
// of word o / 64 set when weight (o, ky, kx, c) is + / - (bits past out_c zero); out: output row oy,
// [out_w][out_c].
using BwconvRowFn = void (*)(const float* image, const uint64_t* pos, const uint64_t* neg, const float* scale_pos,
                             const float* scale_neg, const float* bias, const BwconvGeometry& g, int64_t oy,
                             float* out);

void bwconv_row_scalar(const float* image, const uint64_t* pos, const uint64_t* neg, const float* scale_pos,
                       const float* scale_neg, const float* bias, const BwconvGeometry& g, int64_t oy, float* out);
void bwconv_row_avx2(const float* image, const uint64_t* pos, const uint64_t* neg, const float* scale_pos,
                     const float* scale_neg, const float* bias, const BwconvGeometry& g, int64_t oy, float* out);
void bwconv_row_avx512(const float* image, const uint64_t* pos, const uint64_t* neg, const float* scale_pos,
                       const float* scale_neg, const float* bias, const BwconvGeometry& g, int64_t oy, float* out);

}  // namespace xnor

// Depthwise float convolution micro-kernels (groups == channels, one filter per channel), NHWC,
// vectorised along channels. The signature and the function-pointer table that
// csrc/microkernels/dispatch.cc picks per ISA.
//
// Exactness contract: every path computes each output element with the same sequence of IEEE
// operations, so scalar, AVX2 and AVX-512 results are bit-identical (and independent of the
// thread split, which is by output rows):
//   acc = +0
//   for ky = 0..KH-1, for kx = 0..KW-1 (row-major), only taps inside the image
//       (padding taps are skipped, not multiplied by zero):
//     acc = fma(x[iy][ix][c], w[ky][kx][c], acc)        (one rounding, std::fma)
//   y = acc + bias[c]; if relu: y = (y > 0) ? y : +0
// where iy = oy * stride_h - pad_h + ky * dilation_h, ix = ox * stride_w - pad_w + kx * dilation_w.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor {

// Weights and bias are stored with each tap's channels padded to a multiple of this (zeros), so
// that a vector load of the last channel block never reads past the buffer.
constexpr int64_t kDepthwiseChannelAlign = 16;

struct DepthwiseGeometry {
  int64_t in_h, in_w, channels;
  int64_t out_h, out_w;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t w_stride;  // floats per tap in the weights: channels rounded up to kDepthwiseChannelAlign
  bool relu;
};

// in: one image [in_h][in_w][channels]; w: [kernel_h][kernel_w][w_stride]; bias: [w_stride]
// (zeros when the layer has none); out: one image [out_h][out_w][channels], rows
// [row_begin, row_end) are written.
using DepthwiseConvFn = void (*)(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g,
                                 int64_t row_begin, int64_t row_end, float* out);

struct FloatConvKernels {
  DepthwiseConvFn depthwise;
};

#define XNOR_DECLARE_DWCONV_KERNELS(isa)                                                                               \
  void dwconv_##isa(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t row_begin, \
                    int64_t row_end, float* out);

XNOR_DECLARE_DWCONV_KERNELS(scalar)
XNOR_DECLARE_DWCONV_KERNELS(avx2)
XNOR_DECLARE_DWCONV_KERNELS(avx512)

#undef XNOR_DECLARE_DWCONV_KERNELS

}  // namespace xnor

// Float kernels (first/last layers, pooling): the microkernel signatures and
// the function-pointer table that csrc/microkernels/dispatch.cc picks per ISA.
//
// Exactness contract: every path computes each output element with the same
// sequence of IEEE operations, so scalar, AVX2 and AVX-512 results are
// bit-identical:
//   sgemm:   acc = +0; for k = 0..K-1: acc = fma(a[k], w[k], acc);
//            y = acc + bias; if relu: y = (y > 0) ? y : +0
//   maxpool: m = first in-bounds value of the window (row-major order), then
//            m = (v > m) ? v : m for the rest (padding is ignored, as -inf)
//   avgpool: s = +0; s = s + v over in-bounds values in row-major order;
//            y = s / divisor (float division)
//   global:  s = +0; s = s + v over pixels 0..P-1; y = s / P
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor {

// Output columns per packed weight panel, the same for every ISA so that one
// packing serves all paths: panel p holds columns [32p, 32p + 32) as
// [K][32] floats, zero beyond the real column count.
constexpr int kSgemmPanelWidth = 32;

// C[i][j] = act(sum_k A[i][k] * W[k][j] + bias[j]) for i < m, j < n (n <= 32).
// a: row i at a + i * lda (K floats); w: one packed panel [k][32];
// bias: 32 floats of the panel (zero-padded); c: row i at c + i * ldc, only
// columns j < n are written.
using SgemmPanelFn = void (*)(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* w,
                              const float* bias, float* c, size_t ldc, bool relu);

// NHWC pooling geometry for one image of `channels` floats per pixel.
struct FloatPoolGeometry {
  int in_h, in_w, channels;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int out_h, out_w;
  bool count_include_pad;  // avg only
};

// in: [in_h][in_w][channels]; out: [out_h][out_w][channels]; one image,
// output rows [row_begin, row_end).
using FloatPoolFn = void (*)(const float* in, const FloatPoolGeometry& g, int row_begin, int row_end, float* out);

// out[c] = (sum over p = 0..pixels-1 of in[p * channels + c]) / pixels for
// c in [c_begin, c_end); in is one image [pixels][channels].
using FloatGlobalAvgPoolFn = void (*)(const float* in, size_t pixels, size_t channels, size_t c_begin, size_t c_end,
                                      float* out);

struct FloatKernels {
  SgemmPanelFn sgemm;
  FloatPoolFn maxpool;
  FloatPoolFn avgpool;
  FloatGlobalAvgPoolFn global_avgpool;
};

#define XNOR_DECLARE_FLOAT_KERNELS(isa)                                                                         \
  void sgemm_##isa(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* w, const float* bias, \
                   float* c, size_t ldc, bool relu);                                                            \
  void fmaxpool_##isa(const float* in, const FloatPoolGeometry& g, int row_begin, int row_end, float* out);     \
  void favgpool_##isa(const float* in, const FloatPoolGeometry& g, int row_begin, int row_end, float* out);     \
  void fglobal_avgpool_##isa(const float* in, size_t pixels, size_t channels, size_t c_begin, size_t c_end, float* out);

XNOR_DECLARE_FLOAT_KERNELS(scalar)
XNOR_DECLARE_FLOAT_KERNELS(avx2)
XNOR_DECLARE_FLOAT_KERNELS(avx512)

#undef XNOR_DECLARE_FLOAT_KERNELS

}  // namespace xnor

// Graph-level element-wise and layout kernels used by the runtime's nodes
// (csrc/runtime/nodes/): float activations, channel-wise affine/PReLU,
// add/mul, softmax, sign (float -> bits with thresholds), unpack
// (bits -> +/-1.0f), float and bit concatenation, NCHW -> NHWC.
//
// Each family is written once in portable/<family>.cc and compiled per ISA by
// CMake (portable/per_isa.h), like bmaxpool; dispatch.cc picks the table.
//
// Exactness contract: every path evaluates each output element with the same
// sequence of IEEE operations (the portable sources are the single source; the
// build uses -ffp-contract=off so no multiply-add is fused unless written as
// std::fma), so results are bit-identical across ISA paths and thread counts:
//   affine:   y = fma(x, scale[c], shift[c])
//   prelu:    t = x - pre[c] (when given); y = (t >= 0) ? t : slope[c] * t;
//             y = y + post[c] (when given)
//   relu:     y = (x < 0) ? +0 : x            hardtanh: y = x < lo ? lo : (x > hi ? hi : x)
//   sigmoid:  y = 1 / (1 + exp(-x))           (libm expf, the same call on every path)
//   add/mul:  y = a + b / y = a * b
//   softmax:  m = max over the row (in order); e_i = exp(x_i - m); s = sum of
//             e_i in order from +0; y_i = e_i / s
//   sign:     bit of channel j*C + c = (x < t[j][c]), or (x <= t[j][c]) when
//             sign(0) is -1 ("-1"); NaN gives bit 0 (+1), like the converter's packer
//   compare:  y = (x OP t[c]) ? 1.0f : 0.0f, OP one of > >= < <= == != (NaN: false, != true)
//   round:    y = nearbyint(x) in the default mode (half to even, as torch.round)
//   floor:    y = floor(x)          abs: y = fabs(x)          neg: y = -x (sign bit flip)
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor {

// Row-wise kernels take `rows` rows of `channels` values; callers offset the
// pointers to split work.
using AffineFn = void (*)(const float* x, size_t rows, size_t channels, const float* scale, const float* shift,
                          float* y);
// slope_stride: 1 for a per-channel slope, 0 for one shared slope. pre/post may be null.
using PreluFn = void (*)(const float* x, size_t rows, size_t channels, const float* slope, size_t slope_stride,
                         const float* pre, const float* post, float* y);
using UnaryFn = void (*)(const float* x, size_t n, float* y);
using HardtanhFn = void (*)(const float* x, size_t n, float lo, float hi, float* y);
using BinaryOpFn = void (*)(const float* a, const float* b, size_t n, float* y);
// y[r][c] = a[r][c] * b[c]
using MulChannelFn = void (*)(const float* a, size_t rows, size_t channels, const float* b, float* y);
using SoftmaxFn = void (*)(const float* x, size_t rows, size_t features, float* y);
// thresholds: [groups][channels]; out: rows x ceil(groups * channels / 64) words.
using SignFn = void (*)(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,
                        bool zero_is_minus, uint64_t* out);
// bits: rows x ceil(channels / 64) words; y: rows x channels floats.
using UnpackFn = void (*)(const uint64_t* bits, size_t rows, size_t channels, float* y);
// One image x: [channels][pixels]; y: [pixels][channels]; pixels [p_begin, p_end).
using NchwToNhwcFn = void (*)(const float* x, size_t channels, size_t pixels, size_t p_begin, size_t p_end, float* y);
// Concatenation along the last axis for rows [row_begin, row_end); out has
// out_channels = sum(in_channels) values (or bits) per row.
using ConcatFn = void (*)(const float* const* in, const size_t* in_channels, size_t inputs, size_t row_begin,
                          size_t row_end, size_t out_channels, float* out);
using BconcatFn = void (*)(const uint64_t* const* in, const size_t* in_channels, size_t inputs, size_t row_begin,
                           size_t row_end, size_t out_channels, uint64_t* out);

// What compare tests (the IR's `cmp` attribute, in this order).
enum class CompareOp : int { kGt, kGe, kLt, kLe, kEq, kNe };
// y[r][c] = (x[r][c] OP t[c]) ? 1 : 0
using CompareFn = void (*)(const float* x, size_t rows, size_t channels, const float* t, CompareOp op, float* y);

struct ElementwiseKernels {
  AffineFn affine;
  PreluFn prelu;
  UnaryFn relu;
  HardtanhFn hardtanh;
  UnaryFn sigmoid;
  BinaryOpFn add;
  BinaryOpFn mul;
  MulChannelFn mul_channel;
  SoftmaxFn softmax;
  SignFn sign;
  UnpackFn unpack;
  NchwToNhwcFn nchw_to_nhwc;
  ConcatFn concat;
  BconcatFn bconcat;
  CompareFn compare;
  UnaryFn round_even;
  UnaryFn floor;
  UnaryFn abs;
  UnaryFn neg;
};

#define XNOR_DECLARE_ELEMENTWISE_KERNELS(isa)                                                                        \
  void affine_##isa(const float* x, size_t rows, size_t channels, const float* scale, const float* shift, float* y); \
  void prelu_##isa(const float* x, size_t rows, size_t channels, const float* slope, size_t slope_stride,            \
                   const float* pre, const float* post, float* y);                                                   \
  void relu_##isa(const float* x, size_t n, float* y);                                                               \
  void hardtanh_##isa(const float* x, size_t n, float lo, float hi, float* y);                                       \
  void sigmoid_##isa(const float* x, size_t n, float* y);                                                            \
  void add_##isa(const float* a, const float* b, size_t n, float* y);                                                \
  void mul_##isa(const float* a, const float* b, size_t n, float* y);                                                \
  void mul_channel_##isa(const float* a, size_t rows, size_t channels, const float* b, float* y);                    \
  void softmax_##isa(const float* x, size_t rows, size_t features, float* y);                                        \
  void sign_##isa(const float* x, size_t rows, size_t channels, const float* thresholds, size_t groups,              \
                  bool zero_is_minus, uint64_t* out);                                                                \
  void unpack_##isa(const uint64_t* bits, size_t rows, size_t channels, float* y);                                   \
  void nchw_to_nhwc_##isa(const float* x, size_t channels, size_t pixels, size_t p_begin, size_t p_end, float* y);   \
  void concat_##isa(const float* const* in, const size_t* in_channels, size_t inputs, size_t row_begin,              \
                    size_t row_end, size_t out_channels, float* out);                                                \
  void bconcat_##isa(const uint64_t* const* in, const size_t* in_channels, size_t inputs, size_t row_begin,          \
                     size_t row_end, size_t out_channels, uint64_t* out);                                            \
  void compare_##isa(const float* x, size_t rows, size_t channels, const float* t, CompareOp op, float* y);          \
  void round_even_##isa(const float* x, size_t n, float* y);                                                         \
  void floor_##isa(const float* x, size_t n, float* y);                                                              \
  void abs_##isa(const float* x, size_t n, float* y);                                                                \
  void neg_##isa(const float* x, size_t n, float* y);

XNOR_DECLARE_ELEMENTWISE_KERNELS(scalar)
XNOR_DECLARE_ELEMENTWISE_KERNELS(avx2)
XNOR_DECLARE_ELEMENTWISE_KERNELS(avx512)

#undef XNOR_DECLARE_ELEMENTWISE_KERNELS

}  // namespace xnor

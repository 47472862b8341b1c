// Float element-wise kernels (see elementwise.h for the exact operation
// order), written once and compiled per ISA (per_isa.h); the loops are plain
// enough for the compiler to vectorise for each target.
#include <cmath>
#include <cstddef>

#include "microkernels/elementwise.h"
#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE {

// affine and prelu may run in place (y == x: a fused step writing over its input, Session::
// plan_in_place), so x and y are not __restrict; ivdep keeps the loop vectorised without an overlap
// check (y == x exactly carries no dependence from one value to the next).
inline void affine(const float* x, size_t rows, size_t channels, const float* scale, const float* shift, float* y) {
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * channels;
    float* yr = y + r * channels;
#pragma GCC ivdep
    for (size_t c = 0; c < channels; ++c) yr[c] = std::fma(xr[c], scale[c], shift[c]);
  }
}

// One loop per (pre, post, per-channel slope) combination: with the tests inside, the compiler
// keeps a scalar loop whose data-dependent branch mispredicts on half the values (30x slower).
template <bool kPre, bool kPost, bool kPerChannel>
inline void prelu_rows(const float* x, size_t rows, size_t channels, const float* slope, const float* pre,
                       const float* post, float* y) {
  const float shared_slope = slope[0];
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * channels;
    float* yr = y + r * channels;
#pragma GCC ivdep
    for (size_t c = 0; c < channels; ++c) {
      const float t = kPre ? xr[c] - pre[c] : xr[c];
      const float negative = (kPerChannel ? slope[c] : shared_slope) * t;
      float v = (t >= 0.0f) ? t : negative;
      if (kPost) v = v + post[c];
      yr[c] = v;
    }
  }
}

template <bool kPre, bool kPost>
inline void prelu_rows(const float* x, size_t rows, size_t channels, const float* slope, size_t slope_stride,
                       const float* pre, const float* post, float* y) {
  if (slope_stride == 0) {
    prelu_rows<kPre, kPost, false>(x, rows, channels, slope, pre, post, y);
  } else {
    prelu_rows<kPre, kPost, true>(x, rows, channels, slope, pre, post, y);
  }
}

inline void prelu(const float* x, size_t rows, size_t channels, const float* slope, size_t slope_stride,
                  const float* pre, const float* post, float* y) {
  if (pre != nullptr && post != nullptr) {
    prelu_rows<true, true>(x, rows, channels, slope, slope_stride, pre, post, y);
  } else if (pre != nullptr) {
    prelu_rows<true, false>(x, rows, channels, slope, slope_stride, pre, post, y);
  } else if (post != nullptr) {
    prelu_rows<false, true>(x, rows, channels, slope, slope_stride, pre, post, y);
  } else {
    prelu_rows<false, false>(x, rows, channels, slope, slope_stride, pre, post, y);
  }
}

inline void relu(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = (x[i] < 0.0f) ? 0.0f : x[i];
}

inline void hardtanh(const float* x, size_t n, float lo, float hi, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}

inline void sigmoid(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

inline void add(const float* a, const float* b, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

inline void mul(const float* a, const float* b, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

inline void mul_channel(const float* a, size_t rows, size_t channels, const float* b, float* y) {
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict ar = a + r * channels;
    float* __restrict yr = y + r * channels;
    for (size_t c = 0; c < channels; ++c) yr[c] = ar[c] * b[c];
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_ELTWISE_KERNELS(isa)                                                                              \
  void affine_##isa(const float* x, size_t rows, size_t channels, const float* scale, const float* shift, float* y) { \
    isa::affine(x, rows, channels, scale, shift, y);                                                                  \
  }                                                                                                                   \
  void prelu_##isa(const float* x, size_t rows, size_t channels, const float* slope, size_t slope_stride,             \
                   const float* pre, const float* post, float* y) {                                                   \
    isa::prelu(x, rows, channels, slope, slope_stride, pre, post, y);                                                 \
  }                                                                                                                   \
  void relu_##isa(const float* x, size_t n, float* y) { isa::relu(x, n, y); }                                         \
  void hardtanh_##isa(const float* x, size_t n, float lo, float hi, float* y) { isa::hardtanh(x, n, lo, hi, y); }     \
  void sigmoid_##isa(const float* x, size_t n, float* y) { isa::sigmoid(x, n, y); }                                   \
  void add_##isa(const float* a, const float* b, size_t n, float* y) { isa::add(a, b, n, y); }                        \
  void mul_##isa(const float* a, const float* b, size_t n, float* y) { isa::mul(a, b, n, y); }                        \
  void mul_channel_##isa(const float* a, size_t rows, size_t channels, const float* b, float* y) {                    \
    isa::mul_channel(a, rows, channels, b, y);                                                                        \
  }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_ELTWISE_KERNELS)
}  // namespace xnor

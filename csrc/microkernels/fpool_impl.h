// The float pooling loops, written once over a vector "ops" type and compiled
// per ISA by the fpool_<isa>.cc files. Channels are processed Ops::kWidth at
// a time, the channel tail with the scalar ops below; both apply the exact
// per-element operations stated in float_kernels.h, so every path is
// bit-identical.
#pragma once

#include <algorithm>
#include <cstddef>

#include "microkernels/float_kernels.h"
#include "microkernels/per_isa.h"

namespace xnor {
inline namespace XNOR_ISA_NAMESPACE {  // one copy per ISA build (per_isa.h)
namespace fpool_detail {

// (v > m) ? v : m -- the semantics of x86 MAXPS(v, m).
inline float max_scalar(float v, float m) { return v > m ? v : m; }

struct ScalarOps {
  static constexpr int kWidth = 1;
  using V = float;
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V zero() { return 0.0f; }
  static V set1(float x) { return x; }
  static V max(V v, V m) { return max_scalar(v, m); }
  static V add(V a, V b) { return a + b; }
  static V div(V a, V b) { return a / b; }
};

struct Window {
  int y0, y1, x0, x1;  // in-bounds rows/cols [y0, y1) x [x0, x1)
  float divisor;
};

inline Window window(const FloatPoolGeometry& g, int oy, int ox) {
  const int ys = oy * g.stride_h - g.pad_h, xs = ox * g.stride_w - g.pad_w;
  // PyTorch: the padded window is clipped to [-pad, in + pad) first.
  const int ye = std::min(ys + g.kernel_h, g.in_h + g.pad_h), xe = std::min(xs + g.kernel_w, g.in_w + g.pad_w);
  Window w;
  w.y0 = std::max(ys, 0);
  w.y1 = std::min(ye, g.in_h);
  w.x0 = std::max(xs, 0);
  w.x1 = std::min(xe, g.in_w);
  const int count = g.count_include_pad ? (ye - ys) * (xe - xs) : (w.y1 - w.y0) * (w.x1 - w.x0);
  w.divisor = static_cast<float>(count);
  return w;
}

template <class Ops>
inline void max_block(const float* in, const FloatPoolGeometry& g, const Window& w, size_t c, float* dst) {
  const size_t row = static_cast<size_t>(g.in_w) * g.channels;
  const float* p0 = in + static_cast<size_t>(w.y0) * row + static_cast<size_t>(w.x0) * g.channels + c;
  typename Ops::V m = Ops::load(p0);
  for (int y = w.y0; y < w.y1; ++y) {
    const float* py = in + static_cast<size_t>(y) * row + c;
    for (int x = (y == w.y0 ? w.x0 + 1 : w.x0); x < w.x1; ++x) {
      m = Ops::max(Ops::load(py + static_cast<size_t>(x) * g.channels), m);
    }
  }
  Ops::store(dst + c, m);
}

template <class Ops>
inline void avg_block(const float* in, const FloatPoolGeometry& g, const Window& w, size_t c, float* dst) {
  const size_t row = static_cast<size_t>(g.in_w) * g.channels;
  typename Ops::V s = Ops::zero();
  for (int y = w.y0; y < w.y1; ++y) {
    const float* py = in + static_cast<size_t>(y) * row + c;
    for (int x = w.x0; x < w.x1; ++x) s = Ops::add(s, Ops::load(py + static_cast<size_t>(x) * g.channels));
  }
  Ops::store(dst + c, Ops::div(s, Ops::set1(w.divisor)));
}

template <class Ops, bool kMax>
inline void pool_impl(const float* in, const FloatPoolGeometry& g, int row_begin, int row_end, float* out) {
  const size_t channels = static_cast<size_t>(g.channels);
  const size_t vec_end = channels - channels % Ops::kWidth;
  for (int oy = row_begin; oy < row_end; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const Window w = window(g, oy, ox);
      float* dst = out + (static_cast<size_t>(oy) * g.out_w + ox) * channels;
      size_t c = 0;
      for (; c < vec_end; c += Ops::kWidth) {
        if (kMax) {
          max_block<Ops>(in, g, w, c, dst);
        } else {
          avg_block<Ops>(in, g, w, c, dst);
        }
      }
      for (; c < channels; ++c) {
        if (kMax) {
          max_block<ScalarOps>(in, g, w, c, dst);
        } else {
          avg_block<ScalarOps>(in, g, w, c, dst);
        }
      }
    }
  }
}

template <class Ops>
inline void global_avg_impl(const float* in, size_t pixels, size_t channels, size_t c_begin, size_t c_end, float* out) {
  size_t c = c_begin;
  const float divisor = static_cast<float>(pixels);
  // Four vectors of channels at a time keep independent chains in flight.
  for (; c + 4 * Ops::kWidth <= c_end; c += 4 * Ops::kWidth) {
    typename Ops::V s0 = Ops::zero(), s1 = Ops::zero(), s2 = Ops::zero(), s3 = Ops::zero();
    for (size_t p = 0; p < pixels; ++p) {
      const float* src = in + p * channels + c;
      s0 = Ops::add(s0, Ops::load(src));
      s1 = Ops::add(s1, Ops::load(src + Ops::kWidth));
      s2 = Ops::add(s2, Ops::load(src + 2 * Ops::kWidth));
      s3 = Ops::add(s3, Ops::load(src + 3 * Ops::kWidth));
    }
    const typename Ops::V d = Ops::set1(divisor);
    Ops::store(out + c, Ops::div(s0, d));
    Ops::store(out + c + Ops::kWidth, Ops::div(s1, d));
    Ops::store(out + c + 2 * Ops::kWidth, Ops::div(s2, d));
    Ops::store(out + c + 3 * Ops::kWidth, Ops::div(s3, d));
  }
  for (; c + Ops::kWidth <= c_end; c += Ops::kWidth) {
    typename Ops::V s = Ops::zero();
    for (size_t p = 0; p < pixels; ++p) s = Ops::add(s, Ops::load(in + p * channels + c));
    Ops::store(out + c, Ops::div(s, Ops::set1(divisor)));
  }
  for (; c < c_end; ++c) {
    float s = 0.0f;
    for (size_t p = 0; p < pixels; ++p) s = s + in[p * channels + c];
    out[c] = s / divisor;
  }
}

}  // namespace fpool_detail
}  // namespace XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_FPOOL(isa, Ops)                                                                          \
  void fmaxpool_##isa(const float* in, const FloatPoolGeometry& g, int row_begin, int row_end, float* out) { \
    fpool_detail::pool_impl<Ops, true>(in, g, row_begin, row_end, out);                                      \
  }                                                                                                          \
  void favgpool_##isa(const float* in, const FloatPoolGeometry& g, int row_begin, int row_end, float* out) { \
    fpool_detail::pool_impl<Ops, false>(in, g, row_begin, row_end, out);                                     \
  }                                                                                                          \
  void fglobal_avgpool_##isa(const float* in, size_t pixels, size_t channels, size_t c_begin, size_t c_end,  \
                             float* out) {                                                                   \
    fpool_detail::global_avg_impl<Ops>(in, pixels, channels, c_begin, c_end, out);                           \
  }

}  // namespace xnor

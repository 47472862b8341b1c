// The depthwise convolution loops, written once over a vector "ops" type and compiled per ISA by
// the dwconv_<isa>.cc files (the same structure for every path; only the vector width differs).
// Each output element follows the operation order stated in dwconv.h, so every path is
// bit-identical.
//
// Per output row: the taps' row range [ky0, ky1) is computed once; output pixels split into the
// left border, the interior (every kx tap in bounds: 4 pixels at a time share each weight load)
// and the right border (per-pixel kx range). Channels go 2 vectors at a time, then 1, then a
// masked tail vector (weights and bias are zero-padded, so only the input and output need masks).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "microkernels/dwconv.h"
#include "microkernels/per_isa.h"

namespace xnor {
inline namespace XNOR_ISA_NAMESPACE {  // one copy per ISA build (per_isa.h)
namespace dwconv_detail {

struct ScalarOps {
  static constexpr int kWidth = 1;
  using V = float;
  using Mask = int;
  static Mask mask(int) { return 0; }
  static V load(const float* p) { return *p; }
  static V load(const float* p, Mask) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static void store(float* p, V v, Mask) { *p = v; }
  static V zero() { return 0.0f; }
  static V fma(V x, V w, V acc) { return std::fma(x, w, acc); }
  static V add(V a, V b) { return a + b; }
  static V relu(V y) { return y > 0.0f ? y : 0.0f; }
};

// First tap index t in [0, k) with base + t * d >= 0, and one past the last with base + t * d < n.
inline void tap_range(int64_t base, int k, int d, int64_t n, int* lo, int* hi) {
  int64_t l = base >= 0 ? 0 : (-base + d - 1) / d;
  int64_t h = base > n - 1 ? 0 : (n - 1 - base) / d + 1;
  l = std::min<int64_t>(l, k);
  h = std::min<int64_t>(h, k);
  *lo = static_cast<int>(l);
  *hi = static_cast<int>(std::max(l, h));
}

// P output pixels starting at ox, V vectors of channels starting at c (the last one masked when
// kMasked), taps rows [ky0, ky1) and columns [kx0, kx1) (shared by the P pixels).
template <class Ops, int P, int V, bool kMasked>
inline void block(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t iy0, int ky0,
                  int ky1, int64_t ox, int kx0, int kx1, int64_t c, typename Ops::Mask m, float* out_row) {
  using Vec = typename Ops::V;
  constexpr int W = Ops::kWidth;
  const int64_t C = g.channels;
  Vec acc[P][V];
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[p][v] = Ops::zero();
  const int64_t ix_step = int64_t{g.stride_w} * C;
  for (int ky = ky0; ky < ky1; ++ky) {
    const float* row = in + (iy0 + int64_t{ky} * g.dilation_h) * g.in_w * C + c;
    const float* wrow = w + int64_t{ky} * g.kernel_w * g.w_stride + c;
    for (int kx = kx0; kx < kx1; ++kx) {
      Vec wv[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) wv[v] = Ops::load(wrow + int64_t{kx} * g.w_stride + v * W);
      const float* src = row + (ox * g.stride_w - g.pad_w + int64_t{kx} * g.dilation_w) * C;
#pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) {
          const Vec x =
              (kMasked && v == V - 1) ? Ops::load(src + p * ix_step + v * W, m) : Ops::load(src + p * ix_step + v * W);
          acc[p][v] = Ops::fma(x, wv[v], acc[p][v]);
        }
      }
    }
  }
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    const Vec b = Ops::load(bias + c + v * W);
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      Vec y = Ops::add(acc[p][v], b);
      if (g.relu) y = Ops::relu(y);
      float* dst = out_row + (ox + p) * C + c + v * W;
      if (kMasked && v == V - 1) {
        Ops::store(dst, y, m);
      } else {
        Ops::store(dst, y);
      }
    }
  }
}

// All output pixels of one row for the channel block at c.
template <class Ops, int V, bool kMasked>
inline void row_block(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t iy0,
                      int ky0, int ky1, int64_t ox_lo, int64_t ox_hi, int64_t c, typename Ops::Mask m, float* out_row) {
  auto border = [&](int64_t ox) {
    int kx0 = 0, kx1 = 0;
    tap_range(ox * g.stride_w - g.pad_w, g.kernel_w, g.dilation_w, g.in_w, &kx0, &kx1);
    block<Ops, 1, V, kMasked>(in, w, bias, g, iy0, ky0, ky1, ox, kx0, kx1, c, m, out_row);
  };
  for (int64_t ox = 0; ox < ox_lo; ++ox) border(ox);
  int64_t ox = ox_lo;
  for (; ox + 4 <= ox_hi; ox += 4) {
    block<Ops, 4, V, kMasked>(in, w, bias, g, iy0, ky0, ky1, ox, 0, g.kernel_w, c, m, out_row);
  }
  for (; ox < ox_hi; ++ox) block<Ops, 1, V, kMasked>(in, w, bias, g, iy0, ky0, ky1, ox, 0, g.kernel_w, c, m, out_row);
  for (ox = ox_hi; ox < g.out_w; ++ox) border(ox);
}

template <class Ops>
inline void dwconv_impl(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g,
                        int64_t row_begin, int64_t row_end, float* out) {
  constexpr int W = Ops::kWidth;
  const int64_t C = g.channels;
  // Interior output columns: every kx tap in bounds, ox * sw - pw >= 0 and
  // ox * sw - pw + (kw - 1) * dw <= in_w - 1.
  const int64_t sw = g.stride_w, pw = g.pad_w;
  const int64_t last = g.in_w - 1 + pw - int64_t{g.kernel_w - 1} * g.dilation_w;  // max ox * sw
  int64_t ox_lo = std::min<int64_t>((pw + sw - 1) / sw, g.out_w);
  int64_t ox_hi = last < 0 ? ox_lo : std::min<int64_t>(last / sw + 1, g.out_w);
  ox_hi = std::max(ox_hi, ox_lo);
  const int64_t full2 = C - C % (2 * W), full1 = C - C % W;
  const int tail = static_cast<int>(C - full1);
  const typename Ops::Mask m = Ops::mask(tail);
  for (int64_t oy = row_begin; oy < row_end; ++oy) {
    const int64_t iy0 = oy * g.stride_h - g.pad_h;
    int ky0 = 0, ky1 = 0;
    tap_range(iy0, g.kernel_h, g.dilation_h, g.in_h, &ky0, &ky1);
    float* out_row = out + oy * g.out_w * C;
    int64_t c = 0;
    for (; c < full2; c += 2 * W) {
      row_block<Ops, 2, false>(in, w, bias, g, iy0, ky0, ky1, ox_lo, ox_hi, c, m, out_row);
    }
    for (; c < full1; c += W) row_block<Ops, 1, false>(in, w, bias, g, iy0, ky0, ky1, ox_lo, ox_hi, c, m, out_row);
    if (tail > 0) row_block<Ops, 1, true>(in, w, bias, g, iy0, ky0, ky1, ox_lo, ox_hi, c, m, out_row);
  }
}

}  // namespace dwconv_detail
}  // namespace XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_DWCONV(isa, Ops)                                                                                   \
  void dwconv_##isa(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t row_begin, \
                    int64_t row_end, float* out) {                                                                     \
    dwconv_detail::dwconv_impl<Ops>(in, w, bias, g, row_begin, row_end, out);                                          \
  }

}  // namespace xnor

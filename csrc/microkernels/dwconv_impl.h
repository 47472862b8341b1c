// The depthwise convolution loops, written once over a vector "ops" type and compiled per ISA by
// the dwconv_<isa>.cc files (the same structure for every path; only the vector width differs).
// Each output element follows the operation order stated in dwconv.h, so every path is
// bit-identical.
//
// Per output row: the taps' row range [ky0, ky1) is computed once; output pixels split into the
// left border, the interior (every kx tap in bounds: 4 pixels at a time share each weight load;
// for 3, 5 and 7-wide kernels, Ops::kPixels pixels at a time also share input loads, block_kw) and the
// right border (per-pixel kx range). Pixel blocks are the outer loop and channels the inner one,
// so that the input pixels of a block are read from L1 for every channel block. Channels go 2
// vectors at a time, then 1 (block_kw: 1 at a time), then a masked tail vector (weights and bias
// are zero-padded, so only the input and output need masks).
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
  static constexpr int kPixels = 4;  // output pixels per block_kw call
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

// The common odd kernel widths (kernel_w == KW in {3, 5, 7}, dilation_w == 1, stride_w == S in
// {1, 2}): P interior output pixels, one vector of channels at c. Neighbouring pixels share input
// columns, so each input vector of a kernel row is loaded once ((P - 1) * S + KW loads for P * KW
// FMAs). The FMAs run in the same per-element order (ky, then kx ascending) as block().
// With `prefetch` (the next P pixels are interior too), it also prefetches the input columns that
// the next block will read and this one does not: the channel loop between the two blocks defeats
// the hardware's stride prefetcher once the kernel's input rows no longer fit in L1.
template <class Ops, int P, int S, int KW>
inline void block_kw(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t iy0,
                     int ky0, int ky1, int64_t ox, int64_t c, bool prefetch, float* out_row) {
  using Vec = typename Ops::V;
  constexpr int kLoads = (P - 1) * S + KW;
  const int64_t C = g.channels;
  Vec acc[P];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) acc[p] = Ops::zero();
  for (int ky = ky0; ky < ky1; ++ky) {
    const float* src = in + (iy0 + int64_t{ky} * g.dilation_h) * g.in_w * C + (ox * S - g.pad_w) * C + c;
    const float* wr = w + int64_t{ky} * KW * g.w_stride + c;
    Vec wv[KW];
#pragma GCC unroll 7
    for (int kx = 0; kx < KW; ++kx) wv[kx] = Ops::load(wr + kx * g.w_stride);
    Vec x[kLoads];
#pragma GCC unroll 24
    for (int j = 0; j < kLoads; ++j) x[j] = Ops::load(src + j * C);
    if (prefetch) {
#pragma GCC unroll 16
      for (int j = kLoads; j < kLoads + P * S; ++j) __builtin_prefetch(src + j * C);
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
#pragma GCC unroll 7
      for (int kx = 0; kx < KW; ++kx) acc[p] = Ops::fma(x[p * S + kx], wv[kx], acc[p]);
    }
  }
  const Vec b = Ops::load(bias + c);
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    Vec y = Ops::add(acc[p], b);
    if (g.relu) y = Ops::relu(y);
    Ops::store(out_row + (ox + p) * C + c, y);
  }
}

// Whether block_kw applies to the interior of this geometry: its stride (1 or 2), else 0.
inline int kw_stride(const DepthwiseGeometry& g) {
  const bool odd = g.kernel_w == 3 || g.kernel_w == 5 || g.kernel_w == 7;
  return odd && g.dilation_w == 1 && (g.stride_w == 1 || g.stride_w == 2) ? g.stride_w : 0;
}

// Channel blocks of one output row: full double vectors, full vectors, the masked tail.
struct Channels {
  int64_t full2, full1;  // ends of the double-vector and single-vector blocks
  int tail;              // channels left for the masked vector
};

// P output pixels at ox (sharing the kx range [kx0, kx1)), every channel. Pixel-major, so the
// input pixels a block reads stay in L1 across its channel blocks.
template <class Ops, int P>
inline void pixels_all_channels(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g,
                                int64_t iy0, int ky0, int ky1, int64_t ox, int kx0, int kx1, const Channels& ch,
                                typename Ops::Mask m, float* out_row) {
  constexpr int W = Ops::kWidth;
  int64_t c = 0;
  for (; c < ch.full2; c += 2 * W) block<Ops, P, 2, false>(in, w, bias, g, iy0, ky0, ky1, ox, kx0, kx1, c, m, out_row);
  for (; c < ch.full1; c += W) block<Ops, P, 1, false>(in, w, bias, g, iy0, ky0, ky1, ox, kx0, kx1, c, m, out_row);
  if (ch.tail > 0) block<Ops, P, 1, true>(in, w, bias, g, iy0, ky0, ky1, ox, kx0, kx1, c, m, out_row);
}

// Ops::kPixels interior output pixels at ox, every channel, by block_kw (stride_w == S, kernel_w == KW).
template <class Ops, int S, int KW>
inline void kw_all_channels(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t iy0,
                            int ky0, int ky1, int64_t ox, int64_t ox_hi, const Channels& ch, typename Ops::Mask m,
                            float* out_row) {
  constexpr int W = Ops::kWidth, P = Ops::kPixels;
  int64_t c = 0;
  const bool prefetch = ox + 2 * P <= ox_hi;
  for (; c < ch.full1; c += W) block_kw<Ops, P, S, KW>(in, w, bias, g, iy0, ky0, ky1, ox, c, prefetch, out_row);
  if (ch.tail > 0) block<Ops, P, 1, true>(in, w, bias, g, iy0, ky0, ky1, ox, 0, KW, c, m, out_row);
}

// All interior pixel blocks of a row from ox by block_kw; returns the first pixel left over.
template <class Ops, int S, int KW>
inline int64_t kw_row(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t iy0,
                      int ky0, int ky1, int64_t ox, int64_t ox_hi, const Channels& ch, typename Ops::Mask m,
                      float* out_row) {
  constexpr int P = Ops::kPixels;
  for (; ox + P <= ox_hi; ox += P)
    kw_all_channels<Ops, S, KW>(in, w, bias, g, iy0, ky0, ky1, ox, ox_hi, ch, m, out_row);
  return ox;
}

// One output row: left border, interior, right border.
template <class Ops>
inline void row(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t oy,
                int64_t ox_lo, int64_t ox_hi, const Channels& ch, typename Ops::Mask m, float* out) {
  const int64_t iy0 = oy * g.stride_h - g.pad_h;
  int ky0 = 0, ky1 = 0;
  tap_range(iy0, g.kernel_h, g.dilation_h, g.in_h, &ky0, &ky1);
  float* out_row = out + oy * g.out_w * g.channels;
  auto border = [&](int64_t ox) {
    int kx0 = 0, kx1 = 0;
    tap_range(ox * g.stride_w - g.pad_w, g.kernel_w, g.dilation_w, g.in_w, &kx0, &kx1);
    pixels_all_channels<Ops, 1>(in, w, bias, g, iy0, ky0, ky1, ox, kx0, kx1, ch, m, out_row);
  };
  for (int64_t ox = 0; ox < ox_lo; ++ox) border(ox);
  int64_t ox = ox_lo;
  const int sk = kw_stride(g);
  if (sk != 0) {
    const int key = sk * 10 + g.kernel_w;  // (stride, width) pairs block_kw is compiled for
    switch (key) {
      case 13: ox = kw_row<Ops, 1, 3>(in, w, bias, g, iy0, ky0, ky1, ox, ox_hi, ch, m, out_row); break;
      case 23: ox = kw_row<Ops, 2, 3>(in, w, bias, g, iy0, ky0, ky1, ox, ox_hi, ch, m, out_row); break;
      case 15: ox = kw_row<Ops, 1, 5>(in, w, bias, g, iy0, ky0, ky1, ox, ox_hi, ch, m, out_row); break;
      case 25: ox = kw_row<Ops, 2, 5>(in, w, bias, g, iy0, ky0, ky1, ox, ox_hi, ch, m, out_row); break;
      case 17: ox = kw_row<Ops, 1, 7>(in, w, bias, g, iy0, ky0, ky1, ox, ox_hi, ch, m, out_row); break;
      case 27: ox = kw_row<Ops, 2, 7>(in, w, bias, g, iy0, ky0, ky1, ox, ox_hi, ch, m, out_row); break;
      default: break;
    }
  }
  for (; ox + 4 <= ox_hi; ox += 4) {
    pixels_all_channels<Ops, 4>(in, w, bias, g, iy0, ky0, ky1, ox, 0, g.kernel_w, ch, m, out_row);
  }
  for (; ox < ox_hi; ++ox)
    pixels_all_channels<Ops, 1>(in, w, bias, g, iy0, ky0, ky1, ox, 0, g.kernel_w, ch, m, out_row);
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
  Channels ch;
  ch.full2 = C - C % (2 * W);
  ch.full1 = C - C % W;
  ch.tail = static_cast<int>(C - ch.full1);
  const typename Ops::Mask m = Ops::mask(ch.tail);
  for (int64_t oy = row_begin; oy < row_end; ++oy) row<Ops>(in, w, bias, g, oy, ox_lo, ox_hi, ch, m, out);
}

}  // namespace dwconv_detail
}  // namespace XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_DWCONV(isa, Ops)                                                                                   \
  void dwconv_##isa(const float* in, const float* w, const float* bias, const DepthwiseGeometry& g, int64_t row_begin, \
                    int64_t row_end, float* out) {                                                                     \
    dwconv_detail::dwconv_impl<Ops>(in, w, bias, g, row_begin, row_end, out);                                          \
  }

}  // namespace xnor

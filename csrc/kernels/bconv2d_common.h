// Helpers shared by the bconv microkernels of every ISA (address arithmetic
// and the scalar form of the output transform).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/bconv2d_microkernel.h"

namespace xnor {

// Input row (in_words words) that tap (ky, kx) of output pixel (oh, ow) reads,
// or the pad row when the tap falls outside the image.
inline const uint64_t* bconv_tap_row(const BconvKernelArgs& a, int oh, int ow, int ky, int kx) {
  const int ih = oh * a.stride_h - a.pad_h + ky;
  const int iw = ow * a.stride_w - a.pad_w + kx;
  if (ih < 0 || ih >= a.in_h || iw < 0 || iw >= a.in_w) return a.pad_row;
  return a.input + (static_cast<int64_t>(ih) * a.in_w + iw) * a.in_words;
}

// True when some tap of output pixel (oh, ow) falls in the padding.
inline bool bconv_pixel_touches_padding(const BconvKernelArgs& a, int oh, int ow) {
  const int ih0 = oh * a.stride_h - a.pad_h;
  const int iw0 = ow * a.stride_w - a.pad_w;
  return ih0 < 0 || iw0 < 0 || ih0 + a.kernel_h > a.in_h || iw0 + a.kernel_w > a.in_w;
}

// Calls fn(tap) for each padded tap of output pixel (oh, ow).
template <typename Fn>
inline void bconv_for_each_padded_tap(const BconvKernelArgs& a, int oh, int ow, Fn&& fn) {
  const int ih0 = oh * a.stride_h - a.pad_h;
  const int iw0 = ow * a.stride_w - a.pad_w;
  for (int ky = 0; ky < a.kernel_h; ++ky) {
    const int ih = ih0 + ky;
    const bool row_out = ih < 0 || ih >= a.in_h;
    for (int kx = 0; kx < a.kernel_w; ++kx) {
      const int iw = iw0 + kx;
      if (row_out || iw < 0 || iw >= a.in_w) fn(ky * a.kernel_w + kx);
    }
  }
}

// Scalar output transform of one sum s for block channel c of pixel p.
inline void bconv_store_scalar(const BconvKernelArgs& a, int p, int c, int64_t s) {
  const BconvBlockEpilogue& e = *a.epilogue;
  switch (a.kind) {
    case OutputKind::kInt32:
      static_cast<int32_t*>(a.output)[p * a.out_pixel_stride + c] = static_cast<int32_t>(s);
      break;
    case OutputKind::kFloat:
      static_cast<float*>(a.output)[p * a.out_pixel_stride + c] =
          std::fma(e.multiplier[c], static_cast<float>(s), e.bias[c]);
      break;
    case OutputKind::kBits:
      break;  // bits are gathered per pixel by the caller
  }
}

inline uint32_t bconv_bit_scalar(const BconvBlockEpilogue& e, int c, int64_t s) {
  return (static_cast<uint32_t>(s < e.threshold[c]) ^ ((e.flip >> c) & 1u)) & ((e.valid_mask >> c) & 1u);
}

}  // namespace xnor

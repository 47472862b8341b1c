// Scalar pieces of the binary GEMM epilogue shared by every ISA's microkernel.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "microkernels/bconv2d_microkernel.h"
#include "microkernels/per_isa.h"

namespace xnor {
inline namespace XNOR_ISA_NAMESPACE {  // one copy per ISA build (per_isa.h)

// Sum of tap_weight_sum over the padded taps of tile pixel m, channel c.
inline int64_t bgemm_padding_correction(const BgemmTileArgs& a, int m, int c) {
  if (a.tap_weight_sum == nullptr) return 0;
  int64_t corr = 0;
  const int16_t* taps = a.padded_taps + m * a.taps_stride;
  for (int i = 0; i < a.padded_count[m]; ++i) corr += a.tap_weight_sum[taps[i] * kBconvBlock + c];
  return corr;
}

// Valid channels of a block. The constructor never makes more than kBconvBlock, but the
// compiler cannot know that: bounding the loops here is what lets it prove the per-block
// arrays (threshold[32], s[32]) are never read past their end (-Warray-bounds).
inline int block_channels(const BconvBlockEpilogue& e) { return e.channels < kBconvBlock ? e.channels : kBconvBlock; }

// Output transform of the exact sums s[0..channels) of tile pixel m.
inline void bgemm_store_pixel_scalar(const BgemmTileArgs& a, int m, const int64_t* s) {
  const BconvBlockEpilogue& e = *a.epilogue;
  const int channels = block_channels(e);
  switch (a.kind) {
    case OutputKind::kInt32: {
      int32_t* out = static_cast<int32_t*>(a.output) + m * a.out_pixel_stride;
      for (int c = 0; c < channels; ++c) out[c] = static_cast<int32_t>(s[c]);
      break;
    }
    case OutputKind::kFloat: {
      float* out = static_cast<float*>(a.output) + m * a.out_pixel_stride;
      if (a.pixel_scale != nullptr) {
        // fl(s * K) first (s is exact in float32 for |s| < 2^24), then the channel fma: the float
        // operations of PyTorch's conv * K * alpha + shift, in that order (docs/exactness.md).
        const float k = a.pixel_scale[m];
        for (int c = 0; c < channels; ++c) {
          const float sk = static_cast<float>(s[c]) * k;
          out[c] = std::fma(e.multiplier[c], sk, e.bias[c]);
        }
        break;
      }
      for (int c = 0; c < channels; ++c) out[c] = std::fma(e.multiplier[c], static_cast<float>(s[c]), e.bias[c]);
      break;
    }
    case OutputKind::kBits: {
      uint32_t bits = 0;
      for (int c = 0; c < channels; ++c) bits |= static_cast<uint32_t>(s[c] < e.threshold[c]) << c;
      bits = (bits ^ e.flip) & e.valid_mask;
      std::memcpy(static_cast<uint32_t*>(a.output) + m * a.out_pixel_stride, &bits, sizeof bits);
      break;
    }
  }
}

}  // namespace XNOR_ISA_NAMESPACE
}  // namespace xnor

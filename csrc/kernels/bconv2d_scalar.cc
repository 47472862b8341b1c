#include "kernels/bconv2d_common.h"

namespace xnor {

void bconv_block_scalar(const BconvKernelArgs& a) {
  const int taps = a.kernel_h * a.kernel_w;
  const int channels = a.epilogue->channels;
  int64_t pop[kBconvBlock];
  for (int p = a.pixel_begin; p < a.pixel_end; ++p) {
    const int oh = p / a.out_w;
    const int ow = p % a.out_w;
    for (int c = 0; c < kBconvBlock; ++c) pop[c] = 0;
    for (int t = 0; t < taps; ++t) {
      const uint64_t* row = bconv_tap_row(a, oh, ow, t / a.kernel_w, t % a.kernel_w);
      const uint64_t* w = a.weights + static_cast<int64_t>(t) * a.in_words * kBconvBlock;
      for (int iw = 0; iw < a.in_words; ++iw) {
        const uint64_t x = row[iw];
        for (int c = 0; c < channels; ++c) pop[c] += __builtin_popcountll(x ^ w[iw * kBconvBlock + c]);
      }
    }
    int64_t corr[kBconvBlock] = {0};
    if (a.tap_weight_sum != nullptr && bconv_pixel_touches_padding(a, oh, ow)) {
      bconv_for_each_padded_tap(a, oh, ow, [&](int t) {
        for (int c = 0; c < channels; ++c) corr[c] += a.tap_weight_sum[t * kBconvBlock + c];
      });
    }
    uint32_t bits = 0;
    for (int c = 0; c < channels; ++c) {
      const int64_t s = a.k_bits - 2 * pop[c] - corr[c];
      if (a.kind == OutputKind::kBits) {
        bits |= bconv_bit_scalar(*a.epilogue, c, s) << c;
      } else {
        bconv_store_scalar(a, p, c, s);
      }
    }
    if (a.kind == OutputKind::kBits) static_cast<uint32_t*>(a.output)[p * a.out_pixel_stride] = bits;
  }
}

}  // namespace xnor

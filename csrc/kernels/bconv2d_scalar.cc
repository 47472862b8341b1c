// Portable binary GEMM tile: the reference the SIMD paths must match bit for bit.
#include "kernels/bconv2d_common.h"

namespace xnor {

void bgemm_tile_scalar(const BgemmTileArgs& a) {
  const int channels = a.epilogue->channels;
  for (int m = 0; m < a.rows; ++m) {
    int64_t s[kBconvBlock];
    for (int c = 0; c < channels; ++c) {
      int64_t pop = 0;
      const uint64_t* w = a.weights + c;
      for (int t = 0; t < a.taps; ++t) {
        const uint64_t* x = a.pixel_base[m] + a.tap_offset[t];
        for (int i = 0; i < a.in_words; ++i, w += kBconvBlock) pop += __builtin_popcountll(x[i] ^ *w);
      }
      s[c] = a.k_bits - 2 * pop - bgemm_padding_correction(a, m, c);
    }
    bgemm_store_pixel_scalar(a, m, s);
  }
}

}  // namespace xnor

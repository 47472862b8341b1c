// Portable binary GEMM tile: the reference the SIMD paths must match bit for bit.
#include "microkernels/bconv2d_common.h"

namespace xnor {

void bgemm_tile_scalar(const BgemmTileArgs& a) {
  const int channels = block_channels(*a.epilogue);
  for (int m = 0; m < a.rows; ++m) {
    int64_t s[kBconvBlock];
    for (int c = 0; c < channels; ++c) {
      int64_t pop = 0;
      for (int k = 0; k < a.k_words; ++k)
        pop += __builtin_popcountll(a.pixel_base[m][a.k_offset[k]] ^ a.weights[k * a.weight_stride + c]);
      s[c] = a.k_bits - 2 * pop - bgemm_padding_correction(a, m, c);
    }
    bgemm_store_pixel_scalar(a, m, s);
  }
}

}  // namespace xnor

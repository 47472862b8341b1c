// Max-pooling of bit-packed NHWC activations. max over {+1, -1} is -1 only
// when every value is -1, i.e. the bitwise AND of the packed words (bit 1 =
// -1). Padded positions are ignored, like PyTorch's -inf padding.
// A channel whose bit is set in `min_mask` (same packing, null = none) takes the min instead: -1
// when any value is -1, the OR. That is the max-pool moved past a decreasing per-channel function
// (a BatchNorm with gamma < 0): g(max y) = min g(y).
#pragma once

#include <cstdint>

namespace xnor {

struct PoolGeometry {
  int in_h, in_w;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int out_h, out_w;
};

// in: [in_h][in_w][words]; out: [out_h][out_w][words]; min_mask: [words] or null; one image, output
// rows [row_begin, row_end).
using BinaryMaxPoolFn = void (*)(const uint64_t* in, int words, const PoolGeometry& g, int row_begin, int row_end,
                                 const uint64_t* min_mask, uint64_t* out);

void binary_maxpool_scalar(const uint64_t* in, int words, const PoolGeometry& g, int row_begin, int row_end,
                           const uint64_t* min_mask, uint64_t* out);
void binary_maxpool_avx2(const uint64_t* in, int words, const PoolGeometry& g, int row_begin, int row_end,
                         const uint64_t* min_mask, uint64_t* out);
void binary_maxpool_avx512(const uint64_t* in, int words, const PoolGeometry& g, int row_begin, int row_end,
                           const uint64_t* min_mask, uint64_t* out);

}  // namespace xnor

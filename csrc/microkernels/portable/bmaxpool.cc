// The binary max-pool loop, written once and compiled per ISA (per_isa.h):
// the word loops are plain AND / OR, which the compiler vectorises for each target.
#include "microkernels/bmaxpool.h"

#include <algorithm>

#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE {

inline void binary_maxpool(const uint64_t* in, int words, const PoolGeometry& g, int row_begin, int row_end,
                           const uint64_t* min_mask, uint64_t* out) {
  // With a min mask the OR of a window goes to a stack block, kChunk words at a time (no allocation).
  constexpr int kChunk = 64;
  uint64_t any[kChunk];
  for (int oy = row_begin; oy < row_end; ++oy) {
    const int y0 = std::max(0, oy * g.stride_h - g.pad_h);
    const int y1 = std::min(g.in_h, oy * g.stride_h - g.pad_h + g.kernel_h);
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int x0 = std::max(0, ox * g.stride_w - g.pad_w);
      const int x1 = std::min(g.in_w, ox * g.stride_w - g.pad_w + g.kernel_w);
      uint64_t* __restrict dst = out + (static_cast<int64_t>(oy) * g.out_w + ox) * words;
      if (min_mask == nullptr) {
        for (int w = 0; w < words; ++w) dst[w] = ~uint64_t{0};
        for (int y = y0; y < y1; ++y) {
          for (int x = x0; x < x1; ++x) {
            const uint64_t* __restrict src = in + (static_cast<int64_t>(y) * g.in_w + x) * words;
            for (int w = 0; w < words; ++w) dst[w] &= src[w];
          }
        }
        continue;
      }
      for (int w0 = 0; w0 < words; w0 += kChunk) {
        const int n = std::min(kChunk, words - w0);
        uint64_t* __restrict all = dst + w0;
        for (int w = 0; w < n; ++w) {
          all[w] = ~uint64_t{0};
          any[w] = 0;
        }
        for (int y = y0; y < y1; ++y) {
          for (int x = x0; x < x1; ++x) {
            const uint64_t* __restrict src = in + (static_cast<int64_t>(y) * g.in_w + x) * words + w0;
            for (int w = 0; w < n; ++w) {
              all[w] &= src[w];
              any[w] |= src[w];
            }
          }
        }
        const uint64_t* m = min_mask + w0;
        for (int w = 0; w < n; ++w) all[w] = (all[w] & ~m[w]) | (any[w] & m[w]);
      }
    }
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_BMAXPOOL_KERNEL(isa)                                                                      \
  void binary_maxpool_##isa(const uint64_t* in, int words, const PoolGeometry& g, int row_begin, int row_end, \
                            const uint64_t* min_mask, uint64_t* out) {                                        \
    isa::binary_maxpool(in, words, g, row_begin, row_end, min_mask, out);                                     \
  }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_BMAXPOOL_KERNEL)
}  // namespace xnor

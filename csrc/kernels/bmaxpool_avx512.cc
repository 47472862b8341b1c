#include "kernels/bmaxpool_impl.h"

namespace xnor {

void binary_maxpool_avx512(const uint64_t* in, int words, const PoolGeometry& g, int row_begin, int row_end,
                    uint64_t* out) {
  binary_maxpool_impl(in, words, g, row_begin, row_end, out);
}

}  // namespace xnor

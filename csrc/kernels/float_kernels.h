// Float kernels (first/last layers, pooling): the function-pointer table that
// csrc/runtime/dispatch.cc picks per ISA. Owned by the float-kernel files.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xnor {

// Placeholder entry until the float kernels land; replaced by real members.
struct FloatKernels {
  int reserved;
};

constexpr FloatKernels float_kernels_scalar_table() { return FloatKernels{0}; }
constexpr FloatKernels float_kernels_avx2_table() { return FloatKernels{1}; }
constexpr FloatKernels float_kernels_avx512_table() { return FloatKernels{2}; }

}  // namespace xnor

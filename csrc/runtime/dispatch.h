// The one place that maps an ISA path to its kernels. Tables are immutable;
// callers pick a table per call from the Isa they were given.
#pragma once

#include "kernels/bconv2d_microkernel.h"
#include "kernels/bitpack.h"
#include "kernels/bmaxpool.h"
#include "kernels/elementwise.h"
#include "kernels/float_kernels.h"
#include "runtime/isa.h"

namespace xnor {

struct BinaryKernels {
  BitpackRowsFn bitpack_rows;
  BitpackPlanarFn bitpack_planar;
  BgemmTileFn bgemm_tile;
  BinaryMaxPoolFn binary_maxpool;
};

// Throws std::runtime_error when the CPU cannot run `isa`.
const BinaryKernels& binary_kernels(Isa isa);
const FloatKernels& float_kernels(Isa isa);
const ElementwiseKernels& elementwise_kernels(Isa isa);

}  // namespace xnor

// The one place that maps an ISA path to its kernels. Tables are immutable;
// callers pick a table per call from the Isa they were given.
#pragma once

#include "microkernels/bconv2d_microkernel.h"
#include "microkernels/bitplane.h"
#include "microkernels/bmaxpool.h"
#include "microkernels/bwconv.h"
#include "microkernels/dwconv.h"
#include "microkernels/elementwise.h"
#include "microkernels/float_kernels.h"
#include "microkernels/isa.h"
#include "microkernels/tbconv.h"

namespace xnor {

struct BinaryKernels {
  BgemmTileFn bgemm_tile;
  BinaryMaxPoolFn binary_maxpool;
  BwconvRowFn bwconv_row;
  TbconvRowFn tbconv_row;
  BitplaneFn bitplane;
};

// Throws std::runtime_error when the CPU cannot run `isa`.
const BinaryKernels& binary_kernels(Isa isa);
const FloatKernels& float_kernels(Isa isa);
const FloatConvKernels& float_conv_kernels(Isa isa);
const ElementwiseKernels& elementwise_kernels(Isa isa);

}  // namespace xnor

#include "runtime/dispatch.h"

#include <stdexcept>
#include <string>

namespace xnor {
namespace {

void require(Isa isa) {
  if (!isa_available(isa)) {
    throw std::runtime_error(std::string("ISA path '") + isa_name(isa) + "' is not supported by this CPU");
  }
}

constexpr BinaryKernels kBinaryScalar{bitpack_rows_scalar, bitpack_planar_scalar, bconv_block_scalar,
                                      binary_maxpool_scalar};
constexpr BinaryKernels kBinaryAvx2{bitpack_rows_avx2, bitpack_planar_avx2, bconv_block_avx2,
                                    binary_maxpool_avx2};
constexpr BinaryKernels kBinaryAvx512{bitpack_rows_avx512, bitpack_planar_avx512, bconv_block_avx512,
                                      binary_maxpool_avx512};

// --- float kernels (first/last layers, pooling) ---------------------------
constexpr FloatKernels kFloatScalar = float_kernels_scalar_table();
constexpr FloatKernels kFloatAvx2 = float_kernels_avx2_table();
constexpr FloatKernels kFloatAvx512 = float_kernels_avx512_table();

}  // namespace

const BinaryKernels& binary_kernels(Isa isa) {
  require(isa);
  switch (isa) {
    case Isa::kScalar: return kBinaryScalar;
    case Isa::kAvx2: return kBinaryAvx2;
    case Isa::kAvx512: return kBinaryAvx512;
  }
  return kBinaryScalar;
}

const FloatKernels& float_kernels(Isa isa) {
  require(isa);
  switch (isa) {
    case Isa::kScalar: return kFloatScalar;
    case Isa::kAvx2: return kFloatAvx2;
    case Isa::kAvx512: return kFloatAvx512;
  }
  return kFloatScalar;
}

}  // namespace xnor

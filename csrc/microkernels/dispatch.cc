#include "microkernels/dispatch.h"

#include <stdexcept>
#include <string>

namespace xnor {
namespace {

void require(Isa isa) {
  if (!isa_available(isa)) {
    throw std::runtime_error(std::string("ISA path '") + isa_name(isa) + "' is not supported by this CPU");
  }
}

constexpr BinaryKernels kBinaryScalar{bgemm_tile_scalar, binary_maxpool_scalar, bwconv_row_scalar, tbconv_row_scalar,
                                      bitplane_scalar};
constexpr BinaryKernels kBinaryAvx2{bgemm_tile_avx2, binary_maxpool_avx2, bwconv_row_avx2, tbconv_row_avx2,
                                    bitplane_avx2};
constexpr BinaryKernels kBinaryAvx512{bgemm_tile_avx512, binary_maxpool_avx512, bwconv_row_avx512, tbconv_row_avx512,
                                      bitplane_avx512};

// --- float kernels (first/last layers, pooling) ---------------------------
constexpr FloatKernels kFloatScalar{sgemm_scalar, fmaxpool_scalar, favgpool_scalar, fglobal_avgpool_scalar};
constexpr FloatKernels kFloatAvx2{sgemm_avx2, fmaxpool_avx2, favgpool_avx2, fglobal_avgpool_avx2};
constexpr FloatKernels kFloatAvx512{sgemm_avx512, fmaxpool_avx512, favgpool_avx512, fglobal_avgpool_avx512};

// --- float convolution kernels (depthwise) -------------------------------
constexpr FloatConvKernels kFloatConvScalar{dwconv_scalar};
constexpr FloatConvKernels kFloatConvAvx2{dwconv_avx2};
constexpr FloatConvKernels kFloatConvAvx512{dwconv_avx512};

// --- graph element-wise / layout kernels (runtime ops) -------------------
#define XNOR_ELEMENTWISE_TABLE(isa)                                                                                \
  ElementwiseKernels {                                                                                             \
    affine_##isa, prelu_##isa, relu_##isa, hardtanh_##isa, sigmoid_##isa, add_##isa, mul_##isa, mul_channel_##isa, \
        softmax_##isa, sign_##isa, unpack_##isa, nchw_to_nhwc_##isa, concat_##isa, bconcat_##isa, compare_##isa,   \
        round_even_##isa, floor_##isa, abs_##isa, neg_##isa                                                        \
  }
constexpr ElementwiseKernels kElementwiseScalar = XNOR_ELEMENTWISE_TABLE(scalar);
constexpr ElementwiseKernels kElementwiseAvx2 = XNOR_ELEMENTWISE_TABLE(avx2);
constexpr ElementwiseKernels kElementwiseAvx512 = XNOR_ELEMENTWISE_TABLE(avx512);
#undef XNOR_ELEMENTWISE_TABLE

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

const FloatConvKernels& float_conv_kernels(Isa isa) {
  require(isa);
  switch (isa) {
    case Isa::kScalar: return kFloatConvScalar;
    case Isa::kAvx2: return kFloatConvAvx2;
    case Isa::kAvx512: return kFloatConvAvx512;
  }
  return kFloatConvScalar;
}

const ElementwiseKernels& elementwise_kernels(Isa isa) {
  require(isa);
  switch (isa) {
    case Isa::kScalar: return kElementwiseScalar;
    case Isa::kAvx2: return kElementwiseAvx2;
    case Isa::kAvx512: return kElementwiseAvx512;
  }
  return kElementwiseScalar;
}

}  // namespace xnor

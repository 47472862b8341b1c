// Portable depthwise convolution (the reference operation order, std::fma per tap).
#include "microkernels/dwconv_impl.h"

namespace xnor {

XNOR_DEFINE_DWCONV(scalar, dwconv_detail::ScalarOps)

}  // namespace xnor

// Float element-wise kernels, scalar build (the loops live in eltwise_impl.h).
#include "kernels/elementwise.h"
#include "kernels/eltwise_impl.h"

namespace xnor {
XNOR_DEFINE_ELTWISE_KERNELS(scalar)
}  // namespace xnor

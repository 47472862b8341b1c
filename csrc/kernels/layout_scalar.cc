// Transpose and concatenation kernels, scalar build (the loops live in layout_impl.h).
#include "kernels/elementwise.h"
#include "kernels/layout_impl.h"

namespace xnor {
XNOR_DEFINE_LAYOUT_KERNELS(scalar)
}  // namespace xnor

// Transpose and concatenation kernels, avx2 build (the loops live in layout_impl.h).
#include "kernels/elementwise.h"
#include "kernels/layout_impl.h"

namespace xnor {
XNOR_DEFINE_LAYOUT_KERNELS(avx2)
}  // namespace xnor

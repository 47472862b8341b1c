// Sign and unpack kernels, scalar build (the loops live in bsign_impl.h).
#include "kernels/bsign_impl.h"
#include "kernels/elementwise.h"

namespace xnor {
XNOR_DEFINE_BSIGN_KERNELS(scalar, bsign_impl)
}  // namespace xnor

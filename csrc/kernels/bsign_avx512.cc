// Sign and unpack kernels, avx512 build (the loops live in bsign_impl.h).
#include "kernels/bsign_impl.h"
#include "kernels/elementwise.h"

namespace xnor {
XNOR_DEFINE_BSIGN_KERNELS(avx512)
}  // namespace xnor

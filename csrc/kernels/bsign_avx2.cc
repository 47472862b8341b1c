// Sign and unpack kernels, avx2 build: AVX2 compares and masks (bsign_x86.h), the same code
// on both x86 paths.
#include "kernels/bsign_x86.h"
#include "kernels/elementwise.h"

namespace xnor {
XNOR_DEFINE_BSIGN_KERNELS(avx2, bsign_x86)
}  // namespace xnor

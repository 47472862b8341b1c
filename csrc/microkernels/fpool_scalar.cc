// Portable float max/avg/global-average pooling (the reference operation order).
#include "microkernels/fpool_impl.h"

namespace xnor {

XNOR_DEFINE_FPOOL(scalar, fpool_detail::ScalarOps)

}  // namespace xnor

// Row softmax kernel, scalar build (the loop lives in softmax_impl.h).
#include "kernels/elementwise.h"
#include "kernels/softmax_impl.h"

namespace xnor {
void softmax_scalar(const float* x, size_t rows, size_t features, float* y) {
  softmax_impl::softmax(x, rows, features, y);
}
}  // namespace xnor

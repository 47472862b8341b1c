// Row softmax (see elementwise.h for the exact operation order), written
// once and compiled per ISA (per_isa.h).
#include <cmath>
#include <cstddef>

#include "microkernels/elementwise.h"
#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE {

inline void softmax(const float* x, size_t rows, size_t features, float* y) {
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * features;
    float* yr = y + r * features;
    float m = xr[0];
    for (size_t i = 1; i < features; ++i) m = (xr[i] > m) ? xr[i] : m;
    float s = 0.0f;
    for (size_t i = 0; i < features; ++i) {
      yr[i] = std::exp(xr[i] - m);
      s = s + yr[i];
    }
    for (size_t i = 0; i < features; ++i) yr[i] = yr[i] / s;
  }
}

}  // namespace xnor::XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_SOFTMAX_KERNEL(isa) \
  void softmax_##isa(const float* x, size_t rows, size_t features, float* y) { isa::softmax(x, rows, features, y); }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_SOFTMAX_KERNEL)
}  // namespace xnor

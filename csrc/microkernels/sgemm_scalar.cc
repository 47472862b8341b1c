// Portable SGEMM panel kernel: the reference order of operations (see
// float_kernels.h) written out with std::fma.
#include <cmath>

#include "microkernels/float_kernels.h"

namespace xnor {

void sgemm_scalar(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* w, const float* bias, float* c,
                  size_t ldc, bool relu) {
  float acc[kSgemmPanelWidth];
  for (size_t i = 0; i < m; ++i) {
    const float* ai = a + i * lda;
    for (size_t j = 0; j < n; ++j) acc[j] = 0.0f;
    for (size_t kk = 0; kk < k; ++kk) {
      const float av = ai[kk];
      const float* wk = w + kk * kSgemmPanelWidth;
      for (size_t j = 0; j < n; ++j) acc[j] = std::fma(av, wk[j], acc[j]);
    }
    float* ci = c + i * ldc;
    for (size_t j = 0; j < n; ++j) {
      const float y = acc[j] + bias[j];
      ci[j] = relu ? (y > 0.0f ? y : 0.0f) : y;
    }
  }
}

}  // namespace xnor

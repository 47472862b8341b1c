#include "operators/sgemm_packed.h"

#include <stdexcept>

namespace xnor {

PackedSgemmWeights::PackedSgemmWeights(size_t n, size_t k, const float* weights, const float* bias)
    : n_(n),
      k_(k),
      panels_((n + kSgemmPanelWidth - 1) / kSgemmPanelWidth),
      weights_(panels_ * k * kSgemmPanelWidth),
      bias_(panels_ * kSgemmPanelWidth) {
  if (n == 0 || k == 0) throw std::invalid_argument("PackedSgemmWeights: empty weight matrix");
  float* w = weights_.data();
  for (size_t j = 0; j < n; ++j) {
    const size_t p = j / kSgemmPanelWidth, col = j % kSgemmPanelWidth;
    float* dst = w + p * k * kSgemmPanelWidth + col;
    const float* src = weights + j * k;
    for (size_t kk = 0; kk < k; ++kk) dst[kk * kSgemmPanelWidth] = src[kk];
    if (bias) bias_.data()[j] = bias[j];
  }
}

void PackedSgemmWeights::run_panel(const FloatKernels& kern, size_t panel, size_t m, const float* a, size_t lda,
                                   float* c, size_t ldc, bool relu) const {
  const size_t col0 = panel * kSgemmPanelWidth;
  const size_t cols = n_ - col0 < kSgemmPanelWidth ? n_ - col0 : kSgemmPanelWidth;
  kern.sgemm(m, cols, k_, a, lda, weights_.data() + panel * k_ * kSgemmPanelWidth,
             bias_.data() + panel * kSgemmPanelWidth, c + col0, ldc, relu);
}

}  // namespace xnor

#include "operators/linear.h"

#include <algorithm>

#include "microkernels/dispatch.h"

namespace xnor {

FloatLinear::FloatLinear(size_t out_features, size_t in_features, const float* weights, const float* bias, bool relu)
    : weights_(out_features, in_features, weights, bias), relu_(relu) {}

void FloatLinear::run(const float* x, size_t m, float* y, TaskRunner* pool, Isa isa,
                      const GemmEpilogue* epilogue) const {
  if (m == 0) return;
  const FloatKernels& kern = float_kernels(isa);
  constexpr size_t kRows = 96;
  const size_t row_tiles = (m + kRows - 1) / kRows;
  const size_t panels = weights_.panels();
  const size_t k = weights_.k(), n = weights_.n();
  parallel_for(pool, row_tiles * panels, 1, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; ++t) {
      const size_t r0 = (t / panels) * kRows, p = t % panels, rows = std::min(kRows, m - r0);
      weights_.run_panel(kern, p, rows, x + r0 * k, k, y + r0 * n, n, relu_);
      if (epilogue != nullptr) {
        const size_t col0 = p * kSgemmPanelWidth;
        (*epilogue)(r0, rows, col0, std::min<size_t>(kSgemmPanelWidth, n - col0));
      }
    }
  });
}

}  // namespace xnor

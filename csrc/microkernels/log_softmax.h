// Row log-softmax: y = (x - max) - log(sum(exp(x - max))), the sum accumulated in
// double. One portable implementation for every ISA path (it runs once per
// output row, so results are identical across ISAs and thread counts).
#pragma once

#include <cmath>
#include <cstddef>

namespace xnor {

inline void log_softmax_rows(const float* x, size_t rows, size_t features, float* y) {
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * features;
    float* yr = y + r * features;
    float m = xr[0];
    for (size_t i = 1; i < features; ++i) m = (xr[i] > m) ? xr[i] : m;
    double s = 0.0;
    for (size_t i = 0; i < features; ++i) s += std::exp(static_cast<double>(xr[i]) - static_cast<double>(m));
    const double log_s = std::log(s);
    for (size_t i = 0; i < features; ++i) {
      yr[i] = static_cast<float>((static_cast<double>(xr[i]) - static_cast<double>(m)) - log_s);
    }
  }
}

}  // namespace xnor

// Row softmax (see elementwise.h for the exact operation order), written
// once and compiled per ISA by softmax_<isa>.cc.
#pragma once

#include <cmath>
#include <cstddef>

namespace xnor::softmax_impl {

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

}  // namespace xnor::softmax_impl

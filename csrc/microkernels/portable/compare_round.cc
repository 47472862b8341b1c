// Element-wise float ops of the general graph: comparisons with a per-channel
// constant (0/1 floats), round (half to even), floor, abs, neg. Written once,
// compiled per ISA (per_isa.h); every op is exact in IEEE arithmetic, so all
// paths agree bit for bit (elementwise.h has the contract).
#include <cmath>
#include <cstddef>

#include "microkernels/elementwise.h"
#include "microkernels/per_isa.h"

namespace xnor::XNOR_ISA_NAMESPACE {

template <typename Cmp>
inline void compare_rows(const float* x, size_t rows, size_t channels, const float* t, float* y, Cmp cmp) {
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * channels;
    float* __restrict yr = y + r * channels;
    for (size_t c = 0; c < channels; ++c) yr[c] = cmp(xr[c], t[c]) ? 1.0f : 0.0f;
  }
}

inline void compare(const float* x, size_t rows, size_t channels, const float* t, CompareOp op, float* y) {
  switch (op) {
    case CompareOp::kGt: compare_rows(x, rows, channels, t, y, [](float a, float b) { return a > b; }); break;
    case CompareOp::kGe: compare_rows(x, rows, channels, t, y, [](float a, float b) { return a >= b; }); break;
    case CompareOp::kLt: compare_rows(x, rows, channels, t, y, [](float a, float b) { return a < b; }); break;
    case CompareOp::kLe: compare_rows(x, rows, channels, t, y, [](float a, float b) { return a <= b; }); break;
    case CompareOp::kEq: compare_rows(x, rows, channels, t, y, [](float a, float b) { return a == b; }); break;
    case CompareOp::kNe: compare_rows(x, rows, channels, t, y, [](float a, float b) { return a != b; }); break;
  }
}

// nearbyint rounds in the current mode, which the runtime never changes from
// round-to-nearest-even: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2 (torch.round's rule).
inline void round_even(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = std::nearbyint(x[i]);
}

inline void floor(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = std::floor(x[i]);
}

inline void abs(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = std::fabs(x[i]);
}

inline void neg(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = -x[i];
}

}  // namespace xnor::XNOR_ISA_NAMESPACE

#define XNOR_DEFINE_COMPARE_ROUND_KERNELS(isa)                                                               \
  void compare_##isa(const float* x, size_t rows, size_t channels, const float* t, CompareOp op, float* y) { \
    isa::compare(x, rows, channels, t, op, y);                                                               \
  }                                                                                                          \
  void round_even_##isa(const float* x, size_t n, float* y) { isa::round_even(x, n, y); }                    \
  void floor_##isa(const float* x, size_t n, float* y) { isa::floor(x, n, y); }                              \
  void abs_##isa(const float* x, size_t n, float* y) { isa::abs(x, n, y); }                                  \
  void neg_##isa(const float* x, size_t n, float* y) { isa::neg(x, n, y); }

namespace xnor {
XNOR_ISA_KERNELS(XNOR_DEFINE_COMPARE_ROUND_KERNELS)
}  // namespace xnor

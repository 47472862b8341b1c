// Weights of a float GEMM (C = A * W^T + bias), packed once into 32-column
// panels for the SGEMM panel kernels of every ISA. Shared by FloatConv2d and
// FloatLinear.
#pragma once

#include <cstddef>

#include "microkernels/float_kernels.h"
#include "operators/aligned_buffer.h"

namespace xnor {

// Work a float GEMM operator (FloatConv2d, FloatLinear) does on each block of its output right
// after writing it, on the thread that wrote it (while the block is in cache): called with rows
// [row, row + rows) and columns [col, col + cols) of the row-major output (all columns per row).
// Every output value is in exactly one block. Blocks depend on the thread count; the epilogue must
// not (an element-wise function of the block's values).
class GemmEpilogue {
 public:
  virtual void operator()(size_t row, size_t rows, size_t col, size_t cols) const = 0;

 protected:
  ~GemmEpilogue() = default;
};

class PackedSgemmWeights {
 public:
  // weights: [n][k] row-major (output-major, as torch's Linear and OHWI conv
  // weights flattened); bias: [n] or nullptr (zeros).
  PackedSgemmWeights(size_t n, size_t k, const float* weights, const float* bias);

  size_t n() const { return n_; }
  size_t k() const { return k_; }
  size_t panels() const { return panels_; }

  // Output columns [32 * panel, ...) for rows [0, m): c[i * ldc + j] for the
  // panel's columns j, from a[i * lda + 0..k).
  void run_panel(const FloatKernels& kern, size_t panel, size_t m, const float* a, size_t lda, float* c, size_t ldc,
                 bool relu) const;

 private:
  size_t n_, k_, panels_;
  AlignedFloats weights_;  // [panels][k][32]
  AlignedFloats bias_;     // [panels][32]
};

}  // namespace xnor

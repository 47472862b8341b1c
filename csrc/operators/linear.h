// Float fully-connected operator (last layers): y[M,N] = x[M,K] * W[N,K]^T + b,
// weights packed once into SGEMM panels; x is read in place. Work is split
// over (row tile, panel) pairs; each output element is one FMA chain over
// k = 0..K-1, so results do not depend on the ISA path or the thread count.
#pragma once

#include <cstddef>

#include "microkernels/isa.h"
#include "operators/parallel.h"
#include "operators/sgemm_packed.h"

namespace xnor {

class FloatLinear {
 public:
  // weights: [out_features][in_features]; bias: [out_features] or nullptr.
  FloatLinear(size_t out_features, size_t in_features, const float* weights, const float* bias, bool relu = false);

  size_t in_features() const { return weights_.k(); }
  size_t out_features() const { return weights_.n(); }

  // x: [m][in_features]; y: [m][out_features]. `epilogue`, when given, is called on every block
  // of y right after it is written.
  void run(const float* x, size_t m, float* y, TaskRunner* pool, Isa isa, const GemmEpilogue* epilogue = nullptr) const;

 private:
  PackedSgemmWeights weights_;
  bool relu_;
};

}  // namespace xnor

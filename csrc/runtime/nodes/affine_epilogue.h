// The fused affine op (ctx.affine, Session::plan_fusion) of a float GEMM operator's output, as the
// operator's GemmEpilogue: each block of the output y goes through the affine op's own kernel
// (ctx.ew->affine, y = fma(x, scale[c], shift[c])) into the affine op's output right after the
// operator wrote it, so the values are the ones the separate affine op would have written.
#pragma once

#include <cstddef>

#include "operators/sgemm_packed.h"
#include "runtime/nodes.h"

namespace xnor::nodes {

class AffineRows final : public GemmEpilogue {
 public:
  // y: the operator's output, rows of ctx.affine->channels values.
  AffineRows(const RunContext& ctx, const float* y) : ctx_(ctx), y_(y) {}

  // The epilogue to pass the operator: this, or null when no affine is fused into the step.
  const GemmEpilogue* get() const { return ctx_.affine == nullptr ? nullptr : this; }

  void operator()(size_t row, size_t rows, size_t col, size_t cols) const override {
    const AffineEpilogue& a = *ctx_.affine;
    const size_t c = static_cast<size_t>(a.channels);
    if (col == 0 && cols == c) {  // whole rows: one call
      ctx_.ew->affine(y_ + row * c, rows, c, a.scale, a.shift, ctx_.affine_out + row * c);
      return;
    }
    for (size_t r = row; r < row + rows; ++r) {
      ctx_.ew->affine(y_ + r * c + col, 1, cols, a.scale + col, a.shift + col, ctx_.affine_out + r * c + col);
    }
  }

 private:
  const RunContext& ctx_;
  const float* y_;
};

}  // namespace xnor::nodes

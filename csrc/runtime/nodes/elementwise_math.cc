// Element-wise float ops of the general graph: compare (x OP threshold[c] -> 1.0f / 0.0f),
// round (half to even), floor, abs, neg. Kernels: microkernels/portable/compare_round.cc.
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kCompareAttrs[] = {{"cmp", AttrType::kString, true}};
constexpr ParamSchema kCompareParams[] = {{"threshold", ParamDType::kFloat32, true}};

// threshold: (C,) per channel (last axis) or (1,) for every element.
class CompareNode final : public SameShapeNode {
 public:
  CompareNode(const OpArgs& a, CompareOp op, std::vector<float> threshold)
      : SameShapeNode(a, DType::kF32, DType::kF32, threshold.size() > 1 ? static_cast<int64_t>(threshold.size()) : 0),
        op_(op),
        threshold_(std::move(threshold)) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    if (channels_ > 0) {
      const int64_t c = channels_;
      for_rows(ctx, s[0].rows(), c,
               [&](size_t r, size_t n) { ctx.ew->compare(x + r * c, n, c, threshold_.data(), op_, y + r * c); });
      return;
    }
    parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain,
                 [&](size_t b, size_t e) { ctx.ew->compare(x + b, e - b, 1, threshold_.data(), op_, y + b); });
  }
  size_t held_bytes() const override { return threshold_.size() * sizeof(float); }

 private:
  CompareOp op_;
  std::vector<float> threshold_;
};

class MathNode final : public SameShapeNode {
 public:
  MathNode(const OpArgs& a, UnaryFn ElementwiseKernels::* fn)
      : SameShapeNode(a, DType::kF32, DType::kF32, 0), fn_(fn) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const UnaryFn fn = ctx.ew->*fn_;
    parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain,
                 [&](size_t b, size_t e) { fn(x + b, e - b, y + b); });
  }

 private:
  UnaryFn ElementwiseKernels::* fn_;
};

}  // namespace

const OpSchema compare_schema{"compare", 1, 1, kCompareAttrs, kCompareParams};
const OpSchema round_schema{"round", 1, 1, {}, {}};
const OpSchema floor_schema{"floor", 1, 1, {}, {}};
const OpSchema abs_schema{"abs", 1, 1, {}, {}};
const OpSchema neg_schema{"neg", 1, 1, {}, {}};

std::unique_ptr<Node> make_compare(const OpArgs& a) {
  static constexpr const char* kNames[] = {"gt", "ge", "lt", "le", "eq", "ne"};
  const std::string cmp = a.string("cmp", "");
  int op = -1;
  for (int i = 0; i < 6; ++i) {
    if (cmp == kNames[i]) op = i;
  }
  if (op < 0) a.fail("cmp must be one of gt, ge, lt, le, eq, ne, got '" + cmp + "'");
  const ParamView* t = a.param("threshold");
  if (t->shape.size() != 1 || t->shape[0] < 1) a.fail("threshold must be (C,) or (1,), got " + shape_str(t->shape));
  return std::make_unique<CompareNode>(a, static_cast<CompareOp>(op), copy_f32(t));
}

std::unique_ptr<Node> make_round(const OpArgs& a) {
  return std::make_unique<MathNode>(a, &ElementwiseKernels::round_even);
}
std::unique_ptr<Node> make_floor(const OpArgs& a) { return std::make_unique<MathNode>(a, &ElementwiseKernels::floor); }
std::unique_ptr<Node> make_abs(const OpArgs& a) { return std::make_unique<MathNode>(a, &ElementwiseKernels::abs); }
std::unique_ptr<Node> make_neg(const OpArgs& a) { return std::make_unique<MathNode>(a, &ElementwiseKernels::neg); }

}  // namespace xnor::ops

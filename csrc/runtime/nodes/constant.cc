// constant: no input; the output is the parameter `value` (float32, rank 1 to kMaxRank) with its
// exact shape, copied into the planned buffer on every run. Operands of binary / where / concat /
// matmul broadcast it (a batch-1 constant over N).
#include <algorithm>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr ParamSchema kConstantParams[] = {{"value", ParamDType::kFloat32, true}};

class ConstantNode final : public Node {
 public:
  ConstantNode(const OpArgs& a, const Shape& shape, std::vector<float> value)
      : Node(a.op(), {DType::kF32}, DType::kF32), shape_(shape), value_(std::move(value)) {}
  Shape infer(const Shape*, size_t count) const override {
    if (count != 0) fail("takes no inputs");
    return shape_;
  }
  void run(const RunContext& ctx, const void* const*, const Shape*, size_t, void* out, const Shape&) const override {
    float* y = static_cast<float*>(out);
    const float* v = value_.data();
    parallel_for(ctx.pool, value_.size(), kElementGrain, [&](size_t b, size_t e) { std::copy(v + b, v + e, y + b); });
  }
  size_t held_bytes() const override { return value_.size() * sizeof(float); }

 private:
  Shape shape_;
  std::vector<float> value_;
};

}  // namespace

const OpSchema constant_schema{"constant", 0, 0, {}, kConstantParams};

std::unique_ptr<Node> make_constant(const OpArgs& a) {
  const ParamView* v = a.param("value");
  if (v->shape.empty() || v->shape.size() > static_cast<size_t>(kMaxRank)) {
    a.fail("value must have rank 1 to " + std::to_string(kMaxRank) + ", got " + shape_str(v->shape));
  }
  Shape s;
  s.rank = static_cast<int>(v->shape.size());
  for (int i = 0; i < s.rank; ++i) s.d[i] = v->shape[static_cast<size_t>(i)];
  try {
    checked_bytes(s, DType::kF32, "value");
  } catch (const std::invalid_argument& e) {
    a.fail(e.what());
  }
  return std::make_unique<ConstantNode>(a, s, copy_f32(v));
}

}  // namespace xnor::ops

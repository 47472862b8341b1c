// Float element-wise activations: relu, sigmoid, hardtanh (clamp to [min_val, max_val]).
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kHardtanhAttrs[] = {{"min_val", AttrType::kFloat, true}, {"max_val", AttrType::kFloat, true}};

class UnaryNode final : public SameShapeNode {
 public:
  enum class Fn { kRelu, kSigmoid, kHardtanh };
  UnaryNode(const OpArgs& a, Fn fn, float lo = 0, float hi = 0)
      : SameShapeNode(a, DType::kF32, DType::kF32, 0), fn_(fn), lo_(lo), hi_(hi) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain, [&](size_t b, size_t e) {
      switch (fn_) {
        case Fn::kRelu: ctx.ew->relu(x + b, e - b, y + b); break;
        case Fn::kSigmoid: ctx.ew->sigmoid(x + b, e - b, y + b); break;
        case Fn::kHardtanh: ctx.ew->hardtanh(x + b, e - b, lo_, hi_, y + b); break;
      }
    });
  }

 private:
  Fn fn_;
  float lo_, hi_;
};

}  // namespace

const OpSchema relu_schema{"relu", 1, 1, {}, {}};
const OpSchema sigmoid_schema{"sigmoid", 1, 1, {}, {}};
const OpSchema hardtanh_schema{"hardtanh", 1, 1, kHardtanhAttrs, {}};

std::unique_ptr<Node> make_relu(const OpArgs& a) { return std::make_unique<UnaryNode>(a, UnaryNode::Fn::kRelu); }

std::unique_ptr<Node> make_sigmoid(const OpArgs& a) { return std::make_unique<UnaryNode>(a, UnaryNode::Fn::kSigmoid); }

std::unique_ptr<Node> make_hardtanh(const OpArgs& a) {
  const double lo = a.number("min_val"), hi = a.number("max_val");
  if (!(lo <= hi)) a.fail("min_val must be <= max_val");
  return std::make_unique<UnaryNode>(a, UnaryNode::Fn::kHardtanh, static_cast<float>(lo), static_cast<float>(hi));
}

}  // namespace xnor::ops

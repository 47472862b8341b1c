// tanh: y = tanh(x), float32 (std::tanh; one implementation for every ISA path, so every path
// gives the same bits). The worked example of docs/adding-an-op.md.
#include <cmath>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

class TanhNode final : public SameShapeNode {
 public:
  explicit TanhNode(const OpArgs& a) : SameShapeNode(a, DType::kF32, DType::kF32, 0) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) y[i] = std::tanh(x[i]);
    });
  }
};

}  // namespace

const OpSchema tanh_schema{"tanh", 1, 1, {}, {}};

std::unique_ptr<Node> make_tanh(const OpArgs& a) { return std::make_unique<TanhNode>(a); }

}  // namespace xnor::ops

// flatten: NHWC float -> (N, H*W*C), a view of the input's storage.
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

class FlattenNode final : public Node {
 public:
  explicit FlattenNode(const OpArgs& a) : Node(a.op(), {DType::kF32}, DType::kF32) {}
  bool aliases_input() const override { return true; }
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be NHWC, got " + in[0].str());
    return Shape::nf(in[0].d[0], in[0].d[1] * in[0].d[2] * in[0].d[3]);
  }
  void run(const RunContext&, const void* const*, const Shape*, size_t, void*, const Shape&) const override {}
};

}  // namespace

const OpSchema flatten_schema{"flatten", 1, 1, {}, {}};

std::unique_ptr<Node> make_flatten(const OpArgs& a) { return std::make_unique<FlattenNode>(a); }

}  // namespace xnor::ops

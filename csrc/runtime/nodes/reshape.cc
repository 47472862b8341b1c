// reshape: the same row-major elements under another shape, a view of the input's storage.
// The attribute is the output shape at batch 1: when shape[0] == 1 and the per-image element
// counts agree, the output's axis 0 is the input's (the batch carries through); otherwise the
// shape is taken as written and the element counts must agree (docs/ir.md).
#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kShapeAttrs[] = {{"shape", AttrType::kInts, true}};

class ReshapeNode final : public Node {
 public:
  explicit ReshapeNode(const OpArgs& a)
      : Node(a.op(), {DType::kF32}, DType::kF32), shape_(int_list(a, "shape", 1, kMaxDim)) {}
  bool aliases_input() const override { return true; }
  Shape infer(const Shape* in, size_t) const override {
    Shape out = shape_;
    // in[0] is a checked tensor shape; the attribute's products are checked (-1 when too large).
    const int64_t per_image = checked_span(shape_, 1, shape_.rank), total = checked_span(shape_, 0, shape_.rank);
    if (shape_.d[0] == 1 && per_image == span(in[0], 1, in[0].rank)) {
      out.d[0] = in[0].d[0];
      return out;
    }
    if (total != in[0].elements()) fail("cannot reshape " + in[0].str() + " to " + shape_.str());
    return out;
  }
  void run(const RunContext&, const void* const*, const Shape*, size_t, void*, const Shape&) const override {}

 private:
  Shape shape_;
};

}  // namespace

const OpSchema reshape_schema{"reshape", 1, 1, kShapeAttrs, {}};

std::unique_ptr<Node> make_reshape(const OpArgs& a) { return std::make_unique<ReshapeNode>(a); }

}  // namespace xnor::ops

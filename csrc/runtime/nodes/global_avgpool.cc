// global_avgpool: NHWC -> (N, C), the mean over each image's pixels.
#include "operators/fpool.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

class GlobalAvgPoolNode final : public Node {
 public:
  explicit GlobalAvgPoolNode(const OpArgs& a) : Node(a.op(), {DType::kF32}, DType::kF32) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be NHWC, got " + in[0].str());
    return Shape::nf(in[0].d[0], in[0].d[3]);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    float_global_avgpool(static_cast<const float*>(in[0]), static_cast<size_t>(s[0].d[0]),
                         static_cast<size_t>(s[0].d[1] * s[0].d[2]), static_cast<size_t>(s[0].d[3]),
                         static_cast<float*>(out), ctx.pool, ctx.isa);
  }
};

}  // namespace

const OpSchema global_avgpool_schema{"global_avgpool", 1, 1, {}, {}};

std::unique_ptr<Node> make_global_avgpool(const OpArgs& a) { return std::make_unique<GlobalAvgPoolNode>(a); }

}  // namespace xnor::ops

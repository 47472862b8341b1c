// linear: float fully-connected layer (last layers), optional fused ReLU.
#include "operators/linear.h"

#include "runtime/nodes/affine_epilogue.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {{"relu", AttrType::kBool, false}};
constexpr ParamSchema kParams[] = {{"weight", ParamDType::kFloat32, true}, {"bias", ParamDType::kFloat32, false}};

class LinearNode final : public Node {
 public:
  LinearNode(const OpArgs& a, size_t out_f, size_t in_f, const float* w, const float* b, bool relu)
      : Node(a.op(), {DType::kF32}, DType::kF32), linear_(out_f, in_f, w, b, relu) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 2 || in[0].d[1] != static_cast<int64_t>(linear_.in_features())) {
      fail("input must be (N, " + std::to_string(linear_.in_features()) + "), got " + in[0].str());
    }
    return Shape::nf(in[0].d[0], static_cast<int64_t>(linear_.out_features()));
  }
  bool fuses_affine() const override { return true; }
  double work(const Shape* in, size_t count, const Shape& out) const override {
    const double macs = static_cast<double>(out.elements()) * static_cast<double>(linear_.in_features());
    return macs / kFloatMacsPerValue + values_touched(in, count, out);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const AffineRows affine(ctx, static_cast<const float*>(out));
    linear_.run(static_cast<const float*>(in[0]), static_cast<size_t>(s[0].d[0]), static_cast<float*>(out), ctx.pool,
                ctx.isa, affine.get());
  }

 private:
  FloatLinear linear_;
};

}  // namespace

const OpSchema linear_schema{"linear", 1, 1, kAttrs, kParams};

std::unique_ptr<Node> make_linear(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 2) a.fail("weight must be (O, K), got " + shape_str(w->shape));
  const int64_t o = require_positive(a, w->shape[0], "out_features");
  const int64_t i = require_positive(a, w->shape[1], "in_features");
  const ParamView* b = a.param("bias", {o});
  return std::make_unique<LinearNode>(a, static_cast<size_t>(o), static_cast<size_t>(i), f32(w), f32(b),
                                      a.boolean("relu", false));
}

}  // namespace xnor::ops

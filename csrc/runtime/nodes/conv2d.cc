// conv2d: float 2-D convolution (first layers), NHWC, OHWI weights, optional fused ReLU.
#include "operators/conv2d.h"

#include <stdexcept>
#include <tuple>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {
    {"stride", AttrType::kInts, true}, {"padding", AttrType::kInts, true}, {"relu", AttrType::kBool, false}};
constexpr ParamSchema kParams[] = {{"weight", ParamDType::kFloat32, true}, {"bias", ParamDType::kFloat32, false}};

class Conv2dNode final : public Node {
 public:
  Conv2dNode(const OpArgs& a, const FloatConvConfig& c, const float* w, const float* b)
      : Node(a.op(), {DType::kF32}, DType::kF32), conv_(c, w, b) {}
  Shape infer(const Shape* in, size_t) const override {
    const FloatConvConfig& c = conv_.config();
    if (in[0].rank != 4 || in[0].channels() != c.in_channels) {
      fail("input must be NHWC with " + std::to_string(c.in_channels) + " channels, got " + in[0].str());
    }
    const int64_t oh = conv_.out_h(static_cast<int>(in[0].d[1])), ow = conv_.out_w(static_cast<int>(in[0].d[2]));
    if (oh < 1 || ow < 1) fail("input " + in[0].str() + " is smaller than the kernel");
    return Shape::nhwc(in[0].d[0], oh, ow, c.out_channels);
  }
  size_t workspace_bytes(const Shape*, size_t, int threads) const override { return conv_.workspace_bytes(threads); }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    conv_.run(static_cast<const float*>(in[0]), static_cast<int>(s[0].d[0]), static_cast<int>(s[0].d[1]),
              static_cast<int>(s[0].d[2]), static_cast<float*>(out), ctx.pool, ctx.isa, ctx.workspace);
  }

 private:
  FloatConv2d conv_;
};

}  // namespace

const OpSchema conv2d_schema{"conv2d", 1, 1, kAttrs, kParams};

std::unique_ptr<Node> make_conv2d(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 4) a.fail("weight must be (O, KH, KW, I), got " + shape_str(w->shape));
  FloatConvConfig c;
  c.out_channels = static_cast<int>(require_positive(a, w->shape[0], "out_channels"));
  c.kernel_h = static_cast<int>(require_positive(a, std::min(w->shape[1], kMaxKernel + 1), "kernel height"));
  c.kernel_w = static_cast<int>(require_positive(a, std::min(w->shape[2], kMaxKernel + 1), "kernel width"));
  c.in_channels = static_cast<int>(require_positive(a, w->shape[3], "in_channels"));
  if (w->shape[1] > kMaxKernel || w->shape[2] > kMaxKernel) a.fail("kernel is too large");
  std::tie(c.stride_h, c.stride_w) = a.pair("stride");
  std::tie(c.pad_h, c.pad_w) = a.pair("padding");
  if (c.stride_h < 1 || c.stride_w < 1) a.fail("stride must be positive");
  c.relu = a.boolean("relu", false);
  const ParamView* b = a.param("bias", {w->shape[0]});
  try {
    return std::make_unique<Conv2dNode>(a, c, f32(w), f32(b));
  } catch (const std::invalid_argument& e) {
    a.fail(e.what());
  }
}

}  // namespace xnor::ops

// conv2d: float 2-D convolution (first layers), NHWC, OHWI weights, optional fused ReLU, optional
// dilation; grouped (depthwise) convolutions when `groups` > 1.
#include "operators/conv2d.h"

#include <stdexcept>
#include <tuple>
#include <vector>

#include "runtime/nodes/affine_epilogue.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {{"stride", AttrType::kInts, true},
                                 {"padding", AttrType::kInts, true},
                                 {"relu", AttrType::kBool, false},
                                 {"groups", AttrType::kInt, false},
                                 {"dilation", AttrType::kInts, false}};
// Grouped convolutions run as one GEMM per group (im2col of the group's channels) from this many
// input channels per group; below it the im2col copies are too short to pay and a direct loop runs.
constexpr int64_t kMinGroupGemmChannels = 4;

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
  size_t held_bytes() const override { return conv_.held_bytes(); }
  size_t workspace_bytes(const Shape*, size_t, int threads) const override { return conv_.workspace_bytes(threads); }
  bool fuses_affine() const override { return true; }
  bool fuses_rows() const override { return true; }
  double work(const Shape* in, size_t count, const Shape& out) const override {
    const FloatConvConfig& c = conv_.config();
    const double macs = static_cast<double>(out.elements()) * c.kernel_h * c.kernel_w * (c.in_channels / c.groups);
    return macs / kFloatMacsPerValue + values_touched(in, count, out);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const AffineRows affine(ctx, static_cast<const float*>(out));
    const OutputRowsDone chain{run_chain_rows, ctx.chain};
    conv_.run(static_cast<const float*>(in[0]), static_cast<int>(s[0].d[0]), static_cast<int>(s[0].d[1]),
              static_cast<int>(s[0].d[2]), static_cast<float*>(out), ctx.pool, ctx.isa, ctx.workspace, affine.get(),
              ctx.chain != nullptr ? &chain : nullptr);
  }

 private:
  FloatConv2d conv_;
};

// groups == channels, one filter per channel (depthwise): the vectorised NHWC kernel.
class DepthwiseConv2dNode final : public Node {
 public:
  DepthwiseConv2dNode(const OpArgs& a, const FloatConvConfig& c, const float* w, const float* b)
      : Node(a.op(), {DType::kF32}, DType::kF32), conv_(c, w, b) {}
  size_t held_bytes() const override { return conv_.held_bytes(); }
  double work(const Shape* in, size_t count, const Shape& out) const override {
    const FloatConvConfig& c = conv_.config();
    return static_cast<double>(out.elements()) * c.kernel_h * c.kernel_w / kFloatMacsPerValue +
           values_touched(in, count, out);
  }
  Shape infer(const Shape* in, size_t) const override {
    const FloatConvConfig& c = conv_.config();
    if (in[0].rank != 4 || in[0].channels() != c.in_channels) {
      fail("input must be NHWC with " + std::to_string(c.in_channels) + " channels, got " + in[0].str());
    }
    const int64_t oh =
        FloatConv2d::out_size(static_cast<int>(in[0].d[1]), c.kernel_h, c.stride_h, c.pad_h, c.dilation_h);
    const int64_t ow =
        FloatConv2d::out_size(static_cast<int>(in[0].d[2]), c.kernel_w, c.stride_w, c.pad_w, c.dilation_w);
    if (oh < 1 || ow < 1) fail("input " + in[0].str() + " is smaller than the kernel");
    return Shape::nhwc(in[0].d[0], oh, ow, c.out_channels);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    conv_.run(static_cast<const float*>(in[0]), s[0].d[0], s[0].d[1], s[0].d[2], static_cast<float*>(out), ctx.pool,
              ctx.isa);
  }

 private:
  FloatDepthwiseConv2d conv_;
};

// Grouped convolutions with fewer than kMinGroupGemmChannels input channels per group (depthwise
// with a channel multiplier): a direct loop, compiled once for every
// ISA path (so all paths give the same bits). Output channel o reads input channels of group o / (O / groups).
class GroupedConv2dNode final : public Node {
 public:
  GroupedConv2dNode(const OpArgs& a, const FloatConvConfig& c, int groups, const ParamView* w, const ParamView* b)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        c_(c),
        in_per_group_(c.in_channels / groups),
        out_per_group_(c.out_channels / groups),
        weight_(copy_f32(w)),
        bias_(copy_f32(b)) {}
  size_t held_bytes() const override { return (weight_.size() + bias_.size()) * sizeof(float); }
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4 || in[0].channels() != c_.in_channels) {
      fail("input must be NHWC with " + std::to_string(c_.in_channels) + " channels, got " + in[0].str());
    }
    const int64_t oh =
        FloatConv2d::out_size(static_cast<int>(in[0].d[1]), c_.kernel_h, c_.stride_h, c_.pad_h, c_.dilation_h);
    const int64_t ow =
        FloatConv2d::out_size(static_cast<int>(in[0].d[2]), c_.kernel_w, c_.stride_w, c_.pad_w, c_.dilation_w);
    if (oh < 1 || ow < 1) {
      fail("input " + in[0].str() + " is smaller than the kernel");
    }
    return Shape::nhwc(in[0].d[0], oh, ow, c_.out_channels);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t ih = s[0].d[1], iw = s[0].d[2], ic = c_.in_channels;
    const int64_t oh = os.d[1], ow = os.d[2], oc = c_.out_channels;
    for_rows(ctx, os.d[0] * oh, ow * oc, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t img = static_cast<int64_t>(r) / oh, oy = static_cast<int64_t>(r) % oh;
        const float* image = x + img * ih * iw * ic;
        for (int64_t ox = 0; ox < ow; ++ox) {
          float* dst = y + (static_cast<int64_t>(r) * ow + ox) * oc;
          for (int64_t o = 0; o < oc; ++o) {
            const int64_t c0 = (o / out_per_group_) * in_per_group_;
            const float* wo = weight_.data() + o * c_.kernel_h * c_.kernel_w * in_per_group_;
            float acc = 0.0f;
            for (int ky = 0; ky < c_.kernel_h; ++ky) {
              const int64_t iy = oy * c_.stride_h - c_.pad_h + int64_t{ky} * c_.dilation_h;
              if (iy < 0 || iy >= ih) continue;
              for (int kx = 0; kx < c_.kernel_w; ++kx) {
                const int64_t ix = ox * c_.stride_w - c_.pad_w + int64_t{kx} * c_.dilation_w;
                if (ix < 0 || ix >= iw) continue;
                const float* src = image + (iy * iw + ix) * ic + c0;
                const float* wk = wo + (ky * c_.kernel_w + kx) * in_per_group_;
                for (int64_t ci = 0; ci < in_per_group_; ++ci) acc += src[ci] * wk[ci];
              }
            }
            if (!bias_.empty()) acc += bias_[static_cast<size_t>(o)];
            dst[o] = c_.relu && acc < 0.0f ? 0.0f : acc;
          }
        }
      }
    });
  }

 private:
  FloatConvConfig c_;
  int64_t in_per_group_, out_per_group_;
  std::vector<float> weight_, bias_;
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
  if (a.has("dilation")) std::tie(c.dilation_h, c.dilation_w) = a.pair("dilation");
  if (c.dilation_h < 1 || c.dilation_w < 1) a.fail("dilation must be positive");
  c.relu = a.boolean("relu", false);
  const ParamView* b = a.param("bias", {w->shape[0]});
  const int64_t groups = a.has("groups") ? a.integer("groups") : 1;
  if (groups < 1 || groups > c.out_channels || c.out_channels % groups != 0) {
    a.fail("groups " + std::to_string(groups) + " must divide out_channels " + std::to_string(c.out_channels));
  }
  if (groups > 1) {
    if (int64_t{c.in_channels} * groups > kMaxDim) a.fail("in_channels * groups is too large");
    c.in_channels *= static_cast<int>(groups);
    try {
      if (groups == c.out_channels && groups == c.in_channels) {
        return std::make_unique<DepthwiseConv2dNode>(a, c, f32(w), f32(b));
      }
      if (c.in_channels / groups >= kMinGroupGemmChannels) {  // one GEMM per group
        c.groups = static_cast<int>(groups);
        return std::make_unique<Conv2dNode>(a, c, f32(w), f32(b));
      }
    } catch (const std::invalid_argument& e) {
      a.fail(e.what());
    }
    return std::make_unique<GroupedConv2dNode>(a, c, static_cast<int>(groups), w, b);
  }
  try {
    return std::make_unique<Conv2dNode>(a, c, f32(w), f32(b));
  } catch (const std::invalid_argument& e) {
    a.fail(e.what());
  }
}

}  // namespace xnor::ops

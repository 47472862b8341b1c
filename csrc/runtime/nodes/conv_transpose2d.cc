// conv_transpose2d: PyTorch's ConvTranspose2d on NHWC floats (stride, padding, output_padding,
// dilation, groups). The weight is stored (O, KH, KW, I / groups): output channel o of group
// g = o / (O / groups) reads input channels [g * I / groups, (g + 1) * I / groups).
// A direct gather per output pixel: y[oy, ox, o] sums x[iy, ix, c] * w[o, ky, kx, c] over the taps
// with oy = iy * stride - padding + ky * dilation (and the same along x), in the order (ky, kx, c);
// compiled once with the baseline flags, so every ISA path and thread count gives the same bits.
#include <vector>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {{"stride", AttrType::kInts, true},
                                 {"padding", AttrType::kInts, true},
                                 {"output_padding", AttrType::kInts, false},
                                 {"dilation", AttrType::kInts, false},
                                 {"groups", AttrType::kInt, false}};
constexpr ParamSchema kParams[] = {{"weight", ParamDType::kFloat32, true}, {"bias", ParamDType::kFloat32, false}};

struct Geometry {
  int64_t out_channels, kernel_h, kernel_w, in_per_group, groups;
  std::pair<int, int> stride, padding, output_padding, dilation;
};

class ConvTranspose2dNode final : public Node {
 public:
  ConvTranspose2dNode(const OpArgs& a, const Geometry& g, const ParamView* w, const ParamView* b)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        g_(g),
        out_per_group_(g.out_channels / g.groups),
        weight_(copy_f32(w)),
        bias_(copy_f32(b)) {}
  size_t held_bytes() const override { return (weight_.size() + bias_.size()) * sizeof(float); }
  static int64_t out_size(int64_t in, int64_t k, int s, int p, int op, int d) {
    return (in - 1) * s - 2 * int64_t{p} + int64_t{d} * (k - 1) + op + 1;
  }
  Shape infer(const Shape* in, size_t) const override {
    const int64_t ic = g_.in_per_group * g_.groups;
    if (in[0].rank != 4 || in[0].channels() != ic) {
      fail("input must be NHWC with " + std::to_string(ic) + " channels, got " + in[0].str());
    }
    const int64_t oh = out_size(in[0].d[1], g_.kernel_h, g_.stride.first, g_.padding.first, g_.output_padding.first,
                                g_.dilation.first);
    const int64_t ow = out_size(in[0].d[2], g_.kernel_w, g_.stride.second, g_.padding.second, g_.output_padding.second,
                                g_.dilation.second);
    if (oh < 1 || ow < 1) fail("input " + in[0].str() + " gives an empty output");
    if (oh > kMaxDim || ow > kMaxDim) fail("input " + in[0].str() + " gives too large an output");
    return Shape::nhwc(in[0].d[0], oh, ow, g_.out_channels);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t ih = s[0].d[1], iw = s[0].d[2], ic = s[0].d[3];
    const int64_t oh = os.d[1], ow = os.d[2], oc = g_.out_channels, ipg = g_.in_per_group;
    const int64_t sh = g_.stride.first, sw = g_.stride.second, ph = g_.padding.first, pw = g_.padding.second;
    const int64_t dh = g_.dilation.first, dw = g_.dilation.second, kh = g_.kernel_h, kw = g_.kernel_w;
    for_rows(ctx, os.d[0] * oh, ow * oc, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t img = static_cast<int64_t>(r) / oh, oy = static_cast<int64_t>(r) % oh;
        const float* image = x + img * ih * iw * ic;
        for (int64_t ox = 0; ox < ow; ++ox) {
          float* dst = y + (static_cast<int64_t>(r) * ow + ox) * oc;
          for (int64_t o = 0; o < oc; ++o) {
            const int64_t c0 = (o / out_per_group_) * ipg;
            const float* wo = weight_.data() + o * kh * kw * ipg;
            float acc = 0.0f;
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t ty = oy + ph - ky * dh;  // = iy * stride
              if (ty < 0 || ty % sh != 0 || ty / sh >= ih) continue;
              const int64_t iy = ty / sh;
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t tx = ox + pw - kx * dw;
                if (tx < 0 || tx % sw != 0 || tx / sw >= iw) continue;
                const float* src = image + (iy * iw + tx / sw) * ic + c0;
                const float* wk = wo + (ky * kw + kx) * ipg;
                for (int64_t ci = 0; ci < ipg; ++ci) acc += src[ci] * wk[ci];
              }
            }
            if (!bias_.empty()) acc += bias_[static_cast<size_t>(o)];
            dst[o] = acc;
          }
        }
      }
    });
  }

 private:
  Geometry g_;
  int64_t out_per_group_;
  std::vector<float> weight_, bias_;
};

}  // namespace

const OpSchema conv_transpose2d_schema{"conv_transpose2d", 1, 1, kAttrs, kParams};

std::unique_ptr<Node> make_conv_transpose2d(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 4) a.fail("weight must be (O, KH, KW, I / groups), got " + shape_str(w->shape));
  Geometry g;
  g.out_channels = require_positive(a, w->shape[0], "out_channels");
  g.kernel_h = require_positive(a, w->shape[1], "kernel height");
  g.kernel_w = require_positive(a, w->shape[2], "kernel width");
  g.in_per_group = require_positive(a, w->shape[3], "in_channels per group");
  if (g.kernel_h > kMaxKernel || g.kernel_w > kMaxKernel) a.fail("kernel is too large");
  g.stride = a.pair("stride");
  g.padding = a.pair("padding");
  g.output_padding = a.has("output_padding") ? a.pair("output_padding") : std::pair<int, int>{0, 0};
  g.dilation = a.has("dilation") ? a.pair("dilation") : std::pair<int, int>{1, 1};
  if (g.stride.first < 1 || g.stride.second < 1) a.fail("stride must be positive");
  if (g.dilation.first < 1 || g.dilation.second < 1) a.fail("dilation must be positive");
  if (g.output_padding.first >= std::max(g.stride.first, g.dilation.first) ||
      g.output_padding.second >= std::max(g.stride.second, g.dilation.second)) {
    a.fail("output_padding must be smaller than stride or dilation");
  }
  g.groups = a.has("groups") ? a.integer("groups") : 1;
  if (g.groups < 1 || g.groups > g.out_channels || g.out_channels % g.groups != 0) {
    a.fail("groups " + std::to_string(g.groups) + " must divide out_channels " + std::to_string(g.out_channels));
  }
  if (g.in_per_group * g.groups > kMaxDim) a.fail("in_channels is too large");
  const ParamView* b = a.param("bias", {w->shape[0]});
  return std::make_unique<ConvTranspose2dNode>(a, g, w, b);
}

}  // namespace xnor::ops

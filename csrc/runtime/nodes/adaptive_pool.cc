// adaptive_avgpool2d / adaptive_maxpool2d: NHWC float pooling to a fixed (OH, OW), PyTorch's windows:
// output i covers input [floor(i * in / out), ceil((i + 1) * in / out)). The average sums the window
// row by row in float and divides by its height then its width; the max propagates NaN as PyTorch
// does. Compiled once with the baseline flags: every ISA path and thread count gives the same bits.
#include <cmath>
#include <limits>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {{"size", AttrType::kInts, true}};

class AdaptivePoolNode final : public Node {
 public:
  AdaptivePoolNode(const OpArgs& a, bool max, int64_t oh, int64_t ow)
      : Node(a.op(), {DType::kF32}, DType::kF32), max_(max), oh_(oh), ow_(ow) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be NHWC, got " + in[0].str());
    return Shape::nhwc(in[0].d[0], oh_, ow_, in[0].d[3]);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t ih = s[0].d[1], iw = s[0].d[2], c = s[0].d[3], oh = os.d[1], ow = os.d[2];
    for_rows(ctx, os.d[0] * oh, ow * c, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t img = static_cast<int64_t>(r) / oh, oy = static_cast<int64_t>(r) % oh;
        const int64_t y0 = oy * ih / oh, y1 = ((oy + 1) * ih + oh - 1) / oh;
        const float* image = x + img * ih * iw * c;
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t x0 = ox * iw / ow, x1 = ((ox + 1) * iw + ow - 1) / ow;
          float* dst = y + (static_cast<int64_t>(r) * ow + ox) * c;
          for (int64_t k = 0; k < c; ++k) {
            float acc = max_ ? -std::numeric_limits<float>::infinity() : 0.0f;
            for (int64_t iy = y0; iy < y1; ++iy) {
              const float* src = image + (iy * iw + x0) * c + k;
              for (int64_t ix = x0; ix < x1; ++ix, src += c) {
                const float v = *src;
                if (!max_) {
                  acc += v;
                } else if (v > acc || std::isnan(v)) {
                  acc = v;
                }
              }
            }
            dst[k] = max_ ? acc : acc / static_cast<float>(y1 - y0) / static_cast<float>(x1 - x0);
          }
        }
      }
    });
  }

 private:
  bool max_;
  int64_t oh_, ow_;
};

std::unique_ptr<Node> make(const OpArgs& a, bool max) {
  const std::vector<int64_t>& size = a.op().attrs.at("size").ints;
  if (size.size() != 2) a.fail("'size' must be a list of two integers (OH, OW)");
  return std::make_unique<AdaptivePoolNode>(a, max, require_positive(a, size[0], "output height"),
                                            require_positive(a, size[1], "output width"));
}

}  // namespace

const OpSchema adaptive_avgpool2d_schema{"adaptive_avgpool2d", 1, 1, kAttrs, {}};
const OpSchema adaptive_maxpool2d_schema{"adaptive_maxpool2d", 1, 1, kAttrs, {}};

std::unique_ptr<Node> make_adaptive_avgpool2d(const OpArgs& a) { return make(a, false); }
std::unique_ptr<Node> make_adaptive_maxpool2d(const OpArgs& a) { return make(a, true); }

}  // namespace xnor::ops

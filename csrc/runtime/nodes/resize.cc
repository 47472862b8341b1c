// resize: NHWC float upsampling / downsampling to a fixed (OH, OW), as PyTorch's upsample kernels
// compute it (float32 index arithmetic): "nearest" (legacy: src = min(floor(dst * scale), in - 1)),
// "nearest_exact" (src = min(floor((dst + 0.5) * scale), in - 1)) and "bilinear" (with or without
// align_corners) and "bicubic" (upsample_bicubic2d: A = -0.75, four taps per axis clamped to the
// edge, with or without align_corners; the taps summed along W, then along H, in float as PyTorch's
// generic kernel). scale is in / out, or 1 / scale_h (scale_w) when the model gave a scale factor.
// Compiled once with the baseline flags: every ISA path and thread count gives the same bits.
#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {{"size", AttrType::kInts, true},
                                 {"mode", AttrType::kString, true},
                                 {"align_corners", AttrType::kBool, false},
                                 {"scale_h", AttrType::kFloat, false},
                                 {"scale_w", AttrType::kFloat, false}};

enum class Mode { kNearest, kNearestExact, kBilinear, kBicubic };

constexpr float kCubicA = -0.75f;  // PyTorch's upsample_bicubic2d coefficient

class ResizeNode final : public Node {
 public:
  ResizeNode(const OpArgs& a, Mode mode, int64_t oh, int64_t ow, bool align, double sh, double sw)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        mode_(mode),
        oh_(oh),
        ow_(ow),
        align_(align),
        scale_h_(sh),
        scale_w_(sw) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be NHWC, got " + in[0].str());
    return Shape::nhwc(in[0].d[0], oh_, ow_, in[0].d[3]);
  }
  // PyTorch's compute_scales_value / area_pixel_compute_scale, in float.
  float step(int64_t in, int64_t out, double given) const {
    if ((mode_ == Mode::kBilinear || mode_ == Mode::kBicubic) && align_) {
      return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
    }
    return given > 0.0 ? static_cast<float>(1.0 / given) : static_cast<float>(in) / static_cast<float>(out);
  }
  int64_t nearest(int64_t dst, int64_t in, int64_t out, float scale) const {
    if (mode_ == Mode::kNearest) {
      if (out == in) return dst;
      if (out == 2 * in) return dst >> 1;
      return std::min(static_cast<int64_t>(std::floor(static_cast<float>(dst) * scale)), in - 1);
    }
    return std::min(static_cast<int64_t>(std::floor((static_cast<float>(dst) + 0.5f) * scale)), in - 1);
  }
  // (index0, index1, lambda0, lambda1) of PyTorch's compute_source_index_and_lambda.
  void linear(int64_t dst, int64_t in, int64_t out, float scale, int64_t& i0, int64_t& i1, float& l0, float& l1) const {
    if (in == out) {
      i0 = i1 = dst;
      l0 = 1.0f;
      l1 = 0.0f;
      return;
    }
    float src = align_ ? scale * static_cast<float>(dst) : scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
    if (!align_ && src < 0.0f) src = 0.0f;
    i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    l1 = std::min(std::max(src - static_cast<float>(i0), 0.0f), 1.0f);
    i1 = i0 + (i0 < in - 1 ? 1 : 0);
    l0 = 1.0f - l1;
  }
  // The four source indices (clamped to [0, in - 1]) and weights of output `dst` along one axis:
  // PyTorch's area_pixel_compute_source_index (cubic: no clamp at 0), guard_index_and_lambda and
  // get_cubic_upsample_coefficients, in float.
  void cubic(int64_t dst, int64_t in, float scale, int64_t* idx, float* w) const {
    const float src = align_ ? scale * static_cast<float>(dst) : scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
    const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    const float t = std::min(std::max(src - static_cast<float>(i0), 0.0f), 1.0f);
    const auto near = [](float v) { return ((kCubicA + 2.0f) * v - (kCubicA + 3.0f)) * v * v + 1.0f; };
    const auto far = [](float v) { return ((kCubicA * v - 5.0f * kCubicA) * v + 8.0f * kCubicA) * v - 4.0f * kCubicA; };
    w[0] = far(t + 1.0f);
    w[1] = near(t);
    w[2] = near(1.0f - t);
    w[3] = far(1.0f - t + 1.0f);
    for (int j = 0; j < 4; ++j) idx[j] = std::max<int64_t>(std::min<int64_t>(i0 + j - 1, in - 1), 0);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t ih = s[0].d[1], iw = s[0].d[2], c = s[0].d[3], oh = os.d[1], ow = os.d[2];
    const float fh = step(ih, oh, scale_h_), fw = step(iw, ow, scale_w_);
    for_rows(ctx, os.d[0] * oh, ow * c, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t img = static_cast<int64_t>(r) / oh, oy = static_cast<int64_t>(r) % oh;
        const float* image = x + img * ih * iw * c;
        float* dst = y + static_cast<int64_t>(r) * ow * c;
        if (mode_ == Mode::kNearest || mode_ == Mode::kNearestExact) {
          const float* row = image + nearest(oy, ih, oh, fh) * iw * c;
          for (int64_t ox = 0; ox < ow; ++ox) {
            const float* src = row + nearest(ox, iw, ow, fw) * c;
            std::copy(src, src + c, dst + ox * c);
          }
          continue;
        }
        if (mode_ == Mode::kBicubic) {
          int64_t ys[4], xs[4];
          float wy[4], wx[4];
          cubic(oy, ih, fh, ys, wy);
          for (int64_t ox = 0; ox < ow; ++ox) {
            cubic(ox, iw, fw, xs, wx);
            float* d = dst + ox * c;
            for (int64_t k = 0; k < c; ++k) {
              float acc = 0.0f;
              for (int j = 0; j < 4; ++j) {
                const float* row = image + ys[j] * iw * c + k;
                const float t =
                    row[xs[0] * c] * wx[0] + row[xs[1] * c] * wx[1] + row[xs[2] * c] * wx[2] + row[xs[3] * c] * wx[3];
                acc = j == 0 ? t * wy[0] : acc + t * wy[j];
              }
              d[k] = acc;
            }
          }
          continue;
        }
        int64_t y0, y1;
        float hl0, hl1;
        linear(oy, ih, oh, fh, y0, y1, hl0, hl1);
        const float *r0 = image + y0 * iw * c, *r1 = image + y1 * iw * c;
        for (int64_t ox = 0; ox < ow; ++ox) {
          int64_t x0, x1;
          float wl0, wl1;
          linear(ox, iw, ow, fw, x0, x1, wl0, wl1);
          const float *a = r0 + x0 * c, *b = r0 + x1 * c, *p = r1 + x0 * c, *q = r1 + x1 * c;
          float* d = dst + ox * c;
          for (int64_t k = 0; k < c; ++k) d[k] = hl0 * (wl0 * a[k] + wl1 * b[k]) + hl1 * (wl0 * p[k] + wl1 * q[k]);
        }
      }
    });
  }

 private:
  Mode mode_;
  int64_t oh_, ow_;
  bool align_;
  double scale_h_, scale_w_;  // PyTorch's scale factors (out / in), 0 when not given
};

}  // namespace

const OpSchema resize_schema{"resize", 1, 1, kAttrs, {}};

std::unique_ptr<Node> make_resize(const OpArgs& a) {
  const std::vector<int64_t>& size = a.op().attrs.at("size").ints;
  if (size.size() != 2) a.fail("'size' must be a list of two integers (OH, OW)");
  const int64_t oh = require_positive(a, size[0], "output height"), ow = require_positive(a, size[1], "output width");
  const std::string m = a.string("mode", "");
  Mode mode;
  if (m == "nearest") {
    mode = Mode::kNearest;
  } else if (m == "nearest_exact") {
    mode = Mode::kNearestExact;
  } else if (m == "bilinear") {
    mode = Mode::kBilinear;
  } else if (m == "bicubic") {
    mode = Mode::kBicubic;
  } else {
    a.fail("mode must be nearest, nearest_exact, bilinear or bicubic, got '" + m + "'");
  }
  const bool align = a.boolean("align_corners", false);
  if (align && mode != Mode::kBilinear && mode != Mode::kBicubic)
    a.fail("align_corners is for bilinear and bicubic only");
  double scales[2] = {0.0, 0.0};
  const char* names[2] = {"scale_h", "scale_w"};
  for (int i = 0; i < 2; ++i) {
    if (!a.has(names[i])) continue;
    scales[i] = a.number(names[i]);
    if (!(scales[i] > 0.0) || !std::isfinite(scales[i]) || !(1.0 / scales[i] < 1e6)) {
      a.fail(std::string(names[i]) + " must be a positive scale factor");
    }
  }
  return std::make_unique<ResizeNode>(a, mode, oh, ow, align, scales[0], scales[1]);
}

}  // namespace xnor::ops

// bwconv2d / bwlinear: binary-weight (BWN) and ternary-weight (TTQ) layers on float activations.
// The IR stores the weights as bconv2d / blinear do (sign bits per output channel, bit = -), plus an
// optional non-zero mask (ternary); the node turns them into per-(tap, channel) rows of + and - bits
// over the output channels, the layout of the bwconv micro-kernels (microkernels/bwconv.h).
#include <string>
#include <vector>

#include "microkernels/bwconv.h"
#include "microkernels/dispatch.h"
#include "runtime/nodes/binary_output.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kConvAttrs[] = {
    {"stride", AttrType::kInts, true}, {"padding", AttrType::kInts, true}, {"in_channels", AttrType::kInt, true}};
constexpr AttrSchema kLinearAttrs[] = {{"in_features", AttrType::kInt, true}};
constexpr ParamSchema kParams[] = {{"weight", ParamDType::kUint64, true},
                                   {"mask", ParamDType::kUint64, false},
                                   {"scale_pos", ParamDType::kFloat32, true},
                                   {"scale_neg", ParamDType::kFloat32, true},
                                   {"bias", ParamDType::kFloat32, false}};

class BwconvNode final : public Node {
 public:
  // taps = KH * KW; weight / mask rows are (O, taps, words_of(in_c)).
  BwconvNode(const OpArgs& a, const BwconvGeometry& g, bool linear, const uint64_t* w, const uint64_t* mask)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        g_(g),
        linear_(linear),
        pos_(static_cast<size_t>(g.kernel_h * g.kernel_w * g.in_c * g.o_words)),
        neg_(pos_.size()),
        scale_pos_(copy_f32(a.param("scale_pos", {g.out_c}))),
        scale_neg_(copy_f32(a.param("scale_neg", {g.out_c}))),
        bias_(copy_f32(a.param("bias", {g.out_c}))) {
    if (bias_.empty()) bias_.assign(static_cast<size_t>(g.out_c), 0.0f);
    const int64_t taps = g.kernel_h * g.kernel_w, words = words_of(g.in_c);
    for (int64_t o = 0; o < g.out_c; ++o) {
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t c = 0; c < g.in_c; ++c) {
          const int64_t at = (o * taps + t) * words + c / 64;
          const uint64_t bit = uint64_t{1} << (c % 64);
          if (mask != nullptr && !(mask[at] & bit)) continue;
          std::vector<uint64_t>& dst = (w[at] & bit) ? neg_ : pos_;
          dst[static_cast<size_t>((t * g.in_c + c) * g.o_words + o / 64)] |= uint64_t{1} << (o % 64);
        }
      }
    }
  }
  Shape infer(const Shape* in, size_t) const override {
    if (linear_) {
      if (in[0].rank != 2 || in[0].d[1] != g_.in_c) {
        fail("input must be (N, " + std::to_string(g_.in_c) + "), got " + in[0].str());
      }
      return Shape::nf(in[0].d[0], g_.out_c);
    }
    if (in[0].rank != 4 || in[0].channels() != g_.in_c) {
      fail("input must be NHWC with " + std::to_string(g_.in_c) + " channels, got " + in[0].str());
    }
    const int64_t oh = out_size(in[0].d[1], g_.kernel_h, g_.stride_h, g_.pad_h);
    const int64_t ow = out_size(in[0].d[2], g_.kernel_w, g_.stride_w, g_.pad_w);
    if (oh < 1 || ow < 1) fail("input " + in[0].str() + " is smaller than the kernel");
    return Shape::nhwc(in[0].d[0], oh, ow, g_.out_c);
  }
  size_t held_bytes() const override {
    return (pos_.size() + neg_.size()) * sizeof(uint64_t) + 3 * bias_.size() * sizeof(float);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    BwconvGeometry g = g_;
    int64_t rows = s[0].d[0], out_h = 1;
    if (!linear_) {
      g.in_h = s[0].d[1];
      g.in_w = s[0].d[2];
      out_h = os.d[1];
      g.out_w = os.d[2];
      rows *= out_h;
    }
    const int64_t in_image = g.in_h * g.in_w * g.in_c, out_row = g.out_w * g.out_c;
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const BwconvRowFn fn = ctx.bin->bwconv_row;
    parallel_for(ctx.pool, static_cast<size_t>(rows), 1, [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        const int64_t img = static_cast<int64_t>(r) / out_h, oy = static_cast<int64_t>(r) % out_h;
        fn(x + img * in_image, pos_.data(), neg_.data(), scale_pos_.data(), scale_neg_.data(), bias_.data(), g, oy,
           y + static_cast<int64_t>(r) * out_row);
      }
    });
  }

 private:
  static int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t pad) {
    return in + 2 * pad < k ? 0 : (in + 2 * pad - k) / stride + 1;
  }
  BwconvGeometry g_;
  bool linear_;
  std::vector<uint64_t> pos_, neg_;
  std::vector<float> scale_pos_, scale_neg_, bias_;
};

// The weight (and mask) with pad bits zero, and no sign bit where the mask says 0.
const uint64_t* checked_mask(const OpArgs& a, const ParamView* w, int64_t rows, int64_t words, int64_t bits) {
  const ParamView* m = a.param("mask", w->shape);
  if (m == nullptr) return nullptr;
  const uint64_t* md = static_cast<const uint64_t*>(m->data);
  const uint64_t* wd = static_cast<const uint64_t*>(w->data);
  check_pad_bits(a, md, rows, words, bits);
  for (int64_t i = 0; i < rows * words; ++i) {
    if (wd[i] & ~md[i]) a.fail("weight has sign bits where the mask is 0 (word " + std::to_string(i) + ")");
  }
  return md;
}

std::unique_ptr<Node> make(const OpArgs& a, BwconvGeometry g, bool linear, const ParamView* w) {
  const int64_t words = words_of(g.in_c), rows = w->count / words;
  const uint64_t* wd = static_cast<const uint64_t*>(w->data);
  check_pad_bits(a, wd, rows, words, g.in_c);
  const uint64_t* md = checked_mask(a, w, rows, words, g.in_c);
  g.o_words = words_of(g.out_c);
  return std::make_unique<BwconvNode>(a, g, linear, wd, md);
}

}  // namespace

const OpSchema bwconv2d_schema{"bwconv2d", 1, 1, kConvAttrs, kParams};
const OpSchema bwlinear_schema{"bwlinear", 1, 1, kLinearAttrs, kParams};

std::unique_ptr<Node> make_bwconv2d(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 4) a.fail("weight must be packed (O, KH, KW, ceil(I/64)), got " + shape_str(w->shape));
  BwconvGeometry g{};
  g.in_c = require_positive(a, a.integer("in_channels"), "in_channels");
  g.out_c = require_positive(a, w->shape[0], "out_channels");
  g.kernel_h = require_positive(a, std::min(w->shape[1], kMaxKernel + 1), "kernel height");
  g.kernel_w = require_positive(a, std::min(w->shape[2], kMaxKernel + 1), "kernel width");
  if (w->shape[1] * w->shape[2] > 16384) a.fail("kernel " + shape_str(w->shape) + " is too large");
  if (w->shape[3] != words_of(g.in_c)) {
    a.fail("weight has " + std::to_string(w->shape[3]) + " words per tap, in_channels " + std::to_string(g.in_c) +
           " needs " + std::to_string(words_of(g.in_c)));
  }
  const auto [sh, sw] = a.pair("stride");
  const auto [ph, pw] = a.pair("padding");
  if (sh < 1 || sw < 1) a.fail("stride must be positive");
  if (ph >= g.kernel_h + 1 || pw >= g.kernel_w + 1) a.fail("padding larger than the kernel");
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw;
  return make(a, g, false, w);
}

std::unique_ptr<Node> make_bwlinear(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 2) a.fail("weight must be packed (O, ceil(F/64)), got " + shape_str(w->shape));
  BwconvGeometry g{};
  g.in_c = require_positive(a, a.integer("in_features"), "in_features");
  g.out_c = require_positive(a, w->shape[0], "out_features");
  if (w->shape[1] != words_of(g.in_c)) {
    a.fail("weight has " + std::to_string(w->shape[1]) + " words per row, in_features " + std::to_string(g.in_c) +
           " needs " + std::to_string(words_of(g.in_c)));
  }
  g.in_h = g.in_w = g.kernel_h = g.kernel_w = g.stride_h = g.stride_w = g.out_w = 1;
  return make(a, g, true, w);
}

}  // namespace xnor::ops

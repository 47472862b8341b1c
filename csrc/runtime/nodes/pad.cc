// pad: padding of an NHWC float tensor: constant along H, W and C (PyTorch's F.pad / constant_pad_nd),
// or mode "reflect" / "replicate" along H and W (reflection_pad2d / replication_pad2d).
// A copy with fills, no arithmetic: every ISA path and thread count gives the same bytes.
#include <algorithm>
#include <string>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kPadAttrs[] = {{"pad_h", AttrType::kInts, true},
                                    {"pad_w", AttrType::kInts, true},
                                    {"pad_c", AttrType::kInts, false},
                                    {"value", AttrType::kFloat, false},
                                    {"mode", AttrType::kString, false}};

enum class PadMode { kConstant, kReflect, kReplicate };

PadMode pad_mode(const OpArgs& a) {
  const std::string m = a.string("mode", "constant");
  if (m == "constant") return PadMode::kConstant;
  if (m == "reflect") return PadMode::kReflect;
  if (m == "replicate") return PadMode::kReplicate;
  a.fail("mode must be constant, reflect or replicate, got '" + m + "'");
}

// The source index of padded index i (in [-before, size + after)) along an axis of `size`.
inline int64_t source_index(PadMode mode, int64_t i, int64_t size) {
  if (mode == PadMode::kReplicate) return std::min(std::max<int64_t>(i, 0), size - 1);
  if (i < 0) return -i;  // reflect (the edge is not repeated); the padding is smaller than size
  return i < size ? i : 2 * (size - 1) - i;
}

class PadNode final : public Node {
 public:
  explicit PadNode(const OpArgs& a)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        h_(a.pair("pad_h")),
        w_(a.pair("pad_w")),
        c_(a.has("pad_c") ? a.pair("pad_c") : std::pair<int, int>{0, 0}),
        value_(a.has("value") ? static_cast<float>(a.number("value")) : 0.0f),
        mode_(pad_mode(a)) {
    if (mode_ != PadMode::kConstant && (c_.first || c_.second)) a.fail("reflect and replicate pad H and W only");
  }
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be NHWC, got " + in[0].str());
    if (mode_ == PadMode::kReflect &&
        (std::max(h_.first, h_.second) >= in[0].d[1] || std::max(w_.first, w_.second) >= in[0].d[2])) {
      fail("reflect padding must be smaller than the input's height and width, got " + in[0].str());
    }
    const Shape out = Shape::nhwc(in[0].d[0], in[0].d[1] + h_.first + h_.second, in[0].d[2] + w_.first + w_.second,
                                  in[0].d[3] + c_.first + c_.second);
    for (int i = 1; i < 4; ++i) {
      if (out.d[i] > kMaxDim) fail("padded shape " + out.str() + " is too large");
    }
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t ih = s[0].d[1], iw = s[0].d[2], ic = s[0].d[3];
    const int64_t oh = os.d[1], ow = os.d[2], oc = os.d[3];
    const float v = value_;
    if (mode_ != PadMode::kConstant) {  // every output pixel copies one input pixel (oc == ic)
      for_rows(ctx, os.d[0] * oh, ow * oc, [&](size_t first, size_t count) {
        for (size_t r = first; r < first + count; ++r) {
          const int64_t img = static_cast<int64_t>(r) / oh, oy = static_cast<int64_t>(r) % oh;
          const float* src = x + (img * ih + source_index(mode_, oy - h_.first, ih)) * iw * ic;
          float* dst = y + static_cast<int64_t>(r) * ow * oc;
          for (int64_t ox = 0; ox < ow; ++ox) {
            const float* p = src + source_index(mode_, ox - w_.first, iw) * ic;
            std::copy(p, p + ic, dst + ox * oc);
          }
        }
      });
      return;
    }
    // One output row (image, y) per step.
    for_rows(ctx, os.d[0] * oh, ow * oc, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t img = static_cast<int64_t>(r) / oh, oy = static_cast<int64_t>(r) % oh;
        const int64_t iy = oy - h_.first;
        float* dst = y + static_cast<int64_t>(r) * ow * oc;
        if (iy < 0 || iy >= ih) {
          std::fill(dst, dst + ow * oc, v);
          continue;
        }
        std::fill(dst, dst + w_.first * oc, v);
        const float* src = x + (img * ih + iy) * iw * ic;
        for (int64_t ix = 0; ix < iw; ++ix) {
          float* d = dst + (w_.first + ix) * oc;
          std::fill(d, d + c_.first, v);
          std::copy(src + ix * ic, src + (ix + 1) * ic, d + c_.first);
          std::fill(d + c_.first + ic, d + oc, v);
        }
        std::fill(dst + (w_.first + iw) * oc, dst + ow * oc, v);
      }
    });
  }

 private:
  std::pair<int, int> h_, w_, c_;
  float value_;
  PadMode mode_;
};

}  // namespace

const OpSchema pad_schema{"pad", 1, 1, kPadAttrs, {}};

std::unique_ptr<Node> make_pad(const OpArgs& a) { return std::make_unique<PadNode>(a); }

}  // namespace xnor::ops

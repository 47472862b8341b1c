// slice: x[start:stop:step] along one axis (h, w or c) of an NHWC float tensor, or along the
// features of an (N, F) one. A gather copy, no arithmetic: identical on every ISA path.
#include <string>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kSliceAttrs[] = {{"axis", AttrType::kString, true},
                                      {"start", AttrType::kInt, true},
                                      {"stop", AttrType::kInt, true},
                                      {"step", AttrType::kInt, true}};

class SliceNode final : public Node {
 public:
  SliceNode(const OpArgs& a, int axis)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        axis_(axis),
        start_(a.integer("start")),
        stop_(a.integer("stop")),
        step_(a.integer("step")) {
    if (step_ < 1 || step_ > kMaxDim) a.fail("step " + std::to_string(step_) + " must be positive");
  }
  // The sliced axis of a shape of this rank: 1 (h), 2 (w) or 3 (c) of NHWC, 1 of (N, F).
  int axis_of(const Shape& s) const {
    if (s.rank == 4) return axis_;
    if (s.rank == 2 && axis_ == 3) return 1;
    fail("input must be NHWC, or (N, F) sliced along 'c', got " + s.str());
  }
  Shape infer(const Shape* in, size_t) const override {
    Shape out = in[0];
    const int ax = axis_of(in[0]);
    const int64_t size = in[0].d[ax];
    if (!(0 <= start_ && start_ < stop_ && stop_ <= size)) {
      fail("slice [" + std::to_string(start_) + ":" + std::to_string(stop_) + "] of an axis of size " +
           std::to_string(size) + ": need 0 <= start < stop <= size");
    }
    out.d[ax] = (stop_ - start_ + step_ - 1) / step_;
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    // As (N, H, W, C): an (N, F) tensor is (N, 1, 1, F).
    const bool nf = s[0].rank == 2;
    const int64_t ih = nf ? 1 : s[0].d[1], iw = nf ? 1 : s[0].d[2], ic = s[0].channels();
    const int64_t oh = nf ? 1 : os.d[1], ow = nf ? 1 : os.d[2], oc = os.channels();
    const int ax = axis_of(s[0]);
    const bool on_h = !nf && ax == 1, on_w = !nf && ax == 2, on_c = ax == s[0].rank - 1;
    for_rows(ctx, os.d[0] * oh, ow * oc, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t img = static_cast<int64_t>(r) / oh, oy = static_cast<int64_t>(r) % oh;
        const int64_t iy = on_h ? start_ + oy * step_ : oy;
        const float* src_row = x + (img * ih + iy) * iw * ic;
        float* dst = y + static_cast<int64_t>(r) * ow * oc;
        for (int64_t ox = 0; ox < ow; ++ox) {
          const float* src = src_row + (on_w ? start_ + ox * step_ : ox) * ic;
          float* d = dst + ox * oc;
          if (on_c) {
            for (int64_t k = 0; k < oc; ++k) d[k] = src[start_ + k * step_];
          } else {
            for (int64_t k = 0; k < oc; ++k) d[k] = src[k];
          }
        }
      }
    });
  }

 private:
  int axis_;
  int64_t start_, stop_, step_;
};

}  // namespace

const OpSchema slice_schema{"slice", 1, 1, kSliceAttrs, {}};

std::unique_ptr<Node> make_slice(const OpArgs& a) {
  const std::string axis = a.string("axis", "");
  if (axis == "h") return std::make_unique<SliceNode>(a, 1);
  if (axis == "w") return std::make_unique<SliceNode>(a, 2);
  if (axis == "c") return std::make_unique<SliceNode>(a, 3);
  a.fail("axis must be 'h', 'w' or 'c', got '" + axis + "'");
}

}  // namespace xnor::ops

// slice: x[start:stop:step] along one physical axis (`axis`: 1 .. rank-1, or 0 with batch 1 or
// in a per-image graph) of a float tensor of any rank. A gather copy, no arithmetic: identical on
// every ISA path.
#include <cstring>
#include <string>

#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kSliceAttrs[] = {{"axis", AttrType::kInt, true},
                                      {"start", AttrType::kInt, true},
                                      {"stop", AttrType::kInt, true},
                                      {"step", AttrType::kInt, true}};

class SliceNode final : public Node {
 public:
  explicit SliceNode(const OpArgs& a)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        axis_(a.integer("axis")),
        start_(a.integer("start")),
        stop_(a.integer("stop")),
        step_(a.integer("step")),
        per_image_(a.per_image()) {
    if (axis_ < 0 || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
    if (step_ < 1 || step_ > kMaxDim) a.fail("step " + std::to_string(step_) + " must be positive");
  }
  Shape infer(const Shape* in, size_t) const override {
    if (axis_ >= in[0].rank) fail("axis " + std::to_string(axis_) + " does not fit input " + in[0].str());
    const int ax = static_cast<int>(axis_);
    if (!per_image_ && ax == 0 && in[0].d[0] != 1) fail(batch_axis_message("slices", in[0].d[0]));
    Shape out = in[0];
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
    const int ax = static_cast<int>(axis_);
    // As (outer, len, inner): output rows are (outer, kept index) pairs of `inner` values.
    const int64_t inner = span(os, ax + 1, os.rank), in_len = s[0].d[ax], out_len = os.d[ax];
    for_rows(ctx, span(os, 0, ax + 1), inner, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t o = static_cast<int64_t>(r) / out_len, j = static_cast<int64_t>(r) % out_len;
        const float* src = x + (o * in_len + start_ + j * step_) * inner;
        float* dst = y + static_cast<int64_t>(r) * inner;
        if (inner > 1) {
          std::memcpy(dst, src, static_cast<size_t>(inner) * sizeof(float));
        } else {
          dst[0] = src[0];
        }
      }
    });
  }

 private:
  int64_t axis_, start_, stop_, step_;
  bool per_image_;
};

}  // namespace

const OpSchema slice_schema{"slice", 1, 1, kSliceAttrs, {}};

std::unique_ptr<Node> make_slice(const OpArgs& a) { return std::make_unique<SliceNode>(a); }

}  // namespace xnor::ops

// gather: torch.gather(x, axis, index): index has x's rank and at most x's size on every other
// axis; y[p] = x[p with its `axis` coordinate replaced by index[p]], the output shaped as index. The
// index is float32 holding an integer in [-size, size) (negative counts from the end); every one is
// checked before anything is written, so a bad index fails the run naming the op, never reads
// outside x. A copy, exact.
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kGatherAttrs[] = {{"axis", AttrType::kInt, true}};

class GatherNode final : public Node {
 public:
  explicit GatherNode(const OpArgs& a)
      : Node(a.op(), {DType::kF32}, DType::kF32), axis_(a.integer("axis")), per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    const Shape &x = in[0], &idx = in[1];
    const int ax = checked_axis(axis_, x, per_image_, "gathers along", [this](const std::string& m) { fail(m); });
    if (idx.rank != x.rank) fail("index " + idx.str() + " must have the rank of input " + x.str());
    for (int i = 0; i < x.rank; ++i) {
      if (i != ax && idx.d[i] > x.d[i]) fail("index " + idx.str() + " is larger than input " + x.str());
    }
    return idx;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    const float* index = static_cast<const float*>(in[1]);
    float* y = static_cast<float*>(out);
    const Shape &xs = s[0], &is = s[1];
    const int ax = normalize_axis(axis_, xs.rank);
    const int64_t count = is.elements(), size = xs.d[ax];
    for (int64_t j = 0; j < count; ++j) {
      if (index_of(index[j], size) < 0) fail(bad_index_message(index[j], size));
    }
    int64_t xst[kMaxRank];
    strides_of(xs, xst);
    parallel_for(ctx.pool, static_cast<size_t>(count), kElementGrain, [&](size_t b, size_t e) {
      for (size_t t = b; t < e; ++t) {
        int64_t rest = static_cast<int64_t>(t), off = 0;
        for (int i = is.rank - 1; i >= 0; --i) {
          const int64_t c = rest % is.d[i];
          rest /= is.d[i];
          off += (i == ax ? index_of(index[t], size) : c) * xst[i];
        }
        y[t] = x[off];
      }
    });
  }

 private:
  int64_t axis_;
  bool per_image_;
};

}  // namespace

const OpSchema gather_schema{"gather", 2, 2, kGatherAttrs, {}};

std::unique_ptr<Node> make_gather(const OpArgs& a) { return std::make_unique<GatherNode>(a); }

}  // namespace xnor::ops

// arg_reduce: argmax / argmin along one physical axis, the index as float32 (exact below 2^24). As
// PyTorch: the first index on ties, a NaN counts as the maximum (and, for argmin, the minimum): the
// first NaN wins. keepdims keeps the axis as size 1. One portable loop: every ISA path and thread
// count give the same result.
#include <cmath>
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kArgReduceAttrs[] = {
    {"op", AttrType::kString, true}, {"axis", AttrType::kInt, true}, {"keepdims", AttrType::kBool, false}};

class ArgReduceNode final : public Node {
 public:
  ArgReduceNode(const OpArgs& a, bool argmax)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        argmax_(argmax),
        axis_(a.integer("axis")),
        keepdims_(a.boolean("keepdims", false)),
        per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    const Shape& x = in[0];
    const int ax = checked_axis(axis_, x, per_image_, "reduces", [this](const std::string& m) { fail(m); });
    if (x.d[ax] > kMaxExactIndex) fail("axis of size " + std::to_string(x.d[ax]) + " exceeds 2^24");
    if (!keepdims_ && x.rank == 1) fail("reducing the only axis without keepdims leaves rank 0");
    Shape out;
    for (int i = 0; i < x.rank; ++i) {
      if (i != ax) {
        out.d[out.rank++] = x.d[i];
      } else if (keepdims_) {
        out.d[out.rank++] = 1;
      }
    }
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const AxisView v = axis_view(s[0], normalize_axis(axis_, s[0].rank));
    for_rows(ctx, v.outer * v.inner, v.len, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t o = static_cast<int64_t>(r) / v.inner, i = static_cast<int64_t>(r) % v.inner;
        const float* p = x + o * v.len * v.inner + i;
        int64_t best = 0;
        float m = p[0];
        for (int64_t j = 1; j < v.len && !std::isnan(m); ++j) {
          const float c = p[j * v.inner];
          if (std::isnan(c) || (argmax_ ? c > m : c < m)) {
            m = c;
            best = j;
          }
        }
        y[r] = static_cast<float>(best);
      }
    });
  }

 private:
  bool argmax_;
  int64_t axis_;
  bool keepdims_, per_image_;
};

}  // namespace

const OpSchema arg_reduce_schema{"arg_reduce", 1, 1, kArgReduceAttrs, {}};

std::unique_ptr<Node> make_arg_reduce(const OpArgs& a) {
  const std::string op = a.string("op", "");
  if (op == "argmax") return std::make_unique<ArgReduceNode>(a, true);
  if (op == "argmin") return std::make_unique<ArgReduceNode>(a, false);
  a.fail("op must be 'argmax' or 'argmin', got '" + op + "'");
}

}  // namespace xnor::ops

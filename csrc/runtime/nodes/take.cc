// take: numpy.take(x, index, axis): output shape x[:axis] + index + x[axis + 1:], each index (float32
// holding an integer, negative counting from the end as Python indexing) picking a slice of x along
// `axis`. index_select, embedding (x = the constant table, axis 0) and x[:, idx] with a tensor index
// are this op. Every index is checked before anything is written: one that is not an integer inside
// the axis fails the run with a message naming the op, never a read outside x. A copy, exact.
#include <cstring>
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kTakeAttrs[] = {{"axis", AttrType::kInt, true}};

class TakeNode final : public Node {
 public:
  explicit TakeNode(const OpArgs& a) : Node(a.op(), {DType::kF32}, DType::kF32), axis_(a.integer("axis")) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    const Shape &x = in[0], &idx = in[1];
    const int ax = normalize_axis(axis_, x.rank);
    if (ax < 0) fail("axis " + std::to_string(axis_) + " does not fit input " + x.str());
    if (x.rank - 1 + idx.rank > kMaxRank) fail("output rank exceeds " + std::to_string(kMaxRank));
    Shape out;
    for (int i = 0; i < ax; ++i) out.d[out.rank++] = x.d[i];
    for (int i = 0; i < idx.rank; ++i) out.d[out.rank++] = idx.d[i];
    for (int i = ax + 1; i < x.rank; ++i) out.d[out.rank++] = x.d[i];
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    const float* index = static_cast<const float*>(in[1]);
    float* y = static_cast<float*>(out);
    const AxisView v = axis_view(s[0], normalize_axis(axis_, s[0].rank));
    const int64_t count = s[1].elements();
    for (int64_t j = 0; j < count; ++j) {
      if (index_of(index[j], v.len) < 0) fail(bad_index_message(index[j], v.len));
    }
    for_rows(ctx, v.outer * count, v.inner, [&](size_t first, size_t n) {
      for (size_t r = first; r < first + n; ++r) {
        const int64_t o = static_cast<int64_t>(r) / count, j = static_cast<int64_t>(r) % count;
        const int64_t src = index_of(index[j], v.len);
        std::memcpy(y + static_cast<int64_t>(r) * v.inner, x + (o * v.len + src) * v.inner,
                    static_cast<size_t>(v.inner) * sizeof(float));
      }
    });
  }

 private:
  int64_t axis_;
};

}  // namespace

const OpSchema take_schema{"take", 2, 2, kTakeAttrs, {}};

std::unique_ptr<Node> make_take(const OpArgs& a) { return std::make_unique<TakeNode>(a); }

}  // namespace xnor::ops

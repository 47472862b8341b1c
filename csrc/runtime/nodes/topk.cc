// topk: the k largest (or smallest) values along one physical axis, sorted, or their indices as
// float32 (`output`); `sort` is topk with k = the axis size. Order as PyTorch's stable sort: NaN
// above every number, equal values by lower index first. The order is a strict total order (value,
// then index), so std::partial_sort gives one answer whatever its internals: every ISA path and
// thread count agree. The per-row index lists live in the planned workspace (int32: axes < 2^24).
#include <algorithm>
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kTopkAttrs[] = {{"k", AttrType::kInt, true},
                                     {"axis", AttrType::kInt, true},
                                     {"largest", AttrType::kBool, false},
                                     {"output", AttrType::kString, true}};

class TopkNode final : public Node {
 public:
  TopkNode(const OpArgs& a, bool indices)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        indices_(indices),
        k_(require_positive(a, a.integer("k"), "k")),
        axis_(a.integer("axis")),
        largest_(a.boolean("largest", true)),
        per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    const int ax = checked_axis(axis_, in[0], per_image_, "sorts along", [this](const std::string& m) { fail(m); });
    if (in[0].d[ax] > kMaxExactIndex) fail("axis of size " + std::to_string(in[0].d[ax]) + " exceeds 2^24");
    if (k_ > in[0].d[ax]) fail("k " + std::to_string(k_) + " exceeds the axis size " + std::to_string(in[0].d[ax]));
    Shape out = in[0];
    out.d[ax] = k_;
    return out;
  }
  size_t workspace_bytes(const Shape* in, size_t, int) const override {
    return static_cast<size_t>(in[0].elements()) * sizeof(int32_t);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    int32_t* work = static_cast<int32_t*>(ctx.workspace);
    const AxisView v = axis_view(s[0], normalize_axis(axis_, s[0].rank));
    for_rows(ctx, v.outer * v.inner, v.len, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t o = static_cast<int64_t>(r) / v.inner, i = static_cast<int64_t>(r) % v.inner;
        const float* p = x + o * v.len * v.inner + i;
        int32_t* idx = work + static_cast<int64_t>(r) * v.len;
        for (int64_t j = 0; j < v.len; ++j) idx[j] = static_cast<int32_t>(j);
        const auto before = [&](int32_t a, int32_t b) {
          const float pa = p[a * v.inner], pb = p[b * v.inner];
          if (largest_ ? greater_nan(pa, pb) : less_nan(pa, pb)) return true;
          if (largest_ ? greater_nan(pb, pa) : less_nan(pb, pa)) return false;
          return a < b;
        };
        std::partial_sort(idx, idx + k_, idx + v.len, before);
        float* q = y + o * k_ * v.inner + i;
        for (int64_t j = 0; j < k_; ++j) q[j * v.inner] = indices_ ? static_cast<float>(idx[j]) : p[idx[j] * v.inner];
      }
    });
  }

 private:
  bool indices_;
  int64_t k_, axis_;
  bool largest_, per_image_;
};

}  // namespace

const OpSchema topk_schema{"topk", 1, 1, kTopkAttrs, {}};

std::unique_ptr<Node> make_topk(const OpArgs& a) {
  const std::string output = a.string("output", "");
  if (output == "values") return std::make_unique<TopkNode>(a, false);
  if (output == "indices") return std::make_unique<TopkNode>(a, true);
  a.fail("output must be 'values' or 'indices', got '" + output + "'");
}

}  // namespace xnor::ops

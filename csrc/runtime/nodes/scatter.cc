// scatter: torch.scatter / scatter_add: y = x, then for every position p of index (x's rank, at most
// x's size off `axis`), y[p with its `axis` coordinate = index[p]] = src[p] ("none") or += src[p]
// ("add"); src has index's rank and at least its size on every axis (position p reads src[p], as
// PyTorch), or one element that every position writes. Positions that share
// their other coordinates write only their own line of y, so each line is one task and its writes go
// in index order along the axis: the last write wins on repeated indices, sums add in that order, and
// every ISA path and thread count give the same bits. Indices are checked before anything is written
// (float32 integers in [-size, size)); a bad one fails the run naming the op.
#include <cstring>
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kScatterAttrs[] = {{"axis", AttrType::kInt, true}, {"reduce", AttrType::kString, false}};

class ScatterNode final : public Node {
 public:
  ScatterNode(const OpArgs& a, bool add)
      : Node(a.op(), {DType::kF32}, DType::kF32), add_(add), axis_(a.integer("axis")), per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    const Shape &x = in[0], &idx = in[1], &src = in[2];
    const int ax = checked_axis(axis_, x, per_image_, "scatters along", [this](const std::string& m) { fail(m); });
    if (idx.rank != x.rank) fail("index " + idx.str() + " must have the rank of input " + x.str());
    for (int i = 0; i < x.rank; ++i) {
      if (i != ax && idx.d[i] > x.d[i]) fail("index " + idx.str() + " is larger than input " + x.str());
    }
    bool covers = src.rank == idx.rank;
    for (int i = 0; covers && i < idx.rank; ++i) covers = src.d[i] >= idx.d[i];
    if (!covers && src.elements() != 1) {
      fail("src " + src.str() + " must cover index " + idx.str() + " (same rank, no smaller) or have one element");
    }
    return x;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    const float* index = static_cast<const float*>(in[1]);
    const float* src = static_cast<const float*>(in[2]);
    float* y = static_cast<float*>(out);
    const Shape &xs = s[0], &is = s[1];
    const int ax = normalize_axis(axis_, xs.rank);
    const int64_t count = is.elements(), size = xs.d[ax];
    for (int64_t j = 0; j < count; ++j) {
      if (index_of(index[j], size) < 0) fail(bad_index_message(index[j], size));
    }
    const bool one = s[2].elements() == 1;
    parallel_for(ctx.pool, static_cast<size_t>(xs.elements()), kElementGrain,
                 [&](size_t b, size_t e) { std::memcpy(y + b, x + b, (e - b) * sizeof(float)); });
    int64_t xst[kMaxRank], sst[kMaxRank];
    strides_of(xs, xst);
    strides_of(s[2], sst);
    const AxisView v = axis_view(is, ax);  // lines of index along the axis: (outer, inner) pairs
    for_rows(ctx, v.outer * v.inner, v.len, [&](size_t first, size_t n) {
      for (size_t r = first; r < first + n; ++r) {
        const int64_t o = static_cast<int64_t>(r) / v.inner, i = static_cast<int64_t>(r) % v.inner;
        // y's offset of this line with axis coordinate 0: unravel (o, i) over index's other axes.
        int64_t base = 0, sbase = 0, rest = i;
        for (int k = is.rank - 1; k > ax; --k) {
          base += (rest % is.d[k]) * xst[k];
          sbase += (rest % is.d[k]) * sst[k];
          rest /= is.d[k];
        }
        rest = o;
        for (int k = ax - 1; k >= 0; --k) {
          base += (rest % is.d[k]) * xst[k];
          sbase += (rest % is.d[k]) * sst[k];
          rest /= is.d[k];
        }
        for (int64_t j = 0; j < v.len; ++j) {
          const int64_t p = (o * v.len + j) * v.inner + i;
          float* dst = y + base + index_of(index[p], size) * xst[ax];
          const float value = one ? src[0] : src[sbase + j * sst[ax]];
          *dst = add_ ? *dst + value : value;
        }
      }
    });
  }

 private:
  bool add_;
  int64_t axis_;
  bool per_image_;
};

}  // namespace

const OpSchema scatter_schema{"scatter", 3, 3, kScatterAttrs, {}};

std::unique_ptr<Node> make_scatter(const OpArgs& a) {
  const std::string reduce = a.string("reduce", "none");
  if (reduce == "none") return std::make_unique<ScatterNode>(a, false);
  if (reduce == "add") return std::make_unique<ScatterNode>(a, true);
  a.fail("reduce must be 'none' or 'add', got '" + reduce + "'");
}

}  // namespace xnor::ops

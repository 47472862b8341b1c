// scatter: torch.scatter / scatter_add / scatter_reduce: y = x, then for every position p of index
// (x's rank, at most x's size off `axis`), with d = y[p with its `axis` coordinate = index[p]]:
// d = src[p] ("none"), d += src[p] ("add"), d *= src[p] ("mul"), d = max(d, src[p]) / min ("max" /
// "min": std::max / std::min, a NaN src wins, as PyTorch's CPU kernel) or "mean" (the sum, then
// divided by the number of values that reached d, counting d itself when include_self). With
// include_self false, every d that some position reaches starts from the reduction's identity
// (0, 1, -inf, +inf; mean: 0 and a count of 0) instead of x. Every op computes in float32, as
// PyTorch. src has index's rank and at least its size on every axis (position p reads src[p], as
// PyTorch), or one element that every position writes. Positions that share
// their other coordinates write only their own line of y, so each line is one task and its writes go
// in index order along the axis: the last write wins on repeated indices, sums add in that order, and
// every ISA path and thread count give the same bits. Indices are checked before anything is written
// (float32 integers in [-size, size)); a bad one fails the run naming the op.
#include <cstring>
#include <limits>
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kScatterAttrs[] = {
    {"axis", AttrType::kInt, true}, {"reduce", AttrType::kString, false}, {"include_self", AttrType::kBool, false}};

enum class Combine { kNone, kAdd, kMul, kMax, kMin, kMean };

class ScatterNode final : public Node {
 public:
  ScatterNode(const OpArgs& a, Combine op)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        op_(op),
        include_self_(a.boolean("include_self", true)),
        axis_(a.integer("axis")),
        per_image_(a.per_image()) {
    if (!include_self_ && op == Combine::kNone) a.fail("include_self false needs a reduce other than 'none'");
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
  // mean: one float32 count per element of y.
  size_t workspace_bytes(const Shape* in, size_t, int) const override {
    return op_ == Combine::kMean ? static_cast<size_t>(in[0].elements()) * sizeof(float) : 0;
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
    float* counts = static_cast<float*>(ctx.workspace);  // mean only
    const float first_count = include_self_ ? 1.0f : 0.0f;
    parallel_for(ctx.pool, static_cast<size_t>(xs.elements()), kElementGrain, [&](size_t b, size_t e) {
      std::memcpy(y + b, x + b, (e - b) * sizeof(float));
      if (op_ == Combine::kMean) {
        for (size_t k = b; k < e; ++k) counts[k] = first_count;
      }
    });
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
        if (!include_self_) {  // every reached element starts from the identity
          for (int64_t j = 0; j < v.len; ++j) {
            const int64_t p = (o * v.len + j) * v.inner + i;
            y[base + index_of(index[p], size) * xst[ax]] = identity();
          }
        }
        for (int64_t j = 0; j < v.len; ++j) {
          const int64_t p = (o * v.len + j) * v.inner + i;
          const int64_t at = base + index_of(index[p], size) * xst[ax];
          const float value = one ? src[0] : src[sbase + j * sst[ax]];
          y[at] = combine(y[at], value);
          if (op_ == Combine::kMean) counts[at] += 1.0f;
        }
      }
    });
    if (op_ == Combine::kMean) {
      parallel_for(ctx.pool, static_cast<size_t>(xs.elements()), kElementGrain, [&](size_t b, size_t e) {
        for (size_t k = b; k < e; ++k) y[k] = y[k] / (counts[k] == 0.0f ? 1.0f : counts[k]);
      });
    }
  }

 private:
  float identity() const {
    switch (op_) {
      case Combine::kMul: return 1.0f;
      case Combine::kMax: return -std::numeric_limits<float>::infinity();
      case Combine::kMin: return std::numeric_limits<float>::infinity();
      default: return 0.0f;
    }
  }
  float combine(float d, float v) const {
    switch (op_) {
      case Combine::kAdd:
      case Combine::kMean: return d + v;
      case Combine::kMul: return d * v;
      case Combine::kMax: return std::isnan(v) ? v : (d < v ? v : d);
      case Combine::kMin: return std::isnan(v) ? v : (v < d ? v : d);
      default: return v;
    }
  }

  Combine op_;
  bool include_self_;
  int64_t axis_;
  bool per_image_;
};

}  // namespace

const OpSchema scatter_schema{"scatter", 3, 3, kScatterAttrs, {}};

std::unique_ptr<Node> make_scatter(const OpArgs& a) {
  const std::string reduce = a.string("reduce", "none");
  if (reduce == "none") return std::make_unique<ScatterNode>(a, Combine::kNone);
  if (reduce == "add") return std::make_unique<ScatterNode>(a, Combine::kAdd);
  if (reduce == "mul") return std::make_unique<ScatterNode>(a, Combine::kMul);
  if (reduce == "max") return std::make_unique<ScatterNode>(a, Combine::kMax);
  if (reduce == "min") return std::make_unique<ScatterNode>(a, Combine::kMin);
  if (reduce == "mean") return std::make_unique<ScatterNode>(a, Combine::kMean);
  a.fail("reduce must be 'none', 'add', 'mul', 'max', 'min' or 'mean', got '" + reduce + "'");
}

}  // namespace xnor::ops

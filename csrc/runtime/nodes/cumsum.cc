// cumsum: a running reduction along one physical axis. op "sum" (the default) and "prod" accumulate
// in double in index order and round to float32 at each output (PyTorch's CPU cumsum / cumprod
// kernels accumulate the same way, so the result is equal to theirs). op "max" / "min" are
// cummax / cummin, as PyTorch's CPU kernel: an element replaces the running value when it is NaN,
// or when the running value is not NaN and the element is >= (max) / <= (min) it, so the index on
// ties is the LAST one; output "values" or "indices" (the running index as a float32 integer).
// One portable loop: every ISA path and thread count give the same result.
#include <cmath>
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kCumsumAttrs[] = {
    {"axis", AttrType::kInt, true}, {"op", AttrType::kString, false}, {"output", AttrType::kString, false}};

enum class Scan { kSum, kProd, kMax, kMin };

class CumsumNode final : public Node {
 public:
  CumsumNode(const OpArgs& a, Scan op, bool indices)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        op_(op),
        indices_(indices),
        axis_(a.integer("axis")),
        per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    const int ax = checked_axis(axis_, in[0], per_image_, "scans along", [this](const std::string& m) { fail(m); });
    if (indices_ && in[0].d[ax] > kMaxExactIndex) fail("axis of size " + std::to_string(in[0].d[ax]) + " exceeds 2^24");
    return in[0];
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const AxisView v = axis_view(s[0], normalize_axis(axis_, s[0].rank));
    for_rows(ctx, v.outer * v.inner, v.len, [&](size_t first, size_t count) {
      for (size_t r = first; r < first + count; ++r) {
        const int64_t o = static_cast<int64_t>(r) / v.inner, i = static_cast<int64_t>(r) % v.inner;
        const int64_t off = o * v.len * v.inner + i;
        if (op_ == Scan::kSum || op_ == Scan::kProd) {
          double acc = op_ == Scan::kSum ? 0.0 : 1.0;
          for (int64_t j = 0; j < v.len; ++j) {
            const double e = static_cast<double>(x[off + j * v.inner]);
            acc = op_ == Scan::kSum ? acc + e : acc * e;
            y[off + j * v.inner] = static_cast<float>(acc);
          }
          continue;
        }
        float best = x[off];
        int64_t at = 0;
        for (int64_t j = 0; j < v.len; ++j) {
          const float e = x[off + j * v.inner];
          const bool wins = op_ == Scan::kMax ? e >= best : e <= best;
          if (std::isnan(e) || (!std::isnan(best) && wins)) {
            best = e;
            at = j;
          }
          y[off + j * v.inner] = indices_ ? static_cast<float>(at) : best;
        }
      }
    });
  }

 private:
  Scan op_;
  bool indices_;
  int64_t axis_;
  bool per_image_;
};

}  // namespace

const OpSchema cumsum_schema{"cumsum", 1, 1, kCumsumAttrs, {}};

std::unique_ptr<Node> make_cumsum(const OpArgs& a) {
  const std::string op = a.string("op", "sum"), output = a.string("output", "values");
  if (output != "values" && output != "indices") a.fail("output must be 'values' or 'indices', got '" + output + "'");
  const bool indices = output == "indices";
  if (op == "max") return std::make_unique<CumsumNode>(a, Scan::kMax, indices);
  if (op == "min") return std::make_unique<CumsumNode>(a, Scan::kMin, indices);
  if (indices) a.fail("output 'indices' needs op 'max' or 'min', got '" + op + "'");
  if (op == "sum") return std::make_unique<CumsumNode>(a, Scan::kSum, false);
  if (op == "prod") return std::make_unique<CumsumNode>(a, Scan::kProd, false);
  a.fail("op must be 'sum', 'prod', 'max' or 'min', got '" + op + "'");
}

}  // namespace xnor::ops

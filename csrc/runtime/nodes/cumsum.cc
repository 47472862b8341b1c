// cumsum: running sum along one physical axis, accumulated in double in index order and rounded to
// float32 at each output (PyTorch's CPU kernel accumulates the same way, so the result is equal to
// it). One portable loop: every ISA path and thread count give the same result.
#include <string>

#include "runtime/nodes/index_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kCumsumAttrs[] = {{"axis", AttrType::kInt, true}};

class CumsumNode final : public Node {
 public:
  explicit CumsumNode(const OpArgs& a)
      : Node(a.op(), {DType::kF32}, DType::kF32), axis_(a.integer("axis")), per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    checked_axis(axis_, in[0], per_image_, "sums along", [this](const std::string& m) { fail(m); });
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
        double acc = 0.0;
        for (int64_t j = 0; j < v.len; ++j) {
          acc += static_cast<double>(x[off + j * v.inner]);
          y[off + j * v.inner] = static_cast<float>(acc);
        }
      }
    });
  }

 private:
  int64_t axis_;
  bool per_image_;
};

}  // namespace

const OpSchema cumsum_schema{"cumsum", 1, 1, kCumsumAttrs, {}};

std::unique_ptr<Node> make_cumsum(const OpArgs& a) { return std::make_unique<CumsumNode>(a); }

}  // namespace xnor::ops

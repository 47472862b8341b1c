// softmax and log_softmax along one physical axis (`axis`, default the last). Along the last
// axis each row goes to the row kernels; along another axis the same operations run on strided
// columns, in the same order (elementwise.h's softmax contract, log_softmax.h's double sum), so
// the result does not depend on which axis holds the values.
#include <cmath>

#include "microkernels/log_softmax.h"
#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kSoftmaxAttrs[] = {{"axis", AttrType::kInt, false}};

// softmax of the `len` values x[0], x[stride], ... (elementwise.h: m = max in order,
// e_i = exp(x_i - m) in float, s = their float sum in order from +0, y_i = e_i / s).
void softmax_strided(const float* x, int64_t len, int64_t stride, float* y) {
  float m = x[0];
  for (int64_t i = 1; i < len; ++i) m = (x[i * stride] > m) ? x[i * stride] : m;
  float s = 0.0f;
  for (int64_t i = 0; i < len; ++i) {
    y[i * stride] = std::exp(x[i * stride] - m);
    s = s + y[i * stride];
  }
  for (int64_t i = 0; i < len; ++i) y[i * stride] = y[i * stride] / s;
}

// log_softmax_rows (log_softmax.h) on strided values.
void log_softmax_strided(const float* x, int64_t len, int64_t stride, float* y) {
  float m = x[0];
  for (int64_t i = 1; i < len; ++i) m = (x[i * stride] > m) ? x[i * stride] : m;
  double s = 0.0;
  for (int64_t i = 0; i < len; ++i) s += std::exp(static_cast<double>(x[i * stride]) - static_cast<double>(m));
  const double log_s = std::log(s);
  for (int64_t i = 0; i < len; ++i) {
    y[i * stride] = static_cast<float>((static_cast<double>(x[i * stride]) - static_cast<double>(m)) - log_s);
  }
}

class SoftmaxNode final : public Node {
 public:
  SoftmaxNode(const OpArgs& a, bool log)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        log_(log),
        axis_(a.has("axis") ? a.integer("axis") : -1),
        per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t) const override {
    const int ax = normalize_axis(axis_, in[0].rank);
    if (ax < 0) fail("axis " + std::to_string(axis_) + " does not fit input " + in[0].str());
    if (!per_image_ && ax == 0 && in[0].d[0] != 1) fail(batch_axis_message("normalizes along", in[0].d[0]));
    return in[0];
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int ax = normalize_axis(axis_, s[0].rank);
    const int64_t len = s[0].d[ax], inner = span(s[0], ax + 1, s[0].rank);
    if (inner == 1) {
      for_rows(ctx, s[0].elements() / len, len, [&](size_t r, size_t n) {
        if (log_) {
          log_softmax_rows(x + r * len, n, len, y + r * len);
        } else {
          ctx.ew->softmax(x + r * len, n, len, y + r * len);
        }
      });
      return;
    }
    // Columns: (outer index, inner index) pairs, each `len` values `inner` apart.
    for_rows(ctx, s[0].elements() / len, len, [&](size_t first, size_t count) {
      for (size_t c = first; c < first + count; ++c) {
        const int64_t o = static_cast<int64_t>(c) / inner, i = static_cast<int64_t>(c) % inner;
        const int64_t off = o * len * inner + i;
        if (log_) {
          log_softmax_strided(x + off, len, inner, y + off);
        } else {
          softmax_strided(x + off, len, inner, y + off);
        }
      }
    });
  }

 private:
  bool log_;
  int64_t axis_;
  bool per_image_;
};

}  // namespace

const OpSchema softmax_schema{"softmax", 1, 1, kSoftmaxAttrs, {}};
const OpSchema log_softmax_schema{"log_softmax", 1, 1, kSoftmaxAttrs, {}};

std::unique_ptr<Node> make_softmax(const OpArgs& a) { return std::make_unique<SoftmaxNode>(a, false); }
std::unique_ptr<Node> make_log_softmax(const OpArgs& a) { return std::make_unique<SoftmaxNode>(a, true); }

}  // namespace xnor::ops

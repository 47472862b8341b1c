// softmax and log_softmax over the features of each (N, F) row.
#include "microkernels/log_softmax.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

class SoftmaxNode final : public Node {
 public:
  SoftmaxNode(const OpArgs& a, bool log) : Node(a.op(), {DType::kF32}, DType::kF32), log_(log) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 2) fail("input must be (N, F), got " + in[0].str());
    return in[0];
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t f = s[0].channels();
    for_rows(ctx, s[0].rows(), f, [&](size_t r, size_t n) {
      if (log_) {
        log_softmax_rows(x + r * f, n, f, y + r * f);
      } else {
        ctx.ew->softmax(x + r * f, n, f, y + r * f);
      }
    });
  }

 private:
  bool log_;
};

}  // namespace

const OpSchema softmax_schema{"softmax", 1, 1, {}, {}};
const OpSchema log_softmax_schema{"log_softmax", 1, 1, {}, {}};

std::unique_ptr<Node> make_softmax(const OpArgs& a) { return std::make_unique<SoftmaxNode>(a, false); }
std::unique_ptr<Node> make_log_softmax(const OpArgs& a) { return std::make_unique<SoftmaxNode>(a, true); }

}  // namespace xnor::ops

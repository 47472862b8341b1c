// add and mul of two float tensors of one shape; mul also scales NHWC a by a per-image (N, C) b.
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

class AddMulNode final : public Node {
 public:
  AddMulNode(const OpArgs& a, bool mul) : Node(a.op(), {DType::kF32}, DType::kF32), mul_(mul) {}
  bool fuses_sign() const override { return true; }
  // add's inputs always have its output's shape; mul's b may be (N, C), which rows cannot index.
  bool element_wise() const override { return !mul_; }
  bool runs_rows() const override { return !mul_; }
  void run_rows(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, int64_t first,
                int64_t rows) const override {
    const int64_t c = s[0].channels();
    ctx.ew->add(static_cast<const float*>(in[0]) + first * c, static_cast<const float*>(in[1]) + first * c,
                static_cast<size_t>(rows * c), static_cast<float*>(out) + first * c);
  }
  Shape infer(const Shape* in, size_t count) const override {
    if (count != 2) fail("needs exactly 2 inputs");
    if (in[0] == in[1]) return in[0];
    if (mul_ && in[0].rank == 4 && in[1] == Shape::nf(in[0].d[0], in[0].channels())) return in[0];
    fail(std::string("input shapes ") + in[0].str() + " and " + in[1].str() + " do not match" +
         (mul_ ? " (b must have a's shape or be (N, C))" : ""));
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* a = static_cast<const float*>(in[0]);
    const float* b = static_cast<const float*>(in[1]);
    float* y = static_cast<float*>(out);
    const int64_t c = s[0].channels();
    if (s[0] == s[1]) {
      const BinaryOpFn fn = mul_ ? ctx.ew->mul : ctx.ew->add;
      if (ctx.sign == nullptr) {
        parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain,
                     [&](size_t i, size_t e) { fn(a + i, b + i, e - i, y + i); });
      } else {  // element-wise: rows are a split like any other
        const size_t uc = static_cast<size_t>(c);
        for_out_rows(ctx, s[0].rows(), c, y,
                     [&](size_t r, size_t n) { fn(a + r * uc, b + r * uc, n * uc, y + r * uc); });
      }
      return;
    }
    const int64_t pixels = s[0].d[1] * s[0].d[2];
    for_out_rows(ctx, s[0].rows(), c, y, [&](size_t r, size_t n) {
      while (n > 0) {  // rows of one image share b's row
        const size_t img = r / pixels, take = std::min<size_t>(n, (img + 1) * pixels - r);
        ctx.ew->mul_channel(a + r * c, take, c, b + img * c, y + r * c);
        r += take;
        n -= take;
      }
    });
  }

 private:
  bool mul_;
};

}  // namespace

const OpSchema add_schema{"add", 2, 2, {}, {}};
const OpSchema mul_schema{"mul", 2, 2, {}, {}};

std::unique_ptr<Node> make_add(const OpArgs& a) { return std::make_unique<AddMulNode>(a, false); }
std::unique_ptr<Node> make_mul(const OpArgs& a) { return std::make_unique<AddMulNode>(a, true); }

}  // namespace xnor::ops

// prelu: y = t >= 0 ? t : slope[c] * t with t = x - pre_shift[c], then + post_shift[c] (both optional).
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr ParamSchema kParams[] = {{"slope", ParamDType::kFloat32, true},
                                   {"pre_shift", ParamDType::kFloat32, false},
                                   {"post_shift", ParamDType::kFloat32, false}};

class PreluNode final : public SameShapeNode {
 public:
  PreluNode(const OpArgs& a, int64_t channels, std::vector<float> slope, std::vector<float> pre,
            std::vector<float> post)
      : SameShapeNode(a, DType::kF32, DType::kF32, channels),
        slope_(std::move(slope)),
        pre_(std::move(pre)),
        post_(std::move(post)) {}
  bool fuses_sign() const override { return true; }
  bool element_wise() const override { return true; }
  bool runs_rows() const override { return true; }
  void run_rows(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, int64_t first,
                int64_t rows) const override {
    const int64_t c = s[0].channels();
    const size_t stride = slope_.size() == 1 ? 0 : 1;
    ctx.ew->prelu(static_cast<const float*>(in[0]) + first * c, static_cast<size_t>(rows), c, slope_.data(), stride,
                  pre_.empty() ? nullptr : pre_.data(), post_.empty() ? nullptr : post_.data(),
                  static_cast<float*>(out) + first * c);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out,
           const Shape&) const override {
    for_out_rows(ctx, s[0].rows(), s[0].channels(), static_cast<float*>(out),
                 [&](size_t r, size_t n) { run_rows(ctx, in, s, count, out, r, n); });
  }

 private:
  std::vector<float> slope_, pre_, post_;
};

}  // namespace

const OpSchema prelu_schema{"prelu", 1, 1, {}, kParams};

std::unique_ptr<Node> make_prelu(const OpArgs& a) {
  const ParamView* sl = a.param("slope");
  if (sl->shape.size() != 1 || sl->shape[0] < 1) a.fail("slope must be (C,) or (1,), got " + shape_str(sl->shape));
  const ParamView* pre = a.param("pre_shift");
  const ParamView* post = a.param("post_shift");
  int64_t c = sl->shape[0] > 1 ? sl->shape[0] : 0;
  for (const ParamView* p : {pre, post}) {
    if (!p) continue;
    if (p->shape.size() != 1 || (c && p->shape[0] != c)) {
      a.fail("pre_shift/post_shift must be (C,) matching slope, got " + shape_str(p->shape));
    }
    c = p->shape[0];
  }
  if (sl->shape[0] > 1 && sl->shape[0] != c) a.fail("slope and shifts have different channel counts");
  return std::make_unique<PreluNode>(a, c, copy_f32(sl), copy_f32(pre), copy_f32(post));
}

}  // namespace xnor::ops

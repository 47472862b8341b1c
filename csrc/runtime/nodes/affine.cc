// affine: y = x * scale[c] + shift[c] (one fma) per channel (folded batch norm).
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr ParamSchema kParams[] = {{"scale", ParamDType::kFloat32, true}, {"shift", ParamDType::kFloat32, true}};

class AffineNode final : public SameShapeNode {
 public:
  AffineNode(const OpArgs& a, std::vector<float> scale, std::vector<float> shift)
      : SameShapeNode(a, DType::kF32, DType::kF32, static_cast<int64_t>(scale.size())),
        scale_(std::move(scale)),
        shift_(std::move(shift)),
        epilogue_{scale_.data(), shift_.data(), channels_} {}
  bool fuses_sign() const override { return true; }
  const AffineEpilogue* affine_epilogue() const override { return &epilogue_; }
  bool element_wise() const override { return true; }
  bool runs_rows() const override { return true; }
  void run_rows(const RunContext& ctx, const void* const* in, const Shape*, size_t, void* out, int64_t first,
                int64_t rows) const override {
    const int64_t c = channels_;
    ctx.ew->affine(static_cast<const float*>(in[0]) + first * c, static_cast<size_t>(rows), c, scale_.data(),
                   shift_.data(), static_cast<float*>(out) + first * c);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out,
           const Shape&) const override {
    for_out_rows(ctx, s[0].rows(), channels_, static_cast<float*>(out),
                 [&](size_t r, size_t n) { run_rows(ctx, in, s, count, out, r, n); });
  }

 private:
  std::vector<float> scale_, shift_;
  AffineEpilogue epilogue_;
};

}  // namespace

const OpSchema affine_schema{"affine", 1, 1, {}, kParams};

std::unique_ptr<Node> make_affine(const OpArgs& a) {
  const ParamView* sc = a.param("scale");
  if (sc->shape.size() != 1 || sc->shape[0] < 1) a.fail("scale must be (C,), got " + shape_str(sc->shape));
  const ParamView* sh = a.param("shift", sc->shape);
  return std::make_unique<AffineNode>(a, copy_f32(sc), copy_f32(sh));
}

}  // namespace xnor::ops

// sign: float -> packed bits against per-channel thresholds (one or J groups of them), and
// unpack: packed bits -> +/-1.0f.
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kSignAttrs[] = {{"sign_zero", AttrType::kString, false}};
constexpr ParamSchema kSignParams[] = {{"threshold", ParamDType::kFloat32, false}};

class SignNode final : public Node {
 public:
  SignNode(const OpArgs& a, int64_t channels, int64_t groups, std::vector<float> thresholds, bool zero_is_minus)
      : Node(a.op(), {DType::kF32}, DType::kBits),
        channels_(channels),
        groups_(groups),
        thresholds_(std::move(thresholds)),
        zero_is_minus_(zero_is_minus),
        epilogue_{thresholds_.data(), channels_, groups_, zero_is_minus_} {}
  const SignEpilogue* sign_epilogue() const override { return &epilogue_; }
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].channels() != channels_) {
      fail("input must have " + std::to_string(channels_) + " channels (last axis), got " + in[0].str());
    }
    Shape out = in[0];
    out.d[out.rank - 1] = channels_ * groups_;
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    uint64_t* y = static_cast<uint64_t*>(out);
    const int64_t c = channels_, words = words_of(c * groups_);
    for_rows(ctx, s[0].rows(), c * groups_, [&](size_t r, size_t n) {
      ctx.ew->sign(x + r * c, n, c, thresholds_.data(), groups_, zero_is_minus_, y + r * words);
    });
  }

 private:
  int64_t channels_, groups_;
  std::vector<float> thresholds_;  // [groups][channels]
  bool zero_is_minus_;
  SignEpilogue epilogue_;  // points into thresholds_ (never resized)
};

class UnpackNode final : public Node {
 public:
  explicit UnpackNode(const OpArgs& a) : Node(a.op(), {DType::kBits}, DType::kF32) {}
  Shape infer(const Shape* in, size_t) const override { return in[0]; }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const uint64_t* x = static_cast<const uint64_t*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t c = s[0].channels(), words = words_of(c);
    for_rows(ctx, s[0].rows(), c, [&](size_t r, size_t n) { ctx.ew->unpack(x + r * words, n, c, y + r * c); });
  }
};

}  // namespace

const OpSchema sign_schema{"sign", 1, 1, kSignAttrs, kSignParams};
const OpSchema unpack_schema{"unpack", 1, 1, {}, {}};

std::unique_ptr<Node> make_sign(const OpArgs& a) {
  const std::string sz = a.string("sign_zero", "+1");
  if (sz != "+1" && sz != "-1") a.fail("sign_zero must be '+1' or '-1', got '" + sz + "'");
  const ParamView* t = a.param("threshold");
  int64_t c = a.in_channels(0), groups = 1;
  std::vector<float> th;
  if (t) {
    if (t->shape.size() == 1) {
      c = t->shape[0];
    } else if (t->shape.size() == 2) {
      groups = t->shape[0];
      c = t->shape[1];
    } else {
      a.fail("threshold must be (C,) or (J, C), got " + shape_str(t->shape));
    }
    if (groups < 1 || groups > 64 || c < 1) a.fail("threshold shape " + shape_str(t->shape) + " is out of range");
    th = copy_f32(t);
  } else {
    th.assign(static_cast<size_t>(c), 0.0f);
  }
  for (float v : th)
    if (v != v) a.fail("threshold contains NaN");
  return std::make_unique<SignNode>(a, c, groups, std::move(th), sz == "-1");
}

std::unique_ptr<Node> make_unpack(const OpArgs& a) { return std::make_unique<UnpackNode>(a); }

}  // namespace xnor::ops

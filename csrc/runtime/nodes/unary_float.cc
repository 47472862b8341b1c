// The unary float ops of the general graph, same shape, any rank: exp log sqrt rsqrt reciprocal
// erf silu hardswish hardsigmoid gelu leaky_relu elu signum (docs/ir.md gives each rule and its
// tolerance). One function per kind, compiled once with baseline flags (-ffp-contract=off), so
// every ISA path gives the same bits. sqrt, reciprocal, leaky_relu and signum are single IEEE
// operations (exact); hardswish, hardsigmoid and gelu follow PyTorch's float32 order of
// operations. For gelu that matters beyond rounding: in float32, 1 + erf(x / sqrt(2)) is exactly 0
// below x ~ -5.5 (the tanh form likewise), so PyTorch's gelu is -0.0 there where the true value is a
// tiny negative number; a sign of it is +1 in a model that maps 0 to +1, and the engine must agree.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

enum class UnaryKind {
  kExp,
  kLog,
  kSqrt,
  kRsqrt,
  kReciprocal,
  kErf,
  kSilu,
  kHardswish,
  kHardsigmoid,
  kGeluErf,
  kGeluTanh,
  kLeakyRelu,
  kElu,
  kSignum
};

inline float hardsigmoid(float x) { return std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f; }

// PyTorch's float32 forms: x * 0.5 * (1 + erf(x * (1 / sqrt(2))))
inline float gelu_erf(float x) { return x * 0.5f * (1.0f + std::erf(x * 0.70710678118654752440f)); }

// 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
inline float gelu_tanh(float x) {
  const float cube = x * x * x;
  const float inner = 0.79788456080286535588f * (x + 0.044715f * cube);
  return 0.5f * x * (1.0f + std::tanh(inner));
}

template <UnaryKind K>
void unary_loop(const float* x, size_t n, float p, float* y) {
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    if constexpr (K == UnaryKind::kExp) y[i] = std::exp(v);
    if constexpr (K == UnaryKind::kLog) y[i] = std::log(v);
    if constexpr (K == UnaryKind::kSqrt) y[i] = std::sqrt(v);
    if constexpr (K == UnaryKind::kRsqrt) y[i] = 1.0f / std::sqrt(v);
    if constexpr (K == UnaryKind::kReciprocal) y[i] = 1.0f / v;
    if constexpr (K == UnaryKind::kErf) y[i] = std::erf(v);
    if constexpr (K == UnaryKind::kSilu) y[i] = v / (1.0f + std::exp(-v));
    if constexpr (K == UnaryKind::kHardswish) y[i] = v * std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    if constexpr (K == UnaryKind::kHardsigmoid) y[i] = hardsigmoid(v);
    if constexpr (K == UnaryKind::kGeluErf) y[i] = gelu_erf(v);
    if constexpr (K == UnaryKind::kGeluTanh) y[i] = gelu_tanh(v);
    if constexpr (K == UnaryKind::kLeakyRelu) y[i] = v > 0.0f ? v : v * p;
    if constexpr (K == UnaryKind::kElu) y[i] = v > 0.0f ? v : p * std::expm1(v);
    if constexpr (K == UnaryKind::kSignum) y[i] = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);  // NaN: 0
  }
}

using UnaryLoop = void (*)(const float* x, size_t n, float p, float* y);

class UnaryFloatNode final : public SameShapeNode {
 public:
  UnaryFloatNode(const OpArgs& a, UnaryLoop loop, float p)
      : SameShapeNode(a, DType::kF32, DType::kF32, 0), loop_(loop), p_(p) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain,
                 [&](size_t b, size_t e) { loop_(x + b, e - b, p_, y + b); });
  }

 private:
  UnaryLoop loop_;
  float p_;  // leaky_relu: negative_slope; elu: alpha (float32, as the reference rounds them)
};

template <UnaryKind K>
std::unique_ptr<Node> make_unary(const OpArgs& a, float p = 0.0f) {
  return std::make_unique<UnaryFloatNode>(a, &unary_loop<K>, p);
}

// A float attribute as the float32 the loop uses; finite (the loader accepts only finite numbers).
float float_attr(const OpArgs& a, const char* name, double fallback) {
  const double v = a.has(name) ? a.number(name) : fallback;
  if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max()))
    a.fail(std::string(name) + " must be a finite float32 value");
  return static_cast<float>(v);
}

constexpr AttrSchema kGeluAttrs[] = {{"approximate", AttrType::kString, false}};
constexpr AttrSchema kLeakyReluAttrs[] = {{"negative_slope", AttrType::kFloat, false}};
constexpr AttrSchema kEluAttrs[] = {{"alpha", AttrType::kFloat, false}};

}  // namespace

const OpSchema exp_schema{"exp", 1, 1, {}, {}};
const OpSchema log_schema{"log", 1, 1, {}, {}};
const OpSchema sqrt_schema{"sqrt", 1, 1, {}, {}};
const OpSchema rsqrt_schema{"rsqrt", 1, 1, {}, {}};
const OpSchema reciprocal_schema{"reciprocal", 1, 1, {}, {}};
const OpSchema erf_schema{"erf", 1, 1, {}, {}};
const OpSchema silu_schema{"silu", 1, 1, {}, {}};
const OpSchema hardswish_schema{"hardswish", 1, 1, {}, {}};
const OpSchema hardsigmoid_schema{"hardsigmoid", 1, 1, {}, {}};
const OpSchema gelu_schema{"gelu", 1, 1, kGeluAttrs, {}};
const OpSchema leaky_relu_schema{"leaky_relu", 1, 1, kLeakyReluAttrs, {}};
const OpSchema elu_schema{"elu", 1, 1, kEluAttrs, {}};
const OpSchema signum_schema{"signum", 1, 1, {}, {}};

std::unique_ptr<Node> make_exp(const OpArgs& a) { return make_unary<UnaryKind::kExp>(a); }
std::unique_ptr<Node> make_log(const OpArgs& a) { return make_unary<UnaryKind::kLog>(a); }
std::unique_ptr<Node> make_sqrt(const OpArgs& a) { return make_unary<UnaryKind::kSqrt>(a); }
std::unique_ptr<Node> make_rsqrt(const OpArgs& a) { return make_unary<UnaryKind::kRsqrt>(a); }
std::unique_ptr<Node> make_reciprocal(const OpArgs& a) { return make_unary<UnaryKind::kReciprocal>(a); }
std::unique_ptr<Node> make_erf(const OpArgs& a) { return make_unary<UnaryKind::kErf>(a); }
std::unique_ptr<Node> make_silu(const OpArgs& a) { return make_unary<UnaryKind::kSilu>(a); }
std::unique_ptr<Node> make_hardswish(const OpArgs& a) { return make_unary<UnaryKind::kHardswish>(a); }
std::unique_ptr<Node> make_hardsigmoid(const OpArgs& a) { return make_unary<UnaryKind::kHardsigmoid>(a); }
std::unique_ptr<Node> make_signum(const OpArgs& a) { return make_unary<UnaryKind::kSignum>(a); }

std::unique_ptr<Node> make_gelu(const OpArgs& a) {
  const std::string approximate = a.string("approximate", "none");
  if (approximate == "none") return make_unary<UnaryKind::kGeluErf>(a);
  if (approximate == "tanh") return make_unary<UnaryKind::kGeluTanh>(a);
  a.fail("approximate must be 'none' or 'tanh', got '" + approximate + "'");
}

std::unique_ptr<Node> make_leaky_relu(const OpArgs& a) {
  return make_unary<UnaryKind::kLeakyRelu>(a, float_attr(a, "negative_slope", 0.01));
}

std::unique_ptr<Node> make_elu(const OpArgs& a) { return make_unary<UnaryKind::kElu>(a, float_attr(a, "alpha", 1.0)); }

}  // namespace xnor::ops

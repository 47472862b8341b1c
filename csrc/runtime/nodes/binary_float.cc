// binary (a OP b) and where (cond != 0 ? a : b) on float32 tensors of any rank, with numpy
// broadcasting of the physical shapes (broadcast.h). add sub mul div max min and the comparisons
// are single IEEE operations (exact); pow is std::pow in float32. The loops are compiled once,
// with baseline flags, so every ISA path gives the same bits. The walk hands each op runs that
// are contiguous or broadcast per operand: equal shapes are one contiguous run, a per-channel or
// scalar operand a stride-0 run, and those loops vectorise.
#include <cmath>

#include "runtime/nodes/broadcast.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

enum class BinaryKind { kAdd, kSub, kMul, kDiv, kMax, kMin, kPow, kGt, kGe, kLt, kLe, kEq, kNe };
constexpr const char* kBinaryNames[] = {"add", "sub", "mul", "div", "max", "min", "pow",
                                        "gt",  "ge",  "lt",  "le",  "eq",  "ne"};
constexpr int kBinaryKinds = static_cast<int>(sizeof(kBinaryNames) / sizeof(kBinaryNames[0]));
constexpr AttrSchema kBinaryAttrs[] = {{"op", AttrType::kString, true}};

template <BinaryKind K>
inline float apply(float a, float b) {
  if constexpr (K == BinaryKind::kAdd) return a + b;
  if constexpr (K == BinaryKind::kSub) return a - b;
  if constexpr (K == BinaryKind::kMul) return a * b;
  if constexpr (K == BinaryKind::kDiv) return a / b;
  // torch.maximum / minimum: a NaN operand gives NaN
  if constexpr (K == BinaryKind::kMax) return a != a ? a : (b != b ? b : (a < b ? b : a));
  if constexpr (K == BinaryKind::kMin) return a != a ? a : (b != b ? b : (b < a ? b : a));
  if constexpr (K == BinaryKind::kPow) return std::pow(a, b);
  if constexpr (K == BinaryKind::kGt) return a > b ? 1.0f : 0.0f;
  if constexpr (K == BinaryKind::kGe) return a >= b ? 1.0f : 0.0f;
  if constexpr (K == BinaryKind::kLt) return a < b ? 1.0f : 0.0f;
  if constexpr (K == BinaryKind::kLe) return a <= b ? 1.0f : 0.0f;
  if constexpr (K == BinaryKind::kEq) return a == b ? 1.0f : 0.0f;
  if constexpr (K == BinaryKind::kNe) return a != b ? 1.0f : 0.0f;
}

// One run of n outputs; sa, sb: the operands' strides along it (1, or 0 when broadcast).
template <BinaryKind K>
void binary_run(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) {
  if (sa != 0 && sb != 0) {
    for (int64_t i = 0; i < n; ++i) y[i] = apply<K>(a[i], b[i]);
  } else if (sa != 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = apply<K>(a[i], bv);
  } else if (sb != 0) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = apply<K>(av, b[i]);
  } else {
    const float v = apply<K>(*a, *b);
    for (int64_t i = 0; i < n; ++i) y[i] = v;
  }
}

class BroadcastNode : public Node {
 public:
  BroadcastNode(const OpArgs& a, size_t operands) : Node(a.op(), {DType::kF32}, DType::kF32), operands_(operands) {}
  Shape infer(const Shape* in, size_t count) const override {
    if (count != operands_) fail("needs exactly " + std::to_string(operands_) + " inputs");
    Shape out;
    if (!broadcast_shape(in, count, &out)) {
      std::string shapes;
      for (size_t k = 0; k < count; ++k) shapes += (k ? ", " : "") + in[k].str();
      fail("input shapes " + shapes + " do not broadcast (each axis, right-aligned, must be equal or 1)");
    }
    return out;
  }

 protected:
  // Calls run(offsets, strides_along_run, first_output, n) over the output, split over the pool.
  template <typename Fn>
  void walk(const RunContext& ctx, const Shape* s, size_t count, const Shape& out_shape, Fn&& run) const {
    const BroadcastWalk w(s, count, out_shape);
    int64_t inner[kMaxBroadcastOperands] = {};
    for (size_t k = 0; k < count; ++k) inner[k] = w.stride[k][w.rank - 1] != 0 ? 1 : 0;
    parallel_for(ctx.pool, static_cast<size_t>(out_shape.elements()), kElementGrain, [&](size_t b, size_t e) {
      int64_t pos = static_cast<int64_t>(b);
      w.for_runs(pos, static_cast<int64_t>(e), [&](const int64_t* off, int64_t n) {
        run(off, inner, pos, n);
        pos += n;
      });
    });
  }

 private:
  size_t operands_;
};

class BinaryNode final : public BroadcastNode {
 public:
  BinaryNode(const OpArgs& a, BinaryKind kind) : BroadcastNode(a, 2), kind_(kind) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out,
           const Shape& out_shape) const override {
    switch (kind_) {
      case BinaryKind::kAdd: return go<BinaryKind::kAdd>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kSub: return go<BinaryKind::kSub>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kMul: return go<BinaryKind::kMul>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kDiv: return go<BinaryKind::kDiv>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kMax: return go<BinaryKind::kMax>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kMin: return go<BinaryKind::kMin>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kPow: return go<BinaryKind::kPow>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kGt: return go<BinaryKind::kGt>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kGe: return go<BinaryKind::kGe>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kLt: return go<BinaryKind::kLt>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kLe: return go<BinaryKind::kLe>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kEq: return go<BinaryKind::kEq>(ctx, in, s, count, out, out_shape);
      case BinaryKind::kNe: return go<BinaryKind::kNe>(ctx, in, s, count, out, out_shape);
    }
  }

 private:
  template <BinaryKind K>
  void go(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out,
          const Shape& out_shape) const {
    const float* a = static_cast<const float*>(in[0]);
    const float* b = static_cast<const float*>(in[1]);
    float* y = static_cast<float*>(out);
    walk(ctx, s, count, out_shape, [&](const int64_t* off, const int64_t* st, int64_t pos, int64_t n) {
      binary_run<K>(a + off[0], st[0], b + off[1], st[1], y + pos, n);
    });
  }

  BinaryKind kind_;
};

class WhereNode final : public BroadcastNode {
 public:
  explicit WhereNode(const OpArgs& a) : BroadcastNode(a, 3) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out,
           const Shape& out_shape) const override {
    const float* c = static_cast<const float*>(in[0]);
    const float* a = static_cast<const float*>(in[1]);
    const float* b = static_cast<const float*>(in[2]);
    float* y = static_cast<float*>(out);
    walk(ctx, s, count, out_shape, [&](const int64_t* off, const int64_t* st, int64_t pos, int64_t n) {
      const float *cp = c + off[0], *ap = a + off[1], *bp = b + off[2];
      float* yp = y + pos;
      if (st[0] != 0 && st[1] != 0 && st[2] != 0) {
        for (int64_t i = 0; i < n; ++i) yp[i] = cp[i] != 0.0f ? ap[i] : bp[i];
        return;
      }
      for (int64_t i = 0; i < n; ++i) yp[i] = cp[i * st[0]] != 0.0f ? ap[i * st[1]] : bp[i * st[2]];
    });
  }
};

}  // namespace

const OpSchema binary_schema{"binary", 2, 2, kBinaryAttrs, {}};
const OpSchema where_schema{"where", 3, 3, {}, {}};

std::unique_ptr<Node> make_binary(const OpArgs& a) {
  const std::string op = a.string("op", "");
  for (int k = 0; k < kBinaryKinds; ++k) {
    if (op == kBinaryNames[k]) return std::make_unique<BinaryNode>(a, static_cast<BinaryKind>(k));
  }
  a.fail("op must be one of add, sub, mul, div, max, min, pow, gt, ge, lt, le, eq, ne, got '" + op + "'");
}

std::unique_ptr<Node> make_where(const OpArgs& a) { return std::make_unique<WhereNode>(a); }

}  // namespace xnor::ops

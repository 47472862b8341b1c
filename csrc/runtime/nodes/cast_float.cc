// cast_float: x rounded to float16 or bfloat16 and widened back to float32 (torch's
// `.half().float()` / `.bfloat16().float()`), bit for bit: round to nearest, ties to even, on the
// float32 bits; float16 overflows to +-inf from 65520 on and keeps its subnormals (multiples of
// 2^-24); bfloat16 keeps float32's exponent range (its subnormals are float32 subnormals with the
// low 16 bits rounded off). NaN stays NaN (a quiet NaN). Integer code on the bits (and one exact
// product for half subnormals): identical on every ISA path and thread count.
#include <cstdint>
#include <cstring>
#include <string>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kCastFloatAttrs[] = {{"to", AttrType::kString, true}};

inline uint32_t bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

inline float float_of(uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// Keeps the top 32 - `drop` bits of a finite magnitude `a`, rounding the dropped ones to nearest even.
inline uint32_t round_bits(uint32_t a, int drop) {
  const uint32_t half = (uint32_t{1} << (drop - 1)) - 1, lsb = (a >> drop) & 1u;
  return ((a + half + lsb) >> drop) << drop;
}

float to_bfloat16(float v) {
  const uint32_t u = bits_of(v), sign = u & 0x80000000u, a = u ^ sign;
  const uint32_t rounded = sign | round_bits(a, 16);             // overflows to inf by itself
  return float_of(a > 0x7f800000u ? u | 0x00400000u : rounded);  // NaN: quiet (a select: the loop vectorises)
}

float to_float16(float v) {
  const uint32_t u = bits_of(v), sign = u & 0x80000000u, a = u ^ sign;
  if (a > 0x7f800000u) return float_of(u | 0x00400000u);            // NaN: quiet
  if (a >= 0x477ff000u) return float_of(sign | 0x7f800000u);        // >= 65520: inf (65504 is the largest half)
  if (a >= 0x38800000u) return float_of(sign | round_bits(a, 13));  // a normal half: 10 mantissa bits
  // Below 2^-14, a half subnormal: a multiple of 2^-24. With e the float's biased exponent, the value
  // 1.m * 2^(e-127) keeps 24 - (113 - e) significant bits, i.e. drops 13 + (113 - e) of the 23 + 1.
  const int e = static_cast<int>(a >> 23);
  if (e < 102) return float_of(sign);  // below 2^-25, under half of 2^-24: rounds to 0 (2^-25 ties to 0 below)
  const uint32_t mant = (a & 0x007fffffu) | 0x00800000u;  // the implicit bit made explicit
  const int drop = 13 + (113 - e);                        // 14 .. 24
  const uint32_t half = (uint32_t{1} << (drop - 1)) - 1, lsb = (mant >> drop) & 1u;
  const uint32_t q = (mant + half + lsb) >> drop;  // the half's integer significand, in units of 2^-24
  return float_of(sign | bits_of(static_cast<float>(q) * 5.9604644775390625e-8f));  // q * 2^-24, exact
}

class CastFloatNode final : public SameShapeNode {
 public:
  CastFloatNode(const OpArgs& a, bool half) : SameShapeNode(a, DType::kF32, DType::kF32, 0), half_(half) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain, [&](size_t b, size_t e) {
      if (half_) {
        for (size_t i = b; i < e; ++i) y[i] = to_float16(x[i]);
      } else {
        for (size_t i = b; i < e; ++i) y[i] = to_bfloat16(x[i]);
      }
    });
  }

 private:
  bool half_;
};

}  // namespace

const OpSchema cast_float_schema{"cast_float", 1, 1, kCastFloatAttrs, {}};

std::unique_ptr<Node> make_cast_float(const OpArgs& a) {
  const std::string to = a.string("to", "");
  if (to == "float16") return std::make_unique<CastFloatNode>(a, true);
  if (to == "bfloat16") return std::make_unique<CastFloatNode>(a, false);
  a.fail("to must be 'float16' or 'bfloat16', got '" + to + "'");
}

}  // namespace xnor::ops

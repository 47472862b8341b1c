// bitplane: f32 -> packed bits, one bit-plane of a k-bit activation (microkernels/bitplane.h):
// q = #{m in 1..2^bits - 1 : x >= threshold[m-1][c]} (thresholds m - 0.5 when the parameter is
// absent, so that an integer x in [0, 2^bits - 1] is q itself), output +1 where bit `plane` of q
// is set and -1 where it is clear.
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kBitplaneAttrs[] = {{"plane", AttrType::kInt, true}, {"bits", AttrType::kInt, true}};
constexpr ParamSchema kBitplaneParams[] = {{"threshold", ParamDType::kFloat32, false}};

class BitplaneNode final : public Node {
 public:
  BitplaneNode(const OpArgs& a, int64_t channels, int64_t levels, unsigned plane, std::vector<float> thresholds)
      : Node(a.op(), {DType::kF32}, DType::kBits),
        channels_(channels),
        levels_(levels),
        plane_(plane),
        thresholds_(std::move(thresholds)) {}
  Shape infer(const Shape* in, size_t) const override {
    if (channels_ > 0 && in[0].channels() != channels_) {
      fail("input must have " + std::to_string(channels_) + " channels (last axis), got " + in[0].str());
    }
    return in[0];
  }
  size_t workspace_bytes(const Shape* in, size_t, int) const override {
    // the uniform thresholds m - 0.5, laid out [levels][C] for the input's C
    return channels_ > 0 ? 0 : static_cast<size_t>(levels_ * in[0].channels()) * sizeof(float);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    uint64_t* y = static_cast<uint64_t*>(out);
    const int64_t c = s[0].channels(), words = words_of(c);
    const float* t = thresholds_.data();
    if (channels_ == 0) {
      float* uniform = static_cast<float*>(ctx.workspace);
      for (int64_t m = 0; m < levels_; ++m)
        for (int64_t i = 0; i < c; ++i) uniform[m * c + i] = static_cast<float>(m) + 0.5f;
      t = uniform;
    }
    const BitplaneFn kernel = ctx.bin->bitplane;
    for_rows(ctx, s[0].rows(), c, [&](size_t r, size_t n) {
      kernel(x + r * c, n, static_cast<size_t>(c), t, static_cast<size_t>(levels_), plane_, y + r * words);
    });
  }

 private:
  int64_t channels_;  // 0: no threshold parameter (any C, thresholds m - 0.5)
  int64_t levels_;    // 2^bits - 1
  unsigned plane_;
  std::vector<float> thresholds_;  // [levels][channels]
};

}  // namespace

const OpSchema bitplane_schema{"bitplane", 1, 1, kBitplaneAttrs, kBitplaneParams};

std::unique_ptr<Node> make_bitplane(const OpArgs& a) {
  const int64_t bits = a.integer("bits"), plane = a.integer("plane");
  if (bits < 1 || bits > 8) a.fail("bits must be in 1..8, got " + std::to_string(bits));
  if (plane < 0 || plane >= bits)
    a.fail("plane must be in 0.." + std::to_string(bits - 1) + ", got " + std::to_string(plane));
  const int64_t levels = (int64_t{1} << bits) - 1;
  const ParamView* t = a.param("threshold");
  int64_t c = 0;
  std::vector<float> th;
  if (t) {
    if (t->shape.size() != 2 || t->shape[0] != levels || t->shape[1] < 1 || t->shape[1] > kMaxDim) {
      a.fail("threshold must be (" + std::to_string(levels) + ", C) for bits " + std::to_string(bits) + ", got " +
             shape_str(t->shape));
    }
    c = t->shape[1];
    th = copy_f32(t);
    for (float v : th)
      if (v != v) a.fail("threshold contains NaN");
    for (int64_t m = 1; m < levels; ++m)
      for (int64_t i = 0; i < c; ++i)
        if (th[static_cast<size_t>(m * c + i)] < th[static_cast<size_t>((m - 1) * c + i)])
          a.fail("threshold must be sorted (non-decreasing) along levels, channel " + std::to_string(i));
  }
  return std::make_unique<BitplaneNode>(a, c, levels, static_cast<unsigned>(plane), std::move(th));
}

}  // namespace xnor::ops

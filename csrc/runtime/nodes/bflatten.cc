// bflatten: packed NHWC bits -> packed (N, H*W*C) bits in NHWC order; a view when C % 64 == 0.
#include "microkernels/bflatten.h"

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

class BflattenNode final : public Node {
 public:
  BflattenNode(const OpArgs& a, int64_t channels) : Node(a.op(), {DType::kBits}, DType::kBits), channels_(channels) {}
  bool aliases_input() const override { return channels_ % 64 == 0; }
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be packed NHWC, got " + in[0].str());
    return Shape::nf(in[0].d[0], in[0].d[1] * in[0].d[2] * in[0].d[3]);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    if (aliases_input()) return;
    const size_t pixels = static_cast<size_t>(s[0].d[1] * s[0].d[2]), c = static_cast<size_t>(s[0].d[3]);
    const size_t in_image = pixels * static_cast<size_t>(words_of(s[0].d[3]));
    const size_t out_image = static_cast<size_t>(words_of(os.d[1]));
    const uint64_t* src = static_cast<const uint64_t*>(in[0]);
    uint64_t* dst = static_cast<uint64_t*>(out);
    parallel_for(ctx.pool, static_cast<size_t>(s[0].d[0]), element_grain_rows(in_image), [&](size_t b, size_t e) {
      for (size_t n = b; n < e; ++n) bflatten_image(src + n * in_image, pixels, c, dst + n * out_image);
    });
  }

 private:
  int64_t channels_;
};

}  // namespace

const OpSchema bflatten_schema{"bflatten", 1, 1, {}, {}};

std::unique_ptr<Node> make_bflatten(const OpArgs& a) { return std::make_unique<BflattenNode>(a, a.in_channels(0)); }

}  // namespace xnor::ops

// blinear: binary dense layer on packed (N, F) bits, with the output transform of binary_output.h.
#include "operators/blinear.h"

#include "runtime/nodes/binary_output.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {{"output", AttrType::kString, true}, {"in_features", AttrType::kInt, true}};

class BlinearNode final : public Node {
 public:
  BlinearNode(const OpArgs& a, int in_f, int out_f, const uint64_t* w, OutputTransform t)
      : Node(a.op(), {DType::kBits}, t.kind == OutputKind::kBits ? DType::kBits : DType::kF32),
        linear_(in_f, out_f, w, std::move(t)) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 2 || in[0].d[1] != linear_.in_features()) {
      fail("input must be packed (N, " + std::to_string(linear_.in_features()) + "), got " + in[0].str());
    }
    return Shape::nf(in[0].d[0], linear_.out_features());
  }
  size_t held_bytes() const override { return linear_.conv().packed_bytes(); }
  const BinaryConv2d* binary_gemm() const override { return &linear_.conv(); }
  size_t workspace_bytes(const Shape* in, size_t, int threads) const override {
    return linear_.workspace_bytes(static_cast<int>(in[0].d[0]), threads);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    linear_.run(static_cast<const uint64_t*>(in[0]), static_cast<int>(s[0].d[0]), out, ctx.pool, ctx.isa,
                ctx.workspace);
  }

 private:
  BinaryLinear linear_;
};

}  // namespace

const OpSchema blinear_schema{"blinear", 1, 1, kAttrs, kBinaryOutputParams};

std::unique_ptr<Node> make_blinear(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 2) a.fail("weight must be packed (O, ceil(F/64)), got " + shape_str(w->shape));
  const int64_t in_f = require_positive(a, a.integer("in_features"), "in_features");
  const int64_t out_f = require_positive(a, w->shape[0], "out_features");
  if (w->shape[1] != words_of(in_f)) {
    a.fail("weight has " + std::to_string(w->shape[1]) + " words per row, in_features " + std::to_string(in_f) +
           " needs " + std::to_string(words_of(in_f)));
  }
  const uint64_t* wd = static_cast<const uint64_t*>(w->data);
  check_pad_bits(a, wd, out_f, w->shape[1], in_f);
  return std::make_unique<BlinearNode>(a, static_cast<int>(in_f), static_cast<int>(out_f), wd,
                                       make_transform(a, out_f));
}

}  // namespace xnor::ops

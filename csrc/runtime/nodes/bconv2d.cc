// bconv2d: binary 2-D convolution of packed NHWC bits (XOR + popcount), with a fused output
// transform to packed bits or floats (binary_output.h).
#include "operators/bconv2d.h"

#include <stdexcept>
#include <tuple>

#include "runtime/nodes/binary_output.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kAttrs[] = {{"stride", AttrType::kInts, true},
                                 {"padding", AttrType::kInts, true},
                                 {"pad_mode", AttrType::kString, true},
                                 {"output", AttrType::kString, true},
                                 {"in_channels", AttrType::kInt, true}};

class BconvNode final : public Node {
 public:
  BconvNode(const OpArgs& a, const BconvConfig& c, const uint64_t* w, OutputTransform t)
      : Node(a.op(), {DType::kBits}, t.kind == OutputKind::kBits ? DType::kBits : DType::kF32),
        conv_(c, w, std::move(t)) {}
  Shape infer(const Shape* in, size_t) const override {
    const BconvConfig& c = conv_.config();
    if (in[0].rank != 4 || in[0].channels() != c.in_channels) {
      fail("input must be packed NHWC with " + std::to_string(c.in_channels) + " channels, got " + in[0].str());
    }
    if (in[0].d[1] + 2 * c.pad_h < c.kernel_h || in[0].d[2] + 2 * c.pad_w < c.kernel_w) {
      fail("input " + in[0].str() + " is smaller than the kernel");
    }
    return Shape::nhwc(in[0].d[0], conv_.out_h(static_cast<int>(in[0].d[1])), conv_.out_w(static_cast<int>(in[0].d[2])),
                       c.out_channels);
  }
  size_t held_bytes() const override { return conv_.packed_bytes(); }
  size_t workspace_bytes(const Shape* in, size_t, int threads) const override {
    return conv_.workspace_bytes(static_cast<int>(in[0].d[0]), static_cast<int>(in[0].d[1]),
                                 static_cast<int>(in[0].d[2]), threads);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    conv_.run(static_cast<const uint64_t*>(in[0]), static_cast<int>(s[0].d[0]), static_cast<int>(s[0].d[1]),
              static_cast<int>(s[0].d[2]), out, ctx.pool, ctx.isa, ctx.workspace);
  }

 private:
  BinaryConv2d conv_;
};

PadMode parse_pad_mode(const OpArgs& a) {
  const std::string m = a.string("pad_mode", "");
  if (m == "zero") return PadMode::kZero;
  if (m == "plus_one") return PadMode::kPlusOne;
  if (m == "minus_one") return PadMode::kMinusOne;
  a.fail("pad_mode must be 'zero', 'plus_one' or 'minus_one', got '" + m + "'");
}

}  // namespace

const OpSchema bconv2d_schema{"bconv2d", 1, 1, kAttrs, kBinaryOutputParams};

std::unique_ptr<Node> make_bconv2d(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 4) a.fail("weight must be packed (O, KH, KW, ceil(I/64)), got " + shape_str(w->shape));
  const int64_t in_c = require_positive(a, a.integer("in_channels"), "in_channels");
  BconvConfig c;
  c.in_channels = static_cast<int>(in_c);
  c.out_channels = static_cast<int>(require_positive(a, w->shape[0], "out_channels"));
  c.kernel_h = static_cast<int>(require_positive(a, std::min(w->shape[1], kMaxKernel + 1), "kernel height"));
  c.kernel_w = static_cast<int>(require_positive(a, std::min(w->shape[2], kMaxKernel + 1), "kernel width"));
  if (w->shape[1] * w->shape[2] > 16384) a.fail("kernel " + shape_str(w->shape) + " is too large");
  if (w->shape[3] != words_of(in_c)) {
    a.fail("weight has " + std::to_string(w->shape[3]) + " words per tap, in_channels " + std::to_string(in_c) +
           " needs " + std::to_string(words_of(in_c)));
  }
  std::tie(c.stride_h, c.stride_w) = a.pair("stride");
  std::tie(c.pad_h, c.pad_w) = a.pair("padding");
  if (c.stride_h < 1 || c.stride_w < 1) a.fail("stride must be positive");
  if (c.pad_h >= c.kernel_h + 1 || c.pad_w >= c.kernel_w + 1) a.fail("padding larger than the kernel");
  c.pad_mode = parse_pad_mode(a);
  const uint64_t* wd = static_cast<const uint64_t*>(w->data);
  check_pad_bits(a, wd, w->count / w->shape[3], w->shape[3], in_c);
  try {
    return std::make_unique<BconvNode>(a, c, wd, make_transform(a, c.out_channels));
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).rfind("op '", 0) == 0) throw;
    a.fail(e.what());
  }
}

}  // namespace xnor::ops

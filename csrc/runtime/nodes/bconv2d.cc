// bconv2d: binary 2-D convolution of packed NHWC bits (XOR + popcount), with a fused output
// transform to packed bits or floats (binary_output.h). An optional second input, a float
// per-pixel scale K of shape (N, OH, OW, 1) (XNOR-Net's beta map), joins the float output:
// y = fma(multiplier[c], fl(s * K[n, oh, ow]), bias[c]).
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
  BconvNode(const OpArgs& a, const BconvConfig& c, const uint64_t* w, OutputTransform t, bool scaled)
      : Node(a.op(), scaled ? std::vector<DType>{DType::kBits, DType::kF32} : std::vector<DType>{DType::kBits},
             t.kind == OutputKind::kBits ? DType::kBits : DType::kF32),
        conv_(c, w, std::move(t)),
        scaled_(scaled) {}
  Shape infer(const Shape* in, size_t) const override {
    const BconvConfig& c = conv_.config();
    if (in[0].rank != 4 || in[0].channels() != c.in_channels) {
      fail("input must be packed NHWC with " + std::to_string(c.in_channels) + " channels, got " + in[0].str());
    }
    if (in[0].d[1] + 2 * c.pad_h < c.kernel_h || in[0].d[2] + 2 * c.pad_w < c.kernel_w) {
      fail("input " + in[0].str() + " is smaller than the kernel");
    }
    const Shape out = Shape::nhwc(in[0].d[0], conv_.out_h(static_cast<int>(in[0].d[1])),
                                  conv_.out_w(static_cast<int>(in[0].d[2])), c.out_channels);
    if (scaled_) {
      const Shape& k = in[1];
      if (k.rank != 4 || k.d[0] != out.d[0] || k.d[1] != out.d[1] || k.d[2] != out.d[2] || k.d[3] != 1) {
        fail("pixel scale must be (N, OH, OW, 1) = (" + std::to_string(out.d[0]) + ", " + std::to_string(out.d[1]) +
             ", " + std::to_string(out.d[2]) + ", 1), got " + k.str());
      }
    }
    return out;
  }
  size_t held_bytes() const override { return conv_.packed_bytes(); }
  const BinaryConv2d* binary_gemm() const override { return &conv_; }
  bool fuses_rows() const override { return out_type() == DType::kF32; }
  size_t workspace_bytes(const Shape* in, size_t, int threads) const override {
    return conv_.workspace_bytes(static_cast<int>(in[0].d[0]), static_cast<int>(in[0].d[1]),
                                 static_cast<int>(in[0].d[2]), threads);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const OutputRowsDone chain{run_chain_rows, ctx.chain};
    conv_.run(static_cast<const uint64_t*>(in[0]), static_cast<int>(s[0].d[0]), static_cast<int>(s[0].d[1]),
              static_cast<int>(s[0].d[2]), out, ctx.pool, ctx.isa, ctx.workspace,
              scaled_ ? static_cast<const float*>(in[1]) : nullptr, ctx.chain != nullptr ? &chain : nullptr);
  }

 private:
  BinaryConv2d conv_;
  bool scaled_;  // a second input: the per-pixel scale K
};

PadMode parse_pad_mode(const OpArgs& a) {
  const std::string m = a.string("pad_mode", "");
  if (m == "zero") return PadMode::kZero;
  if (m == "plus_one") return PadMode::kPlusOne;
  if (m == "minus_one") return PadMode::kMinusOne;
  a.fail("pad_mode must be 'zero', 'plus_one' or 'minus_one', got '" + m + "'");
}

}  // namespace

const OpSchema bconv2d_schema{"bconv2d", 1, 2, kAttrs, kBinaryOutputParams};

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
  const bool scaled = a.op().inputs.size() == 2;
  try {
    OutputTransform t = make_transform(a, c.out_channels);
    if (scaled && t.kind != OutputKind::kFloat) a.fail("a pixel scale input (second input) needs output 'float'");
    return std::make_unique<BconvNode>(a, c, wd, std::move(t), scaled);
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).rfind("op '", 0) == 0) throw;
    a.fail(e.what());
  }
}

}  // namespace xnor::ops

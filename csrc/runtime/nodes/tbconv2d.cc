// tbconv2d / tblinear: ternary-weight (TTQ / TWN) layers on packed binary activations: two AND +
// popcount sums per output (microkernels/tbconv.h), float output, or (attribute output = "bits") the
// sign of the output fused in the same pass: an integer threshold on P - N (params threshold / flip),
// or the float epilogue then an affine and a compare (post_scale / post_shift / sign_threshold,
// sign_zero). The IR stores the weights as bwconv2d does (sign bits, non-zero mask); the node splits
// them into + and - planes and counts them.
#include <string>
#include <vector>

#include "microkernels/dispatch.h"
#include "microkernels/tbconv.h"
#include "runtime/nodes/binary_output.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kConvAttrs[] = {{"stride", AttrType::kInts, true},
                                     {"padding", AttrType::kInts, true},
                                     {"in_channels", AttrType::kInt, true},
                                     {"output", AttrType::kString, false},
                                     {"sign_zero", AttrType::kString, false}};
constexpr AttrSchema kLinearAttrs[] = {{"in_features", AttrType::kInt, true},
                                       {"output", AttrType::kString, false},
                                       {"sign_zero", AttrType::kString, false}};
constexpr ParamSchema kParams[] = {
    {"weight", ParamDType::kUint64, true},       {"mask", ParamDType::kUint64, true},
    {"scale_pos", ParamDType::kFloat32, true},   {"scale_neg", ParamDType::kFloat32, true},
    {"bias", ParamDType::kFloat32, false},       {"threshold", ParamDType::kInt32, false},
    {"flip", ParamDType::kUint8, false},         {"post_scale", ParamDType::kFloat32, false},
    {"post_shift", ParamDType::kFloat32, false}, {"sign_threshold", ParamDType::kFloat32, false}};

// The output mode from attribute "output" and its parameters, each (out_channels,).
struct SignOutput {
  TbconvOutput kind = TbconvOutput::kFloat;
  std::vector<int32_t> threshold;
  std::vector<uint8_t> flip;
  std::vector<float> post_scale, post_shift, sign_threshold;
  bool zero_is_minus = false;
};

SignOutput parse_output(const OpArgs& a, int64_t oc) {
  SignOutput s;
  const std::string output = a.string("output", "float");
  const std::vector<int64_t> shape{oc};
  const bool int_params = a.param("threshold") || a.param("flip");
  const bool float_params = a.param("post_scale") || a.param("post_shift") || a.param("sign_threshold");
  if (output == "float") {
    if (int_params || float_params || a.has("sign_zero")) a.fail("output 'float' takes no sign parameters");
    return s;
  }
  if (output != "bits") a.fail("output must be 'float' or 'bits', got '" + output + "'");
  if (int_params == float_params) {
    a.fail("output 'bits' takes threshold (and flip), or post_scale, post_shift and sign_threshold");
  }
  if (int_params) {
    if (a.has("sign_zero")) a.fail("sign_zero goes with sign_threshold, not the integer threshold");
    s.kind = TbconvOutput::kIntSign;
    const ParamView* th = a.param("threshold", shape);
    if (!th) a.fail("missing parameter 'threshold'");
    const int32_t* td = static_cast<const int32_t*>(th->data);
    s.threshold.assign(td, td + oc);
    s.flip.assign(static_cast<size_t>(oc), 0);
    if (const ParamView* fl = a.param("flip", shape)) {
      const uint8_t* fd = static_cast<const uint8_t*>(fl->data);
      for (int64_t i = 0; i < oc; ++i) {
        if (fd[i] > 1) a.fail("flip values must be 0 or 1");
      }
      s.flip.assign(fd, fd + oc);
    }
    return s;
  }
  s.kind = TbconvOutput::kFloatSign;
  const ParamView* ps = a.param("post_scale", shape);
  const ParamView* sh = a.param("post_shift", shape);
  const ParamView* st = a.param("sign_threshold", shape);
  if (!ps || !sh || !st) a.fail("output 'bits' with a float epilogue needs post_scale, post_shift and sign_threshold");
  s.post_scale = copy_f32(ps);
  s.post_shift = copy_f32(sh);
  s.sign_threshold = copy_f32(st);
  for (float v : s.sign_threshold) {
    if (v != v) a.fail("sign_threshold contains NaN");
  }
  const std::string sz = a.string("sign_zero", "+1");
  if (sz != "+1" && sz != "-1") a.fail("sign_zero must be '+1' or '-1', got '" + sz + "'");
  s.zero_is_minus = sz == "-1";
  return s;
}

class TbconvNode final : public Node {
 public:
  TbconvNode(const OpArgs& a, const TbconvGeometry& g, int64_t in_c, bool linear, const uint64_t* w, const uint64_t* m)
      : Node(a.op(), {DType::kBits}, a.string("output", "float") == "bits" ? DType::kBits : DType::kF32),
        sign_(parse_output(a, g.out_c)),
        g_(g),
        in_c_(in_c),
        linear_(linear),
        plus_(static_cast<size_t>(g.out_c * g.kernel_h * g.kernel_w * g.words)),
        minus_(plus_.size()),
        count_plus_(static_cast<size_t>(g.out_c * g.kernel_h * g.kernel_w)),
        count_minus_(count_plus_.size()),
        scale_pos_(copy_f32(a.param("scale_pos", {g.out_c}))),
        scale_neg_(copy_f32(a.param("scale_neg", {g.out_c}))),
        bias_(copy_f32(a.param("bias", {g.out_c}))) {
    if (bias_.empty()) bias_.assign(static_cast<size_t>(g.out_c), 0.0f);
    epi_.kind = sign_.kind;
    epi_.threshold = sign_.threshold.data();
    epi_.flip = sign_.flip.data();
    epi_.post_scale = sign_.post_scale.data();
    epi_.post_shift = sign_.post_shift.data();
    epi_.sign_threshold = sign_.sign_threshold.data();
    epi_.zero_is_minus = sign_.zero_is_minus;
    // IR rows (o, tap, word) -> kernel layout (tap, word, o) and per-(tap, o) popcounts.
    const int64_t taps = g.kernel_h * g.kernel_w, oc = g.out_c;
    for (int64_t o = 0; o < oc; ++o) {
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t k = 0; k < g.words; ++k) {
          const int64_t from = (o * taps + t) * g.words + k;
          const size_t to = static_cast<size_t>((t * g.words + k) * oc + o);
          plus_[to] = m[from] & ~w[from];
          minus_[to] = m[from] & w[from];
          count_plus_[static_cast<size_t>(t * oc + o)] += __builtin_popcountll(plus_[to]);
          count_minus_[static_cast<size_t>(t * oc + o)] += __builtin_popcountll(minus_[to]);
        }
      }
    }
  }
  Shape infer(const Shape* in, size_t) const override {
    if (linear_) {
      if (in[0].rank != 2 || in[0].d[1] != in_c_) {
        fail("input must be packed (N, " + std::to_string(in_c_) + "), got " + in[0].str());
      }
      return Shape::nf(in[0].d[0], g_.out_c);
    }
    if (in[0].rank != 4 || in[0].channels() != in_c_) {
      fail("input must be packed NHWC with " + std::to_string(in_c_) + " channels, got " + in[0].str());
    }
    const int64_t oh = out_size(in[0].d[1], g_.kernel_h, g_.stride_h, g_.pad_h);
    const int64_t ow = out_size(in[0].d[2], g_.kernel_w, g_.stride_w, g_.pad_w);
    if (oh < 1 || ow < 1) fail("input " + in[0].str() + " is smaller than the kernel");
    return Shape::nhwc(in[0].d[0], oh, ow, g_.out_c);
  }
  size_t held_bytes() const override {
    return (plus_.size() + minus_.size()) * sizeof(uint64_t) + 2 * count_plus_.size() * sizeof(int32_t) +
           3 * bias_.size() * sizeof(float) + sign_.threshold.size() * sizeof(int32_t) + sign_.flip.size() +
           (sign_.post_scale.size() + sign_.post_shift.size() + sign_.sign_threshold.size()) * sizeof(float);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    TbconvGeometry g = g_;
    int64_t rows = s[0].d[0], out_h = 1;
    if (!linear_) {
      g.in_h = s[0].d[1];
      g.in_w = s[0].d[2];
      out_h = os.d[1];
      g.out_w = os.d[2];
      rows *= out_h;
    }
    const bool bits = sign_.kind != TbconvOutput::kFloat;
    const int64_t in_image = g.in_h * g.in_w * g.words;
    const int64_t out_row = g.out_w * (bits ? words_of(g.out_c) : g.out_c);
    const uint64_t* x = static_cast<const uint64_t*>(in[0]);
    const TbconvRowFn fn = ctx.bin->tbconv_row;
    parallel_for(ctx.pool, static_cast<size_t>(rows), 1, [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        const int64_t img = static_cast<int64_t>(r) / out_h, oy = static_cast<int64_t>(r) % out_h;
        fn(x + img * in_image, plus_.data(), minus_.data(), count_plus_.data(), count_minus_.data(), scale_pos_.data(),
           scale_neg_.data(), bias_.data(), epi_, g, oy, row_at(out, bits, static_cast<int64_t>(r) * out_row));
      }
    });
  }

 private:
  static void* row_at(void* out, bool bits, int64_t offset) {
    return bits ? static_cast<void*>(static_cast<uint64_t*>(out) + offset)
                : static_cast<void*>(static_cast<float*>(out) + offset);
  }
  static int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t pad) {
    return in + 2 * pad < k ? 0 : (in + 2 * pad - k) / stride + 1;
  }
  SignOutput sign_;
  TbconvEpilogue epi_;  // points into sign_ (never resized)
  TbconvGeometry g_;
  int64_t in_c_;
  bool linear_;
  std::vector<uint64_t> plus_, minus_;
  std::vector<int32_t> count_plus_, count_minus_;
  std::vector<float> scale_pos_, scale_neg_, bias_;
};

std::unique_ptr<Node> make(const OpArgs& a, TbconvGeometry g, int64_t in_c, bool linear, const ParamView* w) {
  // The sums are converted to float32 exactly: |P|, |N| <= K < 2^24.
  if (g.kernel_h * g.kernel_w * in_c >= (int64_t{1} << 24)) a.fail("kernel * in_channels must be below 2^24");
  g.words = words_of(in_c);
  const int64_t rows = w->count / g.words;
  const uint64_t* wd = static_cast<const uint64_t*>(w->data);
  const ParamView* m = a.param("mask", w->shape);
  const uint64_t* md = static_cast<const uint64_t*>(m->data);
  check_pad_bits(a, wd, rows, g.words, in_c);
  check_pad_bits(a, md, rows, g.words, in_c);
  for (int64_t i = 0; i < rows * g.words; ++i) {
    if (wd[i] & ~md[i]) a.fail("weight has sign bits where the mask is 0 (word " + std::to_string(i) + ")");
  }
  return std::make_unique<TbconvNode>(a, g, in_c, linear, wd, md);
}

}  // namespace

const OpSchema tbconv2d_schema{"tbconv2d", 1, 1, kConvAttrs, kParams};
const OpSchema tblinear_schema{"tblinear", 1, 1, kLinearAttrs, kParams};

std::unique_ptr<Node> make_tbconv2d(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 4) a.fail("weight must be packed (O, KH, KW, ceil(I/64)), got " + shape_str(w->shape));
  TbconvGeometry g{};
  const int64_t in_c = require_positive(a, a.integer("in_channels"), "in_channels");
  g.out_c = require_positive(a, w->shape[0], "out_channels");
  g.kernel_h = require_positive(a, std::min(w->shape[1], kMaxKernel + 1), "kernel height");
  g.kernel_w = require_positive(a, std::min(w->shape[2], kMaxKernel + 1), "kernel width");
  if (w->shape[1] * w->shape[2] > 16384) a.fail("kernel " + shape_str(w->shape) + " is too large");
  if (w->shape[3] != words_of(in_c)) {
    a.fail("weight has " + std::to_string(w->shape[3]) + " words per tap, in_channels " + std::to_string(in_c) +
           " needs " + std::to_string(words_of(in_c)));
  }
  const auto [sh, sw] = a.pair("stride");
  const auto [ph, pw] = a.pair("padding");
  if (sh < 1 || sw < 1) a.fail("stride must be positive");
  if (ph >= g.kernel_h + 1 || pw >= g.kernel_w + 1) a.fail("padding larger than the kernel");
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw;
  return make(a, g, in_c, false, w);
}

std::unique_ptr<Node> make_tblinear(const OpArgs& a) {
  const ParamView* w = a.param("weight");
  if (w->shape.size() != 2) a.fail("weight must be packed (O, ceil(F/64)), got " + shape_str(w->shape));
  TbconvGeometry g{};
  const int64_t in_f = require_positive(a, a.integer("in_features"), "in_features");
  g.out_c = require_positive(a, w->shape[0], "out_features");
  if (w->shape[1] != words_of(in_f)) {
    a.fail("weight has " + std::to_string(w->shape[1]) + " words per row, in_features " + std::to_string(in_f) +
           " needs " + std::to_string(words_of(in_f)));
  }
  g.in_h = g.in_w = g.kernel_h = g.kernel_w = g.stride_h = g.stride_w = g.out_w = 1;
  return make(a, g, in_f, true, w);
}

}  // namespace xnor::ops

#include "runtime/nodes.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "kernels/bconv2d.h"
#include "kernels/bflatten.h"
#include "kernels/blinear.h"
#include "kernels/bmaxpool.h"
#include "kernels/conv2d.h"
#include "kernels/fpool.h"
#include "kernels/linear.h"
#include "kernels/log_softmax.h"

namespace xnor {

void Node::fail(const std::string& what) const {
  throw std::invalid_argument("op '" + name_ + "' (" + kind_ + "): " + what);
}

namespace {

constexpr size_t kMaxConcatInputs = 64;
constexpr int64_t kMaxKernel = 1024;    // kernel, stride and padding sizes

[[noreturn]] void op_fail(const OpDesc& op, const std::string& what) {
  throw std::invalid_argument("op '" + op.name + "' (" + op.kind + "): " + what);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// Attribute and parameter access with checks; every error names the op.
class Spec {
 public:
  Spec(const OpDesc& op, const std::map<std::string, ParamView>& params) : op_(op), params_(params) {}

  const AttrValue* attr(const std::string& key) const {
    auto it = op_.attrs.find(key);
    return it == op_.attrs.end() ? nullptr : &it->second;
  }
  std::pair<int, int> pair(const std::string& key) const {
    const AttrValue* a = attr(key);
    if (!a) op_fail(op_, "missing attribute '" + key + "'");
    if (a->type != AttrValue::Type::kInts || a->ints.size() != 2) op_fail(op_, "'" + key + "' must be a list of two integers");
    for (int64_t v : a->ints)
      if (v < 0 || v > kMaxKernel) op_fail(op_, "'" + key + "' value " + std::to_string(v) + " is out of range");
    return {static_cast<int>(a->ints[0]), static_cast<int>(a->ints[1])};
  }
  int64_t integer(const std::string& key) const {
    const AttrValue* a = attr(key);
    if (!a) op_fail(op_, "missing attribute '" + key + "'");
    if (a->type != AttrValue::Type::kInt) op_fail(op_, "'" + key + "' must be an integer");
    return a->i;
  }
  double number(const std::string& key) const {
    const AttrValue* a = attr(key);
    if (!a) op_fail(op_, "missing attribute '" + key + "'");
    if (a->type == AttrValue::Type::kInt) return static_cast<double>(a->i);
    if (a->type != AttrValue::Type::kFloat) op_fail(op_, "'" + key + "' must be a number");
    return a->f;
  }
  bool boolean(const std::string& key, bool fallback) const {
    const AttrValue* a = attr(key);
    if (!a) return fallback;
    if (a->type != AttrValue::Type::kBool) op_fail(op_, "'" + key + "' must be a boolean");
    return a->b;
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    const AttrValue* a = attr(key);
    if (!a) {
      if (fallback.empty()) op_fail(op_, "missing attribute '" + key + "'");
      return fallback;
    }
    if (a->type != AttrValue::Type::kString) op_fail(op_, "'" + key + "' must be a string");
    return a->s;
  }
  // The parameter, checked for dtype and (when given) exact shape; null when optional and absent.
  const ParamView* param(const std::string& key, const char* dtype, bool required,
                         const std::vector<int64_t>& shape = {}) const {
    auto it = params_.find(key);
    if (it == params_.end()) {
      if (required) op_fail(op_, "missing parameter '" + key + "'");
      return nullptr;
    }
    const ParamView& p = it->second;
    if (p.dtype != dtype) op_fail(op_, "parameter '" + key + "' must be " + dtype + ", got " + p.dtype);
    if (!shape.empty() && p.shape != shape) {
      op_fail(op_, "parameter '" + key + "' must have shape " + shape_str(shape) + ", got " + shape_str(p.shape));
    }
    return &p;
  }
  const OpDesc& op() const { return op_; }

 private:
  const OpDesc& op_;
  const std::map<std::string, ParamView>& params_;
};

const float* f32(const ParamView* p) { return p ? static_cast<const float*>(p->data) : nullptr; }

size_t grain_rows(int64_t row_elements) {
  return element_grain_rows(static_cast<size_t>(std::max<int64_t>(1, row_elements)));
}

// Splits `rows` rows over the pool and calls fn(first_row, row_count).
template <typename Fn>
void for_rows(const RunContext& ctx, int64_t rows, int64_t row_elements, Fn&& fn) {
  parallel_for(ctx.pool, static_cast<size_t>(rows), grain_rows(row_elements),
               [&](size_t b, size_t e) { fn(b, e - b); });
}

// ---------------------------------------------------------------- float conv / linear

class Conv2dNode final : public Node {
 public:
  Conv2dNode(const Spec& s, const FloatConvConfig& c, const float* w, const float* b)
      : Node(s.op(), {DType::kF32}, DType::kF32), conv_(c, w, b) {}
  Shape infer(const Shape* in, size_t) const override {
    const FloatConvConfig& c = conv_.config();
    if (in[0].rank != 4 || in[0].channels() != c.in_channels) {
      fail("input must be NHWC with " + std::to_string(c.in_channels) + " channels, got " + in[0].str());
    }
    const int64_t oh = conv_.out_h(static_cast<int>(in[0].d[1])), ow = conv_.out_w(static_cast<int>(in[0].d[2]));
    if (oh < 1 || ow < 1) fail("input " + in[0].str() + " is smaller than the kernel");
    return Shape::nhwc(in[0].d[0], oh, ow, c.out_channels);
  }
  size_t workspace_bytes(const Shape*, size_t, int threads) const override { return conv_.workspace_bytes(threads); }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    conv_.run(static_cast<const float*>(in[0]), static_cast<int>(s[0].d[0]), static_cast<int>(s[0].d[1]),
              static_cast<int>(s[0].d[2]), static_cast<float*>(out), ctx.pool, ctx.isa, ctx.workspace);
  }

 private:
  FloatConv2d conv_;
};

class LinearNode final : public Node {
 public:
  LinearNode(const Spec& s, size_t out_f, size_t in_f, const float* w, const float* b, bool relu)
      : Node(s.op(), {DType::kF32}, DType::kF32), linear_(out_f, in_f, w, b, relu) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 2 || in[0].d[1] != static_cast<int64_t>(linear_.in_features())) {
      fail("input must be (N, " + std::to_string(linear_.in_features()) + "), got " + in[0].str());
    }
    return Shape::nf(in[0].d[0], static_cast<int64_t>(linear_.out_features()));
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    linear_.run(static_cast<const float*>(in[0]), static_cast<size_t>(s[0].d[0]), static_cast<float*>(out), ctx.pool,
                ctx.isa);
  }

 private:
  FloatLinear linear_;
};

// ---------------------------------------------------------------- element-wise

// Base for ops that keep the shape and, when channels_ > 0, need that many channels.
class SameShapeNode : public Node {
 public:
  SameShapeNode(const Spec& s, DType in, DType out, int64_t channels)
      : Node(s.op(), {in}, out), channels_(channels) {}
  Shape infer(const Shape* in, size_t) const override {
    if (channels_ > 0 && in[0].channels() != channels_) {
      fail("input must have " + std::to_string(channels_) + " channels (last axis), got " + in[0].str());
    }
    return in[0];
  }

 protected:
  int64_t channels_;
};

class AffineNode final : public SameShapeNode {
 public:
  AffineNode(const Spec& s, std::vector<float> scale, std::vector<float> shift)
      : SameShapeNode(s, DType::kF32, DType::kF32, static_cast<int64_t>(scale.size())),
        scale_(std::move(scale)), shift_(std::move(shift)) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t c = channels_;
    for_rows(ctx, s[0].rows(), c, [&](size_t r, size_t n) {
      ctx.ew->affine(x + r * c, n, c, scale_.data(), shift_.data(), y + r * c);
    });
  }

 private:
  std::vector<float> scale_, shift_;
};

class PreluNode final : public SameShapeNode {
 public:
  PreluNode(const Spec& s, int64_t channels, std::vector<float> slope, std::vector<float> pre, std::vector<float> post)
      : SameShapeNode(s, DType::kF32, DType::kF32, channels),
        slope_(std::move(slope)), pre_(std::move(pre)), post_(std::move(post)) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t c = s[0].channels();
    const size_t stride = slope_.size() == 1 ? 0 : 1;
    for_rows(ctx, s[0].rows(), c, [&](size_t r, size_t n) {
      ctx.ew->prelu(x + r * c, n, c, slope_.data(), stride, pre_.empty() ? nullptr : pre_.data(),
                    post_.empty() ? nullptr : post_.data(), y + r * c);
    });
  }

 private:
  std::vector<float> slope_, pre_, post_;
};

class UnaryNode final : public SameShapeNode {
 public:
  enum class Fn { kRelu, kSigmoid, kHardtanh };
  UnaryNode(const Spec& s, Fn fn, float lo = 0, float hi = 0)
      : SameShapeNode(s, DType::kF32, DType::kF32, 0), fn_(fn), lo_(lo), hi_(hi) {}
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain, [&](size_t b, size_t e) {
      switch (fn_) {
        case Fn::kRelu: ctx.ew->relu(x + b, e - b, y + b); break;
        case Fn::kSigmoid: ctx.ew->sigmoid(x + b, e - b, y + b); break;
        case Fn::kHardtanh: ctx.ew->hardtanh(x + b, e - b, lo_, hi_, y + b); break;
      }
    });
  }

 private:
  Fn fn_;
  float lo_, hi_;
};

class AddMulNode final : public Node {
 public:
  AddMulNode(const Spec& s, bool mul) : Node(s.op(), {DType::kF32}, DType::kF32), mul_(mul) {}
  Shape infer(const Shape* in, size_t count) const override {
    if (count != 2) fail("needs exactly 2 inputs");
    if (in[0] == in[1]) return in[0];
    if (mul_ && in[0].rank == 4 && in[1] == Shape::nf(in[0].d[0], in[0].channels())) return in[0];
    fail(std::string("input shapes ") + in[0].str() + " and " + in[1].str() + " do not match" +
         (mul_ ? " (b must have a's shape or be (N, C))" : ""));
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    const float* a = static_cast<const float*>(in[0]);
    const float* b = static_cast<const float*>(in[1]);
    float* y = static_cast<float*>(out);
    if (s[0] == s[1]) {
      const BinaryOpFn fn = mul_ ? ctx.ew->mul : ctx.ew->add;
      parallel_for(ctx.pool, static_cast<size_t>(s[0].elements()), kElementGrain,
                   [&](size_t i, size_t e) { fn(a + i, b + i, e - i, y + i); });
      return;
    }
    const int64_t c = s[0].channels(), pixels = s[0].d[1] * s[0].d[2];
    for_rows(ctx, s[0].rows(), c, [&](size_t r, size_t n) {
      while (n > 0) {  // rows of one image share b's row
        const size_t img = r / pixels, take = std::min<size_t>(n, (img + 1) * pixels - r);
        ctx.ew->mul_channel(a + r * c, take, c, b + img * c, y + r * c);
        r += take;
        n -= take;
      }
    });
  }

 private:
  bool mul_;
};

// softmax or log_softmax over the features of each row.
class SoftmaxNode final : public Node {
 public:
  SoftmaxNode(const Spec& s, bool log) : Node(s.op(), {DType::kF32}, DType::kF32), log_(log) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 2) fail("input must be (N, F), got " + in[0].str());
    return in[0];
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t f = s[0].channels();
    for_rows(ctx, s[0].rows(), f, [&](size_t r, size_t n) {
      if (log_) {
        log_softmax_rows(x + r * f, n, f, y + r * f);
      } else {
        ctx.ew->softmax(x + r * f, n, f, y + r * f);
      }
    });
  }

 private:
  bool log_;
};

// ---------------------------------------------------------------- layout

class FlattenNode final : public Node {
 public:
  explicit FlattenNode(const Spec& s) : Node(s.op(), {DType::kF32}, DType::kF32) {}
  bool aliases_input() const override { return true; }
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be NHWC, got " + in[0].str());
    return Shape::nf(in[0].d[0], in[0].d[1] * in[0].d[2] * in[0].d[3]);
  }
  void run(const RunContext&, const void* const*, const Shape*, size_t, void*, const Shape&) const override {}
};

// Packed NHWC bits -> packed (N, H*W*C) bits in NHWC order; a view when C % 64 == 0.
class BflattenNode final : public Node {
 public:
  BflattenNode(const Spec& s, int64_t channels) : Node(s.op(), {DType::kBits}, DType::kBits), channels_(channels) {}
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

class GlobalAvgPoolNode final : public Node {
 public:
  explicit GlobalAvgPoolNode(const Spec& s) : Node(s.op(), {DType::kF32}, DType::kF32) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 4) fail("input must be NHWC, got " + in[0].str());
    return Shape::nf(in[0].d[0], in[0].d[3]);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    float_global_avgpool(static_cast<const float*>(in[0]), static_cast<size_t>(s[0].d[0]),
                         static_cast<size_t>(s[0].d[1] * s[0].d[2]), static_cast<size_t>(s[0].d[3]),
                         static_cast<float*>(out), ctx.pool, ctx.isa);
  }
};

// Float or bit concatenation along the last axis.
class ConcatNode final : public Node {
 public:
  ConcatNode(const Spec& s, DType type) : Node(s.op(), {type}, type) {}
  Shape infer(const Shape* in, size_t count) const override {
    if (count < 1 || count > kMaxConcatInputs) fail("needs 1 to " + std::to_string(kMaxConcatInputs) + " inputs");
    Shape out = in[0];
    for (size_t k = 1; k < count; ++k) {
      bool ok = in[k].rank == in[0].rank;
      for (int i = 0; ok && i + 1 < in[0].rank; ++i) ok = in[k].d[i] == in[0].d[i];
      if (!ok) fail("inputs " + in[0].str() + " and " + in[k].str() + " differ outside the channel axis");
      out.d[out.rank - 1] += in[k].channels();
    }
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out,
           const Shape& os) const override {
    std::array<size_t, kMaxConcatInputs> channels{};
    for (size_t k = 0; k < count; ++k) channels[k] = static_cast<size_t>(s[k].channels());
    const size_t oc = static_cast<size_t>(os.channels());
    if (out_type() == DType::kF32) {
      std::array<const float*, kMaxConcatInputs> src{};
      for (size_t k = 0; k < count; ++k) src[k] = static_cast<const float*>(in[k]);
      parallel_for(ctx.pool, static_cast<size_t>(os.rows()), grain_rows(os.channels()), [&](size_t b, size_t e) {
        ctx.ew->concat(src.data(), channels.data(), count, b, e, oc, static_cast<float*>(out));
      });
    } else {
      std::array<const uint64_t*, kMaxConcatInputs> src{};
      for (size_t k = 0; k < count; ++k) src[k] = static_cast<const uint64_t*>(in[k]);
      parallel_for(ctx.pool, static_cast<size_t>(os.rows()), grain_rows(words_of(os.channels())),
                   [&](size_t b, size_t e) {
                     ctx.ew->bconcat(src.data(), channels.data(), count, b, e, oc, static_cast<uint64_t*>(out));
                   });
    }
  }
};

// ---------------------------------------------------------------- pooling

class PoolNode final : public Node {
 public:
  enum class Kind { kMax, kAvg, kBinaryMax };
  PoolNode(const Spec& s, Kind kind, std::pair<int, int> k, std::pair<int, int> st, std::pair<int, int> p, bool cip)
      : Node(s.op(), {kind == Kind::kBinaryMax ? DType::kBits : DType::kF32},
             kind == Kind::kBinaryMax ? DType::kBits : DType::kF32),
        kind_(kind), k_(k), st_(st), p_(p), count_include_pad_(cip) {}
  FloatPoolGeometry geometry(const Shape& in) const {
    if (in.rank != 4) fail("input must be NHWC, got " + in.str());
    FloatPoolGeometry g{static_cast<int>(in.d[1]), static_cast<int>(in.d[2]), static_cast<int>(in.d[3]),
                        k_.first, k_.second, st_.first, st_.second, p_.first, p_.second, 0, 0, count_include_pad_};
    try {
      float_pool_geometry(g, kind().c_str());
    } catch (const std::invalid_argument& e) {
      fail(e.what());
    }
    return g;
  }
  Shape infer(const Shape* in, size_t) const override {
    const FloatPoolGeometry g = geometry(in[0]);
    return Shape::nhwc(in[0].d[0], g.out_h, g.out_w, in[0].d[3]);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    const FloatPoolGeometry g = geometry(s[0]);
    const int batch = static_cast<int>(s[0].d[0]);
    if (kind_ == Kind::kMax) {
      float_maxpool2d(static_cast<const float*>(in[0]), batch, g, static_cast<float*>(out), ctx.pool, ctx.isa);
    } else if (kind_ == Kind::kAvg) {
      float_avgpool2d(static_cast<const float*>(in[0]), batch, g, static_cast<float*>(out), ctx.pool, ctx.isa);
    } else {
      const PoolGeometry bg{g.in_h, g.in_w, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w,
                            g.out_h, g.out_w};
      const int words = static_cast<int>(words_of(s[0].d[3]));
      const int64_t in_image = int64_t{g.in_h} * g.in_w * words, out_image = int64_t{g.out_h} * g.out_w * words;
      const uint64_t* src = static_cast<const uint64_t*>(in[0]);
      uint64_t* dst = static_cast<uint64_t*>(out);
      const BinaryMaxPoolFn fn = ctx.bin->binary_maxpool;
      parallel_for(ctx.pool, static_cast<size_t>(batch) * g.out_h, 1, [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) {
          const int64_t img = static_cast<int64_t>(r / g.out_h);
          const int row = static_cast<int>(r % g.out_h);
          fn(src + img * in_image, words, bg, row, row + 1, dst + img * out_image);
        }
      });
    }
  }

 private:
  Kind kind_;
  std::pair<int, int> k_, st_, p_;
  bool count_include_pad_;
};

// ---------------------------------------------------------------- binary

class SignNode final : public Node {
 public:
  SignNode(const Spec& s, int64_t channels, int64_t groups, std::vector<float> thresholds, bool zero_is_minus)
      : Node(s.op(), {DType::kF32}, DType::kBits), channels_(channels), groups_(groups),
        thresholds_(std::move(thresholds)), zero_is_minus_(zero_is_minus) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].channels() != channels_) {
      fail("input must have " + std::to_string(channels_) + " channels (last axis), got " + in[0].str());
    }
    Shape out = in[0];
    out.d[out.rank - 1] = channels_ * groups_;
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
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
};

class UnpackNode final : public Node {
 public:
  explicit UnpackNode(const Spec& s) : Node(s.op(), {DType::kBits}, DType::kF32) {}
  Shape infer(const Shape* in, size_t) const override { return in[0]; }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    const uint64_t* x = static_cast<const uint64_t*>(in[0]);
    float* y = static_cast<float*>(out);
    const int64_t c = s[0].channels(), words = words_of(c);
    for_rows(ctx, s[0].rows(), c, [&](size_t r, size_t n) { ctx.ew->unpack(x + r * words, n, c, y + r * c); });
  }
};

class BconvNode final : public Node {
 public:
  BconvNode(const Spec& s, const BconvConfig& c, const uint64_t* w, OutputTransform t)
      : Node(s.op(), {DType::kBits}, t.kind == OutputKind::kBits ? DType::kBits : DType::kF32),
        conv_(c, w, std::move(t)) {}
  Shape infer(const Shape* in, size_t) const override {
    const BconvConfig& c = conv_.config();
    if (in[0].rank != 4 || in[0].channels() != c.in_channels) {
      fail("input must be packed NHWC with " + std::to_string(c.in_channels) + " channels, got " + in[0].str());
    }
    if (in[0].d[1] + 2 * c.pad_h < c.kernel_h || in[0].d[2] + 2 * c.pad_w < c.kernel_w) {
      fail("input " + in[0].str() + " is smaller than the kernel");
    }
    return Shape::nhwc(in[0].d[0], conv_.out_h(static_cast<int>(in[0].d[1])),
                       conv_.out_w(static_cast<int>(in[0].d[2])), c.out_channels);
  }
  size_t workspace_bytes(const Shape* in, size_t, int threads) const override {
    return conv_.workspace_bytes(static_cast<int>(in[0].d[0]), static_cast<int>(in[0].d[1]),
                                 static_cast<int>(in[0].d[2]), threads);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    conv_.run(static_cast<const uint64_t*>(in[0]), static_cast<int>(s[0].d[0]), static_cast<int>(s[0].d[1]),
              static_cast<int>(s[0].d[2]), out, ctx.pool, ctx.isa, ctx.workspace);
  }

 private:
  BinaryConv2d conv_;
};

class BlinearNode final : public Node {
 public:
  BlinearNode(const Spec& s, int in_f, int out_f, const uint64_t* w, OutputTransform t)
      : Node(s.op(), {DType::kBits}, t.kind == OutputKind::kBits ? DType::kBits : DType::kF32),
        linear_(in_f, out_f, w, std::move(t)) {}
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != 2 || in[0].d[1] != linear_.in_features()) {
      fail("input must be packed (N, " + std::to_string(linear_.in_features()) + "), got " + in[0].str());
    }
    return Shape::nf(in[0].d[0], linear_.out_features());
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out, const Shape&) const override {
    linear_.run(static_cast<const uint64_t*>(in[0]), static_cast<int>(s[0].d[0]), out, ctx.pool, ctx.isa);
  }

 private:
  BinaryLinear linear_;
};

// ---------------------------------------------------------------- factory helpers

std::vector<float> copy_f32(const ParamView* p) {
  const float* d = f32(p);
  return p ? std::vector<float>(d, d + p->count) : std::vector<float>();
}

int64_t require_positive(const OpDesc& op, int64_t v, const std::string& what) {
  if (v < 1 || v > kMaxDim) op_fail(op, what + " " + std::to_string(v) + " is out of range");
  return v;
}

// Checks that bits past `bits` in each row of `words`-word rows are zero.
void check_pad_bits(const OpDesc& op, const uint64_t* w, int64_t rows, int64_t words, int64_t bits) {
  if (bits % 64 == 0) return;
  const uint64_t mask = ~uint64_t{0} << (bits % 64);
  for (int64_t r = 0; r < rows; ++r) {
    if (w[r * words + words - 1] & mask) op_fail(op, "packed weight has non-zero pad bits beyond the real channels");
  }
}

OutputTransform make_transform(const Spec& s, int64_t out_channels) {
  OutputTransform t;
  const std::string output = s.string("output", "");
  const std::vector<int64_t> shape{out_channels};
  if (output == "bits") {
    if (s.param("multiplier", "float32", false) || s.param("bias", "float32", false)) {
      op_fail(s.op(), "output 'bits' takes threshold/flip, not multiplier/bias");
    }
    t.kind = OutputKind::kBits;
    const ParamView* th = s.param("threshold", "int32", true, shape);
    const int32_t* td = static_cast<const int32_t*>(th->data);
    t.threshold.assign(td, td + out_channels);
    const ParamView* fl = s.param("flip", "uint8", false, shape);
    if (fl) {
      const uint8_t* fd = static_cast<const uint8_t*>(fl->data);
      for (int64_t i = 0; i < out_channels; ++i)
        if (fd[i] > 1) op_fail(s.op(), "flip values must be 0 or 1");
      t.flip.assign(fd, fd + out_channels);
    } else {
      t.flip.assign(static_cast<size_t>(out_channels), 0);
    }
  } else if (output == "float") {
    if (s.param("threshold", "int32", false) || s.param("flip", "uint8", false)) {
      op_fail(s.op(), "output 'float' takes multiplier/bias, not threshold/flip");
    }
    t.kind = OutputKind::kFloat;
    t.multiplier = copy_f32(s.param("multiplier", "float32", true, shape));
    t.bias = copy_f32(s.param("bias", "float32", true, shape));
  } else {
    op_fail(s.op(), "output must be 'bits' or 'float', got '" + output + "'");
  }
  return t;
}

PadMode parse_pad_mode(const Spec& s) {
  const std::string m = s.string("pad_mode", "");
  if (m == "zero") return PadMode::kZero;
  if (m == "plus_one") return PadMode::kPlusOne;
  if (m == "minus_one") return PadMode::kMinusOne;
  op_fail(s.op(), "pad_mode must be 'zero', 'plus_one' or 'minus_one', got '" + m + "'");
}

void check_inputs(const OpDesc& op, size_t want) {
  if (op.inputs.size() != want) {
    op_fail(op, "takes " + std::to_string(want) + " input(s), got " + std::to_string(op.inputs.size()));
  }
}

}  // namespace

std::unique_ptr<Node> make_node(const OpDesc& op, const std::map<std::string, ParamView>& params,
                                const std::vector<int64_t>& in_channels) {
  const Spec s(op, params);
  const std::string& k = op.kind;
  if (op.outputs.size() != 1) op_fail(op, "must have exactly one output");
  if (k != "add" && k != "mul" && k != "concat" && k != "bconcat") check_inputs(op, 1);
  if (k == "add" || k == "mul") check_inputs(op, 2);
  if ((k == "concat" || k == "bconcat") && (op.inputs.empty() || op.inputs.size() > kMaxConcatInputs)) {
    op_fail(op, "takes 1 to " + std::to_string(kMaxConcatInputs) + " inputs");
  }

  if (k == "conv2d") {
    const ParamView* w = s.param("weight", "float32", true);
    if (w->shape.size() != 4) op_fail(op, "weight must be (O, KH, KW, I), got " + shape_str(w->shape));
    FloatConvConfig c;
    c.out_channels = static_cast<int>(require_positive(op, w->shape[0], "out_channels"));
    c.kernel_h = static_cast<int>(require_positive(op, std::min(w->shape[1], kMaxKernel + 1), "kernel height"));
    c.kernel_w = static_cast<int>(require_positive(op, std::min(w->shape[2], kMaxKernel + 1), "kernel width"));
    c.in_channels = static_cast<int>(require_positive(op, w->shape[3], "in_channels"));
    if (w->shape[1] > kMaxKernel || w->shape[2] > kMaxKernel) op_fail(op, "kernel is too large");
    std::tie(c.stride_h, c.stride_w) = s.pair("stride");
    std::tie(c.pad_h, c.pad_w) = s.pair("padding");
    if (c.stride_h < 1 || c.stride_w < 1) op_fail(op, "stride must be positive");
    c.relu = s.boolean("relu", false);
    const ParamView* b = s.param("bias", "float32", false, {w->shape[0]});
    try {
      return std::make_unique<Conv2dNode>(s, c, f32(w), f32(b));
    } catch (const std::invalid_argument& e) {
      op_fail(op, e.what());
    }
  }
  if (k == "linear") {
    const ParamView* w = s.param("weight", "float32", true);
    if (w->shape.size() != 2) op_fail(op, "weight must be (O, K), got " + shape_str(w->shape));
    const int64_t o = require_positive(op, w->shape[0], "out_features");
    const int64_t i = require_positive(op, w->shape[1], "in_features");
    const ParamView* b = s.param("bias", "float32", false, {o});
    return std::make_unique<LinearNode>(s, static_cast<size_t>(o), static_cast<size_t>(i), f32(w), f32(b),
                                        s.boolean("relu", false));
  }
  if (k == "affine") {
    const ParamView* sc = s.param("scale", "float32", true);
    if (sc->shape.size() != 1 || sc->shape[0] < 1) op_fail(op, "scale must be (C,), got " + shape_str(sc->shape));
    const ParamView* sh = s.param("shift", "float32", true, sc->shape);
    return std::make_unique<AffineNode>(s, copy_f32(sc), copy_f32(sh));
  }
  if (k == "prelu") {
    const ParamView* sl = s.param("slope", "float32", true);
    if (sl->shape.size() != 1 || sl->shape[0] < 1) op_fail(op, "slope must be (C,) or (1,), got " + shape_str(sl->shape));
    const ParamView* pre = s.param("pre_shift", "float32", false);
    const ParamView* post = s.param("post_shift", "float32", false);
    int64_t c = sl->shape[0] > 1 ? sl->shape[0] : 0;
    for (const ParamView* p : {pre, post}) {
      if (!p) continue;
      if (p->shape.size() != 1 || (c && p->shape[0] != c)) {
        op_fail(op, "pre_shift/post_shift must be (C,) matching slope, got " + shape_str(p->shape));
      }
      c = p->shape[0];
    }
    if (sl->shape[0] > 1 && sl->shape[0] != c) op_fail(op, "slope and shifts have different channel counts");
    return std::make_unique<PreluNode>(s, c, copy_f32(sl), copy_f32(pre), copy_f32(post));
  }
  if (k == "relu") return std::make_unique<UnaryNode>(s, UnaryNode::Fn::kRelu);
  if (k == "sigmoid") return std::make_unique<UnaryNode>(s, UnaryNode::Fn::kSigmoid);
  if (k == "hardtanh") {
    const double lo = s.number("min_val"), hi = s.number("max_val");
    if (!(lo <= hi)) op_fail(op, "min_val must be <= max_val");
    return std::make_unique<UnaryNode>(s, UnaryNode::Fn::kHardtanh, static_cast<float>(lo), static_cast<float>(hi));
  }
  if (k == "maxpool2d" || k == "avgpool2d" || k == "bmaxpool2d") {
    const PoolNode::Kind kind = k == "maxpool2d" ? PoolNode::Kind::kMax
                                : k == "avgpool2d" ? PoolNode::Kind::kAvg
                                                   : PoolNode::Kind::kBinaryMax;
    return std::make_unique<PoolNode>(s, kind, s.pair("kernel"), s.pair("stride"), s.pair("padding"),
                                      s.boolean("count_include_pad", true));
  }
  if (k == "global_avgpool") return std::make_unique<GlobalAvgPoolNode>(s);
  if (k == "add" || k == "mul") return std::make_unique<AddMulNode>(s, k == "mul");
  if (k == "concat") return std::make_unique<ConcatNode>(s, DType::kF32);
  if (k == "bconcat") return std::make_unique<ConcatNode>(s, DType::kBits);
  if (k == "flatten") return std::make_unique<FlattenNode>(s);
  if (k == "softmax") return std::make_unique<SoftmaxNode>(s, false);
  if (k == "log_softmax") return std::make_unique<SoftmaxNode>(s, true);
  if (k == "bflatten") return std::make_unique<BflattenNode>(s, in_channels.at(0));
  if (k == "unpack") return std::make_unique<UnpackNode>(s);
  if (k == "sign") {
    const std::string sz = s.string("sign_zero", "+1");
    if (sz != "+1" && sz != "-1") op_fail(op, "sign_zero must be '+1' or '-1', got '" + sz + "'");
    const ParamView* t = s.param("threshold", "float32", false);
    int64_t c = in_channels.at(0), groups = 1;
    std::vector<float> th;
    if (t) {
      if (t->shape.size() == 1) {
        c = t->shape[0];
      } else if (t->shape.size() == 2) {
        groups = t->shape[0];
        c = t->shape[1];
      } else {
        op_fail(op, "threshold must be (C,) or (J, C), got " + shape_str(t->shape));
      }
      if (groups < 1 || groups > 64 || c < 1) op_fail(op, "threshold shape " + shape_str(t->shape) + " is out of range");
      th = copy_f32(t);
    } else {
      th.assign(static_cast<size_t>(c), 0.0f);
    }
    for (float v : th)
      if (v != v) op_fail(op, "threshold contains NaN");
    return std::make_unique<SignNode>(s, c, groups, std::move(th), sz == "-1");
  }
  if (k == "bconv2d") {
    const ParamView* w = s.param("weight", "uint64", true);
    if (w->shape.size() != 4) op_fail(op, "weight must be packed (O, KH, KW, ceil(I/64)), got " + shape_str(w->shape));
    const int64_t in_c = require_positive(op, s.integer("in_channels"), "in_channels");
    BconvConfig c;
    c.in_channels = static_cast<int>(in_c);
    c.out_channels = static_cast<int>(require_positive(op, w->shape[0], "out_channels"));
    c.kernel_h = static_cast<int>(require_positive(op, std::min(w->shape[1], kMaxKernel + 1), "kernel height"));
    c.kernel_w = static_cast<int>(require_positive(op, std::min(w->shape[2], kMaxKernel + 1), "kernel width"));
    if (w->shape[1] * w->shape[2] > 16384) op_fail(op, "kernel " + shape_str(w->shape) + " is too large");
    if (w->shape[3] != words_of(in_c)) {
      op_fail(op, "weight has " + std::to_string(w->shape[3]) + " words per tap, in_channels " + std::to_string(in_c) +
                      " needs " + std::to_string(words_of(in_c)));
    }
    std::tie(c.stride_h, c.stride_w) = s.pair("stride");
    std::tie(c.pad_h, c.pad_w) = s.pair("padding");
    if (c.stride_h < 1 || c.stride_w < 1) op_fail(op, "stride must be positive");
    if (c.pad_h >= c.kernel_h + 1 || c.pad_w >= c.kernel_w + 1) op_fail(op, "padding larger than the kernel");
    c.pad_mode = parse_pad_mode(s);
    const uint64_t* wd = static_cast<const uint64_t*>(w->data);
    check_pad_bits(op, wd, w->count / w->shape[3], w->shape[3], in_c);
    try {
      return std::make_unique<BconvNode>(s, c, wd, make_transform(s, c.out_channels));
    } catch (const std::invalid_argument& e) {
      if (std::string(e.what()).rfind("op '", 0) == 0) throw;
      op_fail(op, e.what());
    }
  }
  if (k == "blinear") {
    const ParamView* w = s.param("weight", "uint64", true);
    if (w->shape.size() != 2) op_fail(op, "weight must be packed (O, ceil(F/64)), got " + shape_str(w->shape));
    const int64_t in_f = require_positive(op, s.integer("in_features"), "in_features");
    const int64_t out_f = require_positive(op, w->shape[0], "out_features");
    if (w->shape[1] != words_of(in_f)) {
      op_fail(op, "weight has " + std::to_string(w->shape[1]) + " words per row, in_features " + std::to_string(in_f) +
                      " needs " + std::to_string(words_of(in_f)));
    }
    const uint64_t* wd = static_cast<const uint64_t*>(w->data);
    check_pad_bits(op, wd, out_f, w->shape[1], in_f);
    return std::make_unique<BlinearNode>(s, static_cast<int>(in_f), static_cast<int>(out_f), wd,
                                         make_transform(s, out_f));
  }
  op_fail(op, "unknown op kind");
}

}  // namespace xnor

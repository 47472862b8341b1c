// Pooling over NHWC windows: maxpool2d and avgpool2d (float), bmaxpool2d (packed bits: AND, or OR for
// the channels of its optional min_channels mask).
#include <stdexcept>
#include <vector>

#include "microkernels/bmaxpool.h"
#include "operators/fpool.h"
#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kBinaryMaxAttrs[] = {
    {"kernel", AttrType::kInts, true}, {"stride", AttrType::kInts, true}, {"padding", AttrType::kInts, true}};
constexpr AttrSchema kMaxAttrs[] = {{"kernel", AttrType::kInts, true},
                                    {"stride", AttrType::kInts, true},
                                    {"padding", AttrType::kInts, true},
                                    {"ceil_mode", AttrType::kBool, false}};
constexpr AttrSchema kAvgAttrs[] = {{"kernel", AttrType::kInts, true},
                                    {"stride", AttrType::kInts, true},
                                    {"padding", AttrType::kInts, true},
                                    {"count_include_pad", AttrType::kBool, false},
                                    {"ceil_mode", AttrType::kBool, false}};

class PoolNode final : public Node {
 public:
  enum class Kind { kMax, kAvg, kBinaryMax };
  PoolNode(const OpArgs& a, Kind kind)
      : Node(a.op(), {kind == Kind::kBinaryMax ? DType::kBits : DType::kF32},
             kind == Kind::kBinaryMax ? DType::kBits : DType::kF32),
        kind_(kind),
        k_(a.pair("kernel")),
        st_(a.pair("stride")),
        p_(a.pair("padding")),
        count_include_pad_(a.boolean("count_include_pad", true)),
        ceil_mode_(a.boolean("ceil_mode", false)) {
    if (kind != Kind::kBinaryMax) return;
    const ParamView* m = a.param("min_channels", {words_of(a.in_channels(0))});
    if (m != nullptr) {
      const auto* d = static_cast<const uint64_t*>(m->data);
      min_mask_.assign(d, d + m->count);
    }
  }
  FloatPoolGeometry geometry(const Shape& in) const {
    if (in.rank != 4) fail("input must be NHWC, got " + in.str());
    FloatPoolGeometry g{static_cast<int>(in.d[1]),
                        static_cast<int>(in.d[2]),
                        static_cast<int>(in.d[3]),
                        k_.first,
                        k_.second,
                        st_.first,
                        st_.second,
                        p_.first,
                        p_.second,
                        0,
                        0,
                        count_include_pad_};
    try {
      float_pool_geometry(g, kind().c_str(), ceil_mode_);
    } catch (const std::invalid_argument& e) {
      fail(e.what());
    }
    return g;
  }
  Shape infer(const Shape* in, size_t) const override {
    const FloatPoolGeometry g = geometry(in[0]);
    if (!min_mask_.empty() && words_of(in[0].d[3]) != static_cast<int64_t>(min_mask_.size()))
      fail("min_channels has " + std::to_string(min_mask_.size()) + " words, the input " + in[0].str());
    return Shape::nhwc(in[0].d[0], g.out_h, g.out_w, in[0].d[3]);
  }
  bool fuses_sign() const override { return kind_ != Kind::kBinaryMax; }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const FloatPoolGeometry g = geometry(s[0]);
    const int batch = static_cast<int>(s[0].d[0]);
    if (kind_ != Kind::kBinaryMax) {
      // A fused sign packs each output row (out_w pixels) right after the pool wrote it.
      const float* y = static_cast<const float*>(out);
      const int64_t c = s[0].channels(), pixels = g.out_w;
      const auto pack_rows = [&](size_t b, size_t e) {
        sign_rows(ctx, y, static_cast<int64_t>(b) * pixels, static_cast<int64_t>(e - b) * pixels, c);
      };
      const RangeFn pack = pack_rows;  // refers to pack_rows, which outlives the call
      const RangeFn* rows_written = ctx.sign != nullptr ? &pack : nullptr;
      if (kind_ == Kind::kMax) {
        float_maxpool2d(static_cast<const float*>(in[0]), batch, g, static_cast<float*>(out), ctx.pool, ctx.isa,
                        rows_written);
      } else {
        float_avgpool2d(static_cast<const float*>(in[0]), batch, g, static_cast<float*>(out), ctx.pool, ctx.isa,
                        rows_written);
      }
    } else {
      const PoolGeometry bg{g.in_h,     g.in_w,  g.kernel_h, g.kernel_w, g.stride_h,
                            g.stride_w, g.pad_h, g.pad_w,    g.out_h,    g.out_w};
      const int words = static_cast<int>(words_of(s[0].d[3]));
      const int64_t in_image = int64_t{g.in_h} * g.in_w * words, out_image = int64_t{g.out_h} * g.out_w * words;
      const uint64_t* src = static_cast<const uint64_t*>(in[0]);
      uint64_t* dst = static_cast<uint64_t*>(out);
      const BinaryMaxPoolFn fn = ctx.bin->binary_maxpool;
      const uint64_t* mask = min_mask_.empty() ? nullptr : min_mask_.data();
      parallel_for(ctx.pool, static_cast<size_t>(batch) * g.out_h, 1, [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) {
          const int64_t img = static_cast<int64_t>(r / g.out_h);
          const int row = static_cast<int>(r % g.out_h);
          fn(src + img * in_image, words, bg, row, row + 1, mask, dst + img * out_image);
        }
      });
    }
  }

 private:
  Kind kind_;
  std::pair<int, int> k_, st_, p_;
  bool count_include_pad_;
  bool ceil_mode_;                  // float pools only (the bmaxpool2d schema has no ceil_mode)
  std::vector<uint64_t> min_mask_;  // bmaxpool2d: channels that take the min (OR); empty = none
};

}  // namespace

constexpr ParamSchema kBinaryMaxParams[] = {{"min_channels", ParamDType::kUint64, false}};

const OpSchema maxpool2d_schema{"maxpool2d", 1, 1, kMaxAttrs, {}};
const OpSchema avgpool2d_schema{"avgpool2d", 1, 1, kAvgAttrs, {}};
const OpSchema bmaxpool2d_schema{"bmaxpool2d", 1, 1, kBinaryMaxAttrs, kBinaryMaxParams};

std::unique_ptr<Node> make_maxpool2d(const OpArgs& a) { return std::make_unique<PoolNode>(a, PoolNode::Kind::kMax); }
std::unique_ptr<Node> make_avgpool2d(const OpArgs& a) { return std::make_unique<PoolNode>(a, PoolNode::Kind::kAvg); }
std::unique_ptr<Node> make_bmaxpool2d(const OpArgs& a) {
  return std::make_unique<PoolNode>(a, PoolNode::Kind::kBinaryMax);
}

}  // namespace xnor::ops

// concat (float; `axis`, default the last) and bconcat (packed bits): concatenation along the
// last axis, or for concat along any physical axis (a copy of contiguous blocks: exact).
#include <array>
#include <cstring>

#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kConcatAttrs[] = {{"axis", AttrType::kInt, false}};

class ConcatNode final : public Node {
 public:
  ConcatNode(const OpArgs& a, DType type)
      : Node(a.op(), {type}, type),
        axis_(type == DType::kF32 && a.has("axis") ? a.integer("axis") : -1),
        per_image_(a.per_image()) {
    if (axis_ < -kMaxRank || axis_ >= kMaxRank) a.fail("axis " + std::to_string(axis_) + " is out of range");
  }
  Shape infer(const Shape* in, size_t count) const override {
    if (count < 1 || count > kMaxConcatInputs) fail("needs 1 to " + std::to_string(kMaxConcatInputs) + " inputs");
    const int ax = normalize_axis(axis_, in[0].rank);
    if (ax < 0) fail("axis " + std::to_string(axis_) + " does not fit input " + in[0].str());
    if (!per_image_ && ax == 0 && in[0].d[0] != 1) fail(batch_axis_message("concatenates along", in[0].d[0]));
    Shape out = in[0];
    for (size_t k = 1; k < count; ++k) {
      bool ok = in[k].rank == in[0].rank;
      for (int i = 0; ok && i < in[0].rank; ++i) ok = i == ax || in[k].d[i] == in[0].d[i];
      if (!ok) fail("inputs " + in[0].str() + " and " + in[k].str() + " differ outside axis " + std::to_string(ax));
      out.d[ax] += in[k].d[ax];
    }
    return out;
  }
  bool fuses_sign() const override { return out_type() == DType::kF32; }
  // Along the channels (the default axis): output row r is row r of each input, one after the other.
  bool runs_rows() const override { return out_type() == DType::kF32 && axis_ == -1; }
  void run_rows(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out, int64_t first,
                int64_t rows) const override {
    std::array<const float*, kMaxConcatInputs> src{};
    std::array<size_t, kMaxConcatInputs> channels{};
    size_t oc = 0;
    for (size_t k = 0; k < count; ++k) {
      src[k] = static_cast<const float*>(in[k]);
      channels[k] = static_cast<size_t>(s[k].channels());
      oc += channels[k];
    }
    ctx.ew->concat(src.data(), channels.data(), count, static_cast<size_t>(first), static_cast<size_t>(first + rows),
                   oc, static_cast<float*>(out));
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t count, void* out,
           const Shape& os) const override {
    const int ax = normalize_axis(axis_, os.rank);
    if (ax != os.rank - 1) {  // f32 along an outer axis: per outer index, one block of each input
      const int64_t outer = span(os, 0, ax), inner = span(os, ax + 1, os.rank), block = span(os, ax, os.rank);
      float* y = static_cast<float*>(out);
      // A fused sign (rare here: concat along an outer axis) packs the whole output afterwards.
      for_rows(ctx, outer, block, [&](size_t first, size_t rows) {
        for (size_t o = first; o < first + rows; ++o) {
          float* dst = y + static_cast<int64_t>(o) * block;
          for (size_t k = 0; k < count; ++k) {
            const int64_t part = s[k].d[ax] * inner;
            std::memcpy(dst, static_cast<const float*>(in[k]) + static_cast<int64_t>(o) * part,
                        static_cast<size_t>(part) * sizeof(float));
            dst += part;
          }
        }
      });
      if (ctx.sign != nullptr) {
        for_out_rows(ctx, os.rows(), os.channels(), y, [](size_t, size_t) {});
      }
      return;
    }
    if (out_type() == DType::kF32) {
      for_out_rows(ctx, os.rows(), os.channels(), static_cast<float*>(out),
                   [&](size_t r, size_t n) { run_rows(ctx, in, s, count, out, r, n); });
      return;
    }
    std::array<size_t, kMaxConcatInputs> channels{};
    std::array<const uint64_t*, kMaxConcatInputs> src{};
    for (size_t k = 0; k < count; ++k) {
      channels[k] = static_cast<size_t>(s[k].channels());
      src[k] = static_cast<const uint64_t*>(in[k]);
    }
    const size_t oc = static_cast<size_t>(os.channels());
    parallel_for(ctx.pool, static_cast<size_t>(os.rows()), grain_rows(words_of(os.channels())),
                 [&](size_t b, size_t e) {
                   ctx.ew->bconcat(src.data(), channels.data(), count, b, e, oc, static_cast<uint64_t*>(out));
                 });
  }

 private:
  int64_t axis_;
  bool per_image_;
};

}  // namespace

const OpSchema concat_schema{"concat", 1, static_cast<int>(kMaxConcatInputs), kConcatAttrs, {}};
const OpSchema bconcat_schema{"bconcat", 1, static_cast<int>(kMaxConcatInputs), {}, {}};

std::unique_ptr<Node> make_concat(const OpArgs& a) { return std::make_unique<ConcatNode>(a, DType::kF32); }
std::unique_ptr<Node> make_bconcat(const OpArgs& a) { return std::make_unique<ConcatNode>(a, DType::kBits); }

}  // namespace xnor::ops

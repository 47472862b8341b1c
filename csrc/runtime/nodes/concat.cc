// concat (float) and bconcat (packed bits): concatenation along the last axis.
#include <array>

#include "runtime/nodes/node_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

class ConcatNode final : public Node {
 public:
  ConcatNode(const OpArgs& a, DType type) : Node(a.op(), {type}, type) {}
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

}  // namespace

const OpSchema concat_schema{"concat", 1, static_cast<int>(kMaxConcatInputs), {}, {}};
const OpSchema bconcat_schema{"bconcat", 1, static_cast<int>(kMaxConcatInputs), {}, {}};

std::unique_ptr<Node> make_concat(const OpArgs& a) { return std::make_unique<ConcatNode>(a, DType::kF32); }
std::unique_ptr<Node> make_bconcat(const OpArgs& a) { return std::make_unique<ConcatNode>(a, DType::kBits); }

}  // namespace xnor::ops

// Helpers shared by the node files: limits, messages, parameter copies and the row split.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/nodes.h"
#include "runtime/op_registry.h"

namespace xnor::nodes {

constexpr int64_t kMaxKernel = 1024;  // kernel, stride and padding sizes
constexpr size_t kMaxConcatInputs = 64;

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

inline const float* f32(const ParamView* p) { return p ? static_cast<const float*>(p->data) : nullptr; }

inline std::vector<float> copy_f32(const ParamView* p) {
  const float* d = f32(p);
  return p ? std::vector<float>(d, d + p->count) : std::vector<float>();
}

inline int64_t require_positive(const OpArgs& a, int64_t v, const std::string& what) {
  if (v < 1 || v > kMaxDim) a.fail(what + " " + std::to_string(v) + " is out of range");
  return v;
}

inline size_t grain_rows(int64_t row_elements) {
  return element_grain_rows(static_cast<size_t>(std::max<int64_t>(1, row_elements)));
}

// Splits `rows` rows of `row_elements` values over the pool and calls fn(first_row, row_count).
template <typename Fn>
void for_rows(const RunContext& ctx, int64_t rows, int64_t row_elements, Fn&& fn) {
  parallel_for(ctx.pool, static_cast<size_t>(rows), grain_rows(row_elements),
               [&](size_t b, size_t e) { fn(b, e - b); });
}

// Values per block that a fused sign packs right after the producer wrote them (16 KiB: in L1).
constexpr int64_t kSignBlockValues = 4096;

// for_rows over the rows of a float output y of `channels` values per row; when the session fused
// a sign op into this step (ctx.sign), each block of rows is packed into ctx.sign_out right
// after fn wrote it, with the sign op's own kernel: the same bits, without reading y back from
// memory in a separate op.
// The fused sign (ctx.sign, set) of rows [first, first + count) of a float output y.
inline void sign_rows(const RunContext& ctx, const float* y, int64_t first, int64_t count, int64_t channels) {
  const SignEpilogue& s = *ctx.sign;
  const int64_t words = words_of(channels * s.groups);
  ctx.ew->sign(y + first * channels, static_cast<size_t>(count), static_cast<size_t>(channels), s.thresholds,
               static_cast<size_t>(s.groups), s.zero_is_minus, ctx.sign_out + first * words);
}

// Rows [first, first + count) of every link of a fused chain, in order, each followed by its
// fused sign: called by the chain's producer once those rows of its output are complete.
inline void run_chain_rows(const void* state, int64_t first, int64_t count) {
  const RowChain& chain = *static_cast<const RowChain*>(state);
  for (size_t i = 0; i < chain.count; ++i) {
    const ChainLink& l = chain.links[i];
    RunContext ctx{nullptr, chain.isa, chain.ew, nullptr};
    ctx.sign = l.sign;
    ctx.sign_out = l.sign_out;
    l.node->run_rows(ctx, l.in, l.in_shapes, l.count, l.out, first, count);
    if (l.sign != nullptr) sign_rows(ctx, static_cast<const float*>(l.out), first, count, l.out_channels);
  }
}

template <typename Fn>
void for_out_rows(const RunContext& ctx, int64_t rows, int64_t channels, const float* y, Fn&& fn) {
  if (ctx.sign == nullptr) {
    for_rows(ctx, rows, channels, fn);
    return;
  }
  const size_t block = static_cast<size_t>(std::max<int64_t>(1, kSignBlockValues / std::max<int64_t>(1, channels)));
  for_rows(ctx, rows, channels, [&](size_t r, size_t n) {
    for (size_t b = r, end = r + n; b < end; b += block) {
      const size_t m = std::min(block, end - b);
      fn(b, m);
      sign_rows(ctx, y, static_cast<int64_t>(b), static_cast<int64_t>(m), channels);
    }
  });
}

// Base for ops that keep the shape and, when channels_ > 0, need that many channels.
class SameShapeNode : public Node {
 public:
  SameShapeNode(const OpArgs& a, DType in, DType out, int64_t channels)
      : Node(a.op(), {in}, out), channels_(channels) {}
  Shape infer(const Shape* in, size_t) const override {
    if (channels_ > 0 && in[0].channels() != channels_) {
      fail("input must have " + std::to_string(channels_) + " channels (last axis), got " + in[0].str());
    }
    return in[0];
  }

 protected:
  int64_t channels_;
};

}  // namespace xnor::nodes

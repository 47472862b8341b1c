// transpose: y = x.transpose(perm) over physical axes (output axis i is input axis perm[i]).
// A copy, no arithmetic: identical on every ISA path and thread count.
//
// The output is walked as rows of its last axis. When that axis is the input's last axis too, each
// row is a contiguous copy. Otherwise the input's last axis lands on output axis q < rank - 1, and
// the copy is blocked: kTile output rows along q by kTile columns, so that both sides read and
// write whole cache lines (the NHWC <-> NCHW and matrix-transpose cases).
#include <algorithm>
#include <cstring>

#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kTransposeAttrs[] = {{"perm", AttrType::kInts, true}};
constexpr int64_t kTile = 16;

class TransposeNode final : public Node {
 public:
  explicit TransposeNode(const OpArgs& a)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        perm_(int_list(a, "perm", 0, kMaxRank - 1)),
        per_image_(a.per_image()) {
    bool seen[kMaxRank] = {false, false, false, false, false, false};
    for (int i = 0; i < perm_.rank; ++i) {
      if (perm_.d[i] >= perm_.rank || seen[perm_.d[i]]) a.fail("perm " + perm_.str() + " is not a permutation");
      seen[perm_.d[i]] = true;
    }
  }
  Shape infer(const Shape* in, size_t) const override {
    if (in[0].rank != perm_.rank) fail("perm " + perm_.str() + " does not fit input " + in[0].str());
    if (!per_image_ && perm_.d[0] != 0 && in[0].d[0] != 1) fail(batch_axis_message("moves", in[0].d[0]));
    Shape out = in[0];
    for (int i = 0; i < perm_.rank; ++i) out.d[i] = in[0].d[perm_.d[i]];
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const int r = os.rank;
    int64_t in_st[kMaxRank], st[kMaxRank];  // st: input stride of each output axis
    strides_of(s[0], in_st);
    for (int i = 0; i < r; ++i) st[i] = in_st[perm_.d[i]];
    const int64_t cols = os.d[r - 1];
    // q: the output axis holding the input's last axis (stride 1).
    int q = 0;
    for (int i = 0; i < r; ++i)
      if (perm_.d[i] == r - 1) q = i;
    if (q == r - 1) {  // contiguous rows
      for_rows(ctx, os.rows(), cols, [&](size_t first, size_t count) {
        for (size_t row = first; row < first + count; ++row) {
          std::memcpy(y + static_cast<int64_t>(row) * cols, x + offset(os, st, static_cast<int64_t>(row), r - 1),
                      static_cast<size_t>(cols) * sizeof(float));
        }
      });
      return;
    }
    // Blocked: tasks are (the output index without axes q and r-1) x tiles along q.
    const int64_t nq = os.d[q], tiles = (nq + kTile - 1) / kTile;
    int64_t ost[kMaxRank];
    strides_of(os, ost);
    Shape outer = os;  // the output shape with axis q of size 1, minus the last axis
    outer.d[q] = 1;
    const int64_t outer_count = span(outer, 0, r - 1);
    for_rows(ctx, outer_count * tiles, kTile * cols, [&](size_t first, size_t count) {
      for (size_t t = first; t < first + count; ++t) {
        const int64_t o = static_cast<int64_t>(t) / tiles, q0 = (static_cast<int64_t>(t) % tiles) * kTile;
        const int64_t q1 = std::min(nq, q0 + kTile);
        // The multi-index of `o` over `outer`'s first r - 1 axes gives both offsets.
        int64_t src = 0, dst = 0, rest = o;
        for (int i = r - 2; i >= 0; --i) {
          const int64_t idx = rest % outer.d[i];
          rest /= outer.d[i];
          src += idx * st[i];
          dst += idx * ost[i];
        }
        for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
          const int64_t c1 = std::min(cols, c0 + kTile);
          for (int64_t qi = q0; qi < q1; ++qi) {
            const float* xs = x + src + qi * st[q];  // st[q] == 1
            float* yd = y + dst + qi * ost[q];
            for (int64_t c = c0; c < c1; ++c) yd[c] = xs[c * st[r - 1]];
          }
        }
      }
    });
  }

 private:
  // Input offset of output row `row` (the multi-index of its first `axes` axes).
  static int64_t offset(const Shape& os, const int64_t* st, int64_t row, int axes) {
    int64_t off = 0;
    for (int i = axes - 1; i >= 0; --i) {
      off += (row % os.d[i]) * st[i];
      row /= os.d[i];
    }
    return off;
  }

  Shape perm_;
  bool per_image_;
};

}  // namespace

const OpSchema transpose_schema{"transpose", 1, 1, kTransposeAttrs, {}};

std::unique_ptr<Node> make_transpose(const OpArgs& a) { return std::make_unique<TransposeNode>(a); }

}  // namespace xnor::ops

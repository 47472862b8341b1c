// matmul: (..., M, K) x (..., K, N) -> (..., M, N), numpy matmul with the batch dims `...`
// broadcast (right-aligned; a missing or size-1 dim repeats). Both operands are activations (or
// constants), so each distinct b matrix is packed at run time into the workspace as the SGEMM
// panel kernels want it ([K][32] floats per 32 output columns, zero-padded), then the panel
// kernels compute every output element as acc = +0; acc = fma(a[k], b[k], acc) for k = 0..K-1;
// y = acc + 0: the same IEEE operations on every ISA path and thread count (float_kernels.h).
#include <algorithm>
#include <cstring>

#include "microkernels/dispatch.h"
#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr int64_t kPanel = kSgemmPanelWidth;
constexpr int64_t kRows = 96;  // output rows per task

class MatmulNode final : public Node {
 public:
  explicit MatmulNode(const OpArgs& a) : Node(a.op(), {DType::kF32}, DType::kF32) {}
  Shape infer(const Shape* in, size_t count) const override {
    if (count != 2) fail("takes 2 inputs");
    const Shape &a = in[0], &b = in[1];
    if (a.rank < 2 || b.rank < 2) fail("both inputs need rank >= 2, got " + a.str() + " and " + b.str());
    if (a.d[a.rank - 1] != b.d[b.rank - 2]) fail("inner sizes differ: " + a.str() + " x " + b.str());
    Shape out;
    out.rank = std::max(a.rank, b.rank);
    const int batch = out.rank - 2;
    for (int i = 0; i < batch; ++i) {
      const int ia = i - (out.rank - a.rank), ib = i - (out.rank - b.rank);
      const int64_t da = ia >= 0 ? a.d[ia] : 1, db = ib >= 0 ? b.d[ib] : 1;
      if (da != db && da != 1 && db != 1) fail("batch dims of " + a.str() + " and " + b.str() + " do not broadcast");
      out.d[i] = std::max(da, db);
    }
    out.d[batch] = a.d[a.rank - 2];
    out.d[batch + 1] = b.d[b.rank - 1];
    return out;
  }
  // The packed b matrices, then 32 zero floats (the panel kernels' bias).
  size_t workspace_bytes(const Shape* in, size_t, int) const override {
    return static_cast<size_t>(packed_floats(in[1]) + kPanel) * sizeof(float);
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape& os) const override {
    const float* a = static_cast<const float*>(in[0]);
    const float* b = static_cast<const float*>(in[1]);
    float* y = static_cast<float*>(out);
    const Shape &as = s[0], &bs = s[1];
    const int64_t m = as.d[as.rank - 2], k = as.d[as.rank - 1], n = bs.d[bs.rank - 1];
    const int64_t panels = (n + kPanel - 1) / kPanel, panel_floats = k * kPanel;
    const int64_t b_count = span(bs, 0, bs.rank - 2);
    float* packed = static_cast<float*>(ctx.workspace);
    float* zeros = packed + packed_floats(bs);
    std::fill(zeros, zeros + kPanel, 0.0f);
    // Pack: panel p of matrix j holds columns [32p, 32p + 32) as [K][32].
    parallel_for(ctx.pool, static_cast<size_t>(b_count * panels), grain_rows(panel_floats), [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) {
        const int64_t j = static_cast<int64_t>(t) / panels, p = static_cast<int64_t>(t) % panels;
        const int64_t c0 = p * kPanel, width = std::min(kPanel, n - c0);
        const float* src = b + j * k * n + c0;
        float* dst = packed + static_cast<int64_t>(t) * panel_floats;
        for (int64_t kk = 0; kk < k; ++kk) {
          std::memcpy(dst + kk * kPanel, src + kk * n, static_cast<size_t>(width) * sizeof(float));
          std::fill(dst + kk * kPanel + width, dst + (kk + 1) * kPanel, 0.0f);
        }
      }
    });
    // Broadcast strides (in matrices) of each output batch dim for a and b.
    const int batch = os.rank - 2;
    int64_t ast[kMaxRank] = {0, 0, 0, 0, 0, 0}, bst[kMaxRank] = {0, 0, 0, 0, 0, 0};
    matrix_strides(as, os.rank, ast);
    matrix_strides(bs, os.rank, bst);
    const int64_t out_count = span(os, 0, batch), row_tiles = (m + kRows - 1) / kRows;
    const FloatKernels& kern = float_kernels(ctx.isa);
    parallel_for(ctx.pool, static_cast<size_t>(out_count * row_tiles * panels), 1, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) {
        const int64_t p = static_cast<int64_t>(t) % panels, rest = static_cast<int64_t>(t) / panels;
        const int64_t r0 = (rest % row_tiles) * kRows, ob = rest / row_tiles;
        int64_t ai = 0, bi = 0, q = ob;
        for (int i = batch - 1; i >= 0; --i) {
          const int64_t idx = q % os.d[i];
          q /= os.d[i];
          ai += idx * ast[i];
          bi += idx * bst[i];
        }
        const int64_t rows = std::min(kRows, m - r0), width = std::min(kPanel, n - p * kPanel);
        kern.sgemm(static_cast<size_t>(rows), static_cast<size_t>(width), static_cast<size_t>(k), a + (ai * m + r0) * k,
                   static_cast<size_t>(k), packed + (bi * panels + p) * panel_floats, zeros,
                   y + (ob * m + r0) * n + p * kPanel, static_cast<size_t>(n), false);
      }
    });
  }

 private:
  // Floats of every b matrix packed into panels.
  static int64_t packed_floats(const Shape& b) {
    const int64_t k = b.d[b.rank - 2], n = b.d[b.rank - 1];
    return span(b, 0, b.rank - 2) * k * ((n + kPanel - 1) / kPanel) * kPanel;
  }
  // For an operand of shape `x` in an output of rank `out_rank`: the stride, in matrices, of each
  // output batch dim (0 where the operand broadcasts along it).
  static void matrix_strides(const Shape& x, int out_rank, int64_t* st) {
    const int lead = out_rank - x.rank;
    int64_t p = 1;
    for (int i = out_rank - 3; i >= 0; --i) {
      const int xi = i - lead;
      if (xi < 0) {
        st[i] = 0;
        continue;
      }
      st[i] = x.d[xi] == 1 ? 0 : p;
      p *= x.d[xi];
    }
  }
};

}  // namespace

const OpSchema matmul_schema{"matmul", 2, 2, {}, {}};

std::unique_ptr<Node> make_matmul(const OpArgs& a) { return std::make_unique<MatmulNode>(a); }

}  // namespace xnor::ops

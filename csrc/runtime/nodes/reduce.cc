// reduce: mean, sum, prod, max or min over physical axes (sorted, unique), keeping them as size 1
// (keepdims) or dropping them. mean, sum and prod accumulate in double in row-major order of the
// reduced axes and round to float32 once (mean: sum / count in double); max and min are exact,
// NaN propagating (torch.amax / amin). One portable loop: identical on every ISA path and thread
// count. Axis 0 (the batch) only with batch 1, or in a per-image graph.
#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/nodes/axis_util.h"

namespace xnor::ops {
namespace {

using namespace nodes;

constexpr AttrSchema kReduceAttrs[] = {
    {"op", AttrType::kString, true}, {"axes", AttrType::kInts, true}, {"keepdims", AttrType::kBool, false}};

enum class Reduction { kMean, kSum, kProd, kMax, kMin };

constexpr int64_t kColumns = 64;  // adjacent outputs one task reduces together

class ReduceNode final : public Node {
 public:
  ReduceNode(const OpArgs& a, Reduction op)
      : Node(a.op(), {DType::kF32}, DType::kF32),
        op_(op),
        axes_(int_list(a, "axes", 0, kMaxRank - 1)),
        keepdims_(a.boolean("keepdims", true)),
        per_image_(a.per_image()) {
    for (int i = 1; i < axes_.rank; ++i) {
      if (axes_.d[i] <= axes_.d[i - 1]) a.fail("axes " + axes_.str() + " must be sorted and unique");
    }
  }
  Shape infer(const Shape* in, size_t) const override {
    const Shape& x = in[0];
    if (axes_.d[axes_.rank - 1] >= x.rank) fail("axes " + axes_.str() + " do not fit input " + x.str());
    if (!keepdims_ && axes_.rank == x.rank) fail("reducing every axis without keepdims leaves rank 0");
    if (!per_image_ && axes_.d[0] == 0 && x.d[0] != 1) fail(batch_axis_message("reduces", x.d[0]));
    Shape out;
    for (int i = 0; i < x.rank; ++i) {
      if (!reduced(i)) {
        out.d[out.rank++] = x.d[i];
      } else if (keepdims_) {
        out.d[out.rank++] = 1;
      }
    }
    return out;
  }
  void run(const RunContext& ctx, const void* const* in, const Shape* s, size_t, void* out,
           const Shape&) const override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out);
    const Shape& xs = s[0];
    int64_t st[kMaxRank];
    strides_of(xs, st);
    // Kept axes (in order) and reduced axes (in order) with their sizes and strides.
    Shape kept, red;
    int64_t kst[kMaxRank], rst[kMaxRank];
    for (int i = 0; i < xs.rank; ++i) {
      if (reduced(i)) {
        rst[red.rank] = st[i];
        red.d[red.rank++] = xs.d[i];
      } else {
        kst[kept.rank] = st[i];
        kept.d[kept.rank++] = xs.d[i];
      }
    }
    const int64_t outputs = span(kept, 0, kept.rank), count = span(red, 0, red.rank);
    const int last_reduced = static_cast<int>(axes_.d[axes_.rank - 1]);
    const int64_t inner = span(xs, last_reduced + 1, xs.rank);  // the kept values after the last reduced axis
    if (inner > 1) {
      // Contiguous columns: the kept axes before the last reduced one index a block, and each task
      // reduces kColumns adjacent outputs at once (the same order of operations per output).
      const int outer_rank = kept.rank - (xs.rank - 1 - last_reduced);
      const int64_t outer = span(kept, 0, outer_rank), chunks = (inner + kColumns - 1) / kColumns;
      parallel_for(
          ctx.pool, static_cast<size_t>(outer * chunks), grain_rows(count * kColumns), [&](size_t b, size_t e) {
            for (size_t t = b; t < e; ++t) {
              const int64_t o = static_cast<int64_t>(t) / chunks, c0 = (static_cast<int64_t>(t) % chunks) * kColumns;
              int64_t base = 0, rest = o;
              for (int i = outer_rank - 1; i >= 0; --i) {
                base += (rest % kept.d[i]) * kst[i];
                rest /= kept.d[i];
              }
              reduce_columns(x + base + c0, red, rst, count, std::min(kColumns, inner - c0), y + o * inner + c0);
            }
          });
      return;
    }
    parallel_for(ctx.pool, static_cast<size_t>(outputs), grain_rows(count), [&](size_t b, size_t e) {
      for (size_t o = b; o < e; ++o) {
        int64_t base = 0, rest = static_cast<int64_t>(o);
        for (int i = kept.rank - 1; i >= 0; --i) {
          base += (rest % kept.d[i]) * kst[i];
          rest /= kept.d[i];
        }
        y[o] = reduce_one(x + base, red, rst, count);
      }
    });
  }

 private:
  bool reduced(int axis) const {
    for (int i = 0; i < axes_.rank; ++i)
      if (axes_.d[i] == axis) return true;
    return false;
  }
  // reduce_one for the `width` (<= kColumns) adjacent outputs x[0 .. width) and y[0 .. width).
  void reduce_columns(const float* x, const Shape& red, const int64_t* rst, int64_t count, int64_t width,
                      float* y) const {
    double acc[kColumns];
    float m[kColumns];
    for (int64_t j = 0; j < width; ++j) {
      acc[j] = op_ == Reduction::kProd ? 1.0 : 0.0;
      m[j] = x[j];
    }
    int64_t idx[kMaxRank] = {0, 0, 0, 0, 0, 0};
    for (int64_t done = 0; done < count; ++done) {
      int64_t off = 0;
      for (int i = 0; i < red.rank; ++i) off += idx[i] * rst[i];
      const float* p = x + off;
      if (op_ == Reduction::kMean || op_ == Reduction::kSum) {
        for (int64_t j = 0; j < width; ++j) acc[j] += static_cast<double>(p[j]);
      } else if (op_ == Reduction::kProd) {
        for (int64_t j = 0; j < width; ++j) acc[j] *= static_cast<double>(p[j]);
      } else if (op_ == Reduction::kMax) {
        for (int64_t j = 0; j < width; ++j) m[j] = (p[j] > m[j] || std::isnan(p[j])) && !std::isnan(m[j]) ? p[j] : m[j];
      } else {
        for (int64_t j = 0; j < width; ++j) m[j] = (p[j] < m[j] || std::isnan(p[j])) && !std::isnan(m[j]) ? p[j] : m[j];
      }
      for (int i = red.rank - 1; i >= 0; --i) {
        if (++idx[i] < red.d[i]) break;
        idx[i] = 0;
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      if (op_ == Reduction::kSum || op_ == Reduction::kProd) {
        y[j] = static_cast<float>(acc[j]);
      } else if (op_ == Reduction::kMean) {
        y[j] = static_cast<float>(acc[j] / static_cast<double>(count));
      } else {
        y[j] = m[j];
      }
    }
  }
  // Reduces the `count` elements at x + (multi-index over red) . rst, in row-major order.
  float reduce_one(const float* x, const Shape& red, const int64_t* rst, int64_t count) const {
    int64_t idx[kMaxRank] = {0, 0, 0, 0, 0, 0};
    const int last = red.rank - 1;
    const int64_t inner = red.d[last], step = rst[last];
    double acc = op_ == Reduction::kProd ? 1.0 : 0.0;
    float m = x[0];
    for (int64_t done = 0; done < count; done += inner) {
      int64_t off = 0;
      for (int i = 0; i < last; ++i) off += idx[i] * rst[i];
      const float* p = x + off;
      if (op_ == Reduction::kMean || op_ == Reduction::kSum) {
        for (int64_t j = 0; j < inner; ++j) acc += static_cast<double>(p[j * step]);
      } else if (op_ == Reduction::kProd) {
        for (int64_t j = 0; j < inner; ++j) acc *= static_cast<double>(p[j * step]);
      } else if (op_ == Reduction::kMax) {
        for (int64_t j = 0; j < inner; ++j) {
          const float v = p[j * step];
          m = (v > m || std::isnan(v)) && !std::isnan(m) ? v : m;
        }
      } else {
        for (int64_t j = 0; j < inner; ++j) {
          const float v = p[j * step];
          m = (v < m || std::isnan(v)) && !std::isnan(m) ? v : m;
        }
      }
      for (int i = last - 1; i >= 0; --i) {  // the odometer over the outer reduced axes
        if (++idx[i] < red.d[i]) break;
        idx[i] = 0;
      }
    }
    if (op_ == Reduction::kSum || op_ == Reduction::kProd) return static_cast<float>(acc);
    if (op_ == Reduction::kMean) return static_cast<float>(acc / static_cast<double>(count));
    return m;
  }

  Reduction op_;
  Shape axes_;
  bool keepdims_, per_image_;
};

}  // namespace

const OpSchema reduce_schema{"reduce", 1, 1, kReduceAttrs, {}};

std::unique_ptr<Node> make_reduce(const OpArgs& a) {
  const std::string op = a.string("op", "");
  if (op == "mean") return std::make_unique<ReduceNode>(a, Reduction::kMean);
  if (op == "sum") return std::make_unique<ReduceNode>(a, Reduction::kSum);
  if (op == "max") return std::make_unique<ReduceNode>(a, Reduction::kMax);
  if (op == "min") return std::make_unique<ReduceNode>(a, Reduction::kMin);
  if (op == "prod") return std::make_unique<ReduceNode>(a, Reduction::kProd);
  a.fail("op must be 'mean', 'sum', 'prod', 'max' or 'min', got '" + op + "'");
}

}  // namespace xnor::ops

// Numpy broadcasting of physical (row-major) shapes for the element-wise ops of the general graph
// (binary, where): the output shape, and a walk over the output in runs that are contiguous in
// every operand or broadcast (stride 0) in it. Everything lives on the stack: nothing allocates.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/tensor_shape.h"

namespace xnor::nodes {

constexpr int kMaxBroadcastOperands = 3;

// The broadcast of `count` shapes (right-aligned, each axis equal or 1), or false when they do not
// broadcast.
inline bool broadcast_shape(const Shape* in, size_t count, Shape* out) {
  int rank = 0;
  for (size_t k = 0; k < count; ++k) rank = std::max(rank, in[k].rank);
  if (rank < 1 || rank > kMaxRank) return false;
  out->rank = rank;
  for (int i = 0; i < rank; ++i) {
    int64_t d = 1;
    for (size_t k = 0; k < count; ++k) {
      const int j = i - (rank - in[k].rank);  // the operand's axis aligned with output axis i
      if (j < 0) continue;
      const int64_t e = in[k].d[j];
      if (e == d || e == 1) continue;
      if (d != 1) return false;
      d = e;
    }
    out->d[i] = d;
  }
  return true;
}

// The output as `rank` coalesced axes (size-1 axes dropped, adjacent axes merged where every
// operand is contiguous across them); stride[k][i] is operand k's element stride along axis i
// (0 where it is broadcast).
struct BroadcastWalk {
  int rank = 0;
  int operands = 0;
  int64_t dims[kMaxRank] = {};
  int64_t stride[kMaxBroadcastOperands][kMaxRank] = {};

  BroadcastWalk(const Shape* in, size_t count, const Shape& out) : operands(static_cast<int>(count)) {
    int64_t st[kMaxBroadcastOperands][kMaxRank] = {};
    for (size_t k = 0; k < count; ++k) {
      int64_t s = 1;
      for (int i = out.rank - 1; i >= 0; --i) {
        const int j = i - (out.rank - in[k].rank);
        const int64_t e = j < 0 ? 1 : in[k].d[j];
        st[k][i] = e == 1 ? 0 : s;
        s *= e;
      }
    }
    for (int i = 0; i < out.rank; ++i) {
      if (out.d[i] == 1) continue;
      bool merge = rank > 0;
      for (size_t k = 0; merge && k < count; ++k) merge = st[k][i] * out.d[i] == stride[k][rank - 1];
      if (merge) {  // axis i continues the previous kept axis in every operand
        dims[rank - 1] *= out.d[i];
        for (size_t k = 0; k < count; ++k) stride[k][rank - 1] = st[k][i];
        continue;
      }
      dims[rank] = out.d[i];
      for (size_t k = 0; k < count; ++k) stride[k][rank] = st[k][i];
      ++rank;
    }
    if (rank == 0) {  // a single element
      dims[0] = 1;
      rank = 1;
    }
  }

  // Calls run(offsets, n) for the output elements [begin, end) in runs along the last axis:
  // offsets[k] is operand k's first element, its stride along the run stride[k][rank - 1].
  template <typename Fn>
  void for_runs(int64_t begin, int64_t end, Fn&& run) const {
    int64_t idx[kMaxRank] = {};
    int64_t off[kMaxBroadcastOperands] = {};
    int64_t rest = begin;
    for (int i = rank - 1; i >= 0; --i) {
      idx[i] = rest % dims[i];
      rest /= dims[i];
      for (int k = 0; k < operands; ++k) off[k] += idx[i] * stride[k][i];
    }
    const int last = rank - 1;
    int64_t pos = begin;
    while (pos < end) {
      const int64_t n = std::min(dims[last] - idx[last], end - pos);
      run(off, n);
      pos += n;
      for (int k = 0; k < operands; ++k) off[k] += n * stride[k][last];
      idx[last] += n;
      for (int i = last; i > 0 && idx[i] == dims[i]; --i) {  // carry into the outer axes
        idx[i] = 0;
        ++idx[i - 1];
        for (int k = 0; k < operands; ++k) off[k] += stride[k][i - 1] - dims[i] * stride[k][i];
      }
    }
  }
};

}  // namespace xnor::nodes

// Helpers of the general float ops that take physical axes (transpose, reshape, expand, reduce,
// matmul, softmax, concat, slice): attribute lists as shapes, axes, and row-major index walks.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/nodes/node_util.h"

namespace xnor::nodes {

// An "ints" attribute of 1 to kMaxRank values, each in [lo, hi]; fails naming the op otherwise.
inline Shape int_list(const OpArgs& a, const std::string& attr, int64_t lo, int64_t hi) {
  const std::vector<int64_t>& v = a.op().attrs.at(attr).ints;
  if (v.empty() || v.size() > static_cast<size_t>(kMaxRank)) {
    a.fail(attr + " must hold 1 to " + std::to_string(kMaxRank) + " values, got " + std::to_string(v.size()));
  }
  Shape s;
  s.rank = static_cast<int>(v.size());
  for (int i = 0; i < s.rank; ++i) {
    if (v[static_cast<size_t>(i)] < lo || v[static_cast<size_t>(i)] > hi) {
      a.fail(attr + " " + shape_str(v) + ": value " + std::to_string(v[static_cast<size_t>(i)]) + " is out of range");
    }
    s.d[i] = v[static_cast<size_t>(i)];
  }
  return s;
}

// `axis` in [-rank, rank) as an index in [0, rank), or -1 when out of range.
inline int normalize_axis(int64_t axis, int rank) {
  if (axis < -rank || axis >= rank) return -1;
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

// Product of d[first, last).
inline int64_t span(const Shape& s, int first, int last) {
  int64_t p = 1;
  for (int i = first; i < last; ++i) p *= s.d[i];
  return p;
}

// Product of d[first, last), or -1 when it exceeds kMaxTensorBytes (an attribute's shape: no overflow).
inline int64_t checked_span(const Shape& s, int first, int last) {
  int64_t p = 1;
  for (int i = first; i < last; ++i) {
    if (s.d[i] < 1 || p > kMaxTensorBytes / s.d[i]) return -1;
    p *= s.d[i];
  }
  return p;
}

// Row-major element strides of `s`.
inline void strides_of(const Shape& s, int64_t* st) {
  int64_t p = 1;
  for (int i = s.rank - 1; i >= 0; --i) {
    st[i] = p;
    p *= s.d[i];
  }
}

// The message of an op that mixes along axis 0 of a batched graph.
inline std::string batch_axis_message(const std::string& what, int64_t n) {
  return what + " axis 0, the batch: runs with batch 1 only (or in a per-image graph), got batch " + std::to_string(n);
}

}  // namespace xnor::nodes

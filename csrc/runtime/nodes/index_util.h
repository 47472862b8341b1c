// Helpers of the index ops (arg_reduce, topk, cumsum, take, gather): the (outer, len, inner) view of
// a tensor around one physical axis, the order NaN-aware comparisons give, and the check that an
// index stored as float32 is an exact integer inside its axis (the IR carries indices as f32).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "runtime/nodes/axis_util.h"

namespace xnor::nodes {

// Largest index a float32 holds exactly (2^24): the converter refuses longer axes.
constexpr int64_t kMaxExactIndex = int64_t{1} << 24;

// The tensor `s` seen as (outer, len, inner) around physical axis `ax`.
struct AxisView {
  int64_t outer, len, inner;
};

inline AxisView axis_view(const Shape& s, int ax) { return {span(s, 0, ax), s.d[ax], span(s, ax + 1, s.rank)}; }

// The physical axis of an `axis` attribute (negative counts from the end) in a tensor of rank `rank`;
// throws through `fail` when it does not fit. Axis 0 of a batched graph only with batch 1.
template <typename Fail>
int checked_axis(int64_t axis, const Shape& x, bool per_image, const char* what, Fail&& fail) {
  const int ax = normalize_axis(axis, x.rank);
  if (ax < 0) fail("axis " + std::to_string(axis) + " does not fit input " + x.str());
  if (!per_image && ax == 0 && x.d[0] != 1) fail(batch_axis_message(what, x.d[0]));
  return ax;
}

// PyTorch's order for sort / topk / argmax: NaN above every number, ties by lower index.
inline bool greater_nan(float a, float b) {
  if (std::isnan(a)) return !std::isnan(b);
  if (std::isnan(b)) return false;
  return a > b;
}
inline bool less_nan(float a, float b) {
  if (std::isnan(b)) return !std::isnan(a);
  if (std::isnan(a)) return false;
  return a < b;
}

// `v` as an index into an axis of `size` (negative counts from the end, as Python indexing), or -1
// when it is not an integer in [-size, size).
inline int64_t index_of(float v, int64_t size) {
  if (!(v >= -static_cast<float>(size) && v < static_cast<float>(size)) || std::floor(v) != v) return -1;
  const int64_t i = static_cast<int64_t>(v);
  return i < 0 ? i + size : i;
}

inline std::string bad_index_message(float v, int64_t size) {
  return "index " + std::to_string(v) + " is not an integer in [" + std::to_string(-size) + ", " +
         std::to_string(size) + ") (the size of the indexed axis)";
}

}  // namespace xnor::nodes

// Static memory planning: one arena per input shape, buffers placed by
// liveness so that tensors whose lifetimes do not overlap share bytes.
//
// Two placements, both O(n log n) in the number of buffers n plus the work
// they are given: greedy by size (TensorFlow Lite's arena planner; the
// tighter arena) when the buffers overlap in time in at most `pair_budget`
// pairs, else a sweep in time order with a best-fit free list, so that no
// graph (however many tensors are alive at once) can make planning quadratic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xnor {

struct BufferRequest {
  size_t bytes = 0;  // 0: no buffer (an alias or an unused tensor)
  int first = 0;     // step that writes it (-1: before the first step)
  int last = 0;      // last step that reads it (inclusive)
};

struct MemoryPlan {
  std::vector<size_t> offsets;  // per request, 64-byte aligned
  size_t arena_bytes = 0;
};

// Overlapping pairs up to which greedy by size is used (its cost is linear in them).
constexpr uint64_t kGreedyPairBudget = uint64_t{1} << 22;

// Buffers alive at a common step never share bytes. Throws std::length_error
// when the arena would not fit in size_t.
MemoryPlan plan_memory(const std::vector<BufferRequest>& requests, uint64_t pair_budget = kGreedyPairBudget);

}  // namespace xnor

// Static memory planning: one arena per input shape, buffers placed by
// liveness so that tensors whose lifetimes do not overlap share bytes
// (greedy by size, as TensorFlow Lite's arena planner).
#pragma once

#include <cstddef>
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

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests);

}  // namespace xnor

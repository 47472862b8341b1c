#include "runtime/memory_plan.h"

#include <algorithm>
#include <numeric>

namespace xnor {

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests) {
  constexpr size_t kAlign = 64;
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Largest first; ties by index so the plan is deterministic.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return requests[a].bytes > requests[b].bytes; });
  std::vector<size_t> placed;
  std::vector<std::pair<size_t, size_t>> busy;  // [begin, end) of placed buffers alive at the same time
  for (size_t i : order) {
    const BufferRequest& r = requests[i];
    if (r.bytes == 0) continue;
    const size_t size = (r.bytes + kAlign - 1) / kAlign * kAlign;
    busy.clear();
    for (size_t j : placed) {
      const BufferRequest& o = requests[j];
      if (o.first <= r.last && r.first <= o.last) {
        busy.emplace_back(plan.offsets[j], plan.offsets[j] + (o.bytes + kAlign - 1) / kAlign * kAlign);
      }
    }
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;  // lowest gap that fits
    for (const auto& [b, e] : busy) {
      if (b >= offset + size) break;
      offset = std::max(offset, e);
    }
    plan.offsets[i] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
    placed.push_back(i);
  }
  return plan;
}

}  // namespace xnor

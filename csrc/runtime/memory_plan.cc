#include "runtime/memory_plan.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

namespace xnor {
namespace {

constexpr size_t kAlign = 64;

size_t add_checked(size_t a, size_t b) {
  if (a > std::numeric_limits<size_t>::max() - b) throw std::length_error("memory plan: the arena size overflows");
  return a + b;
}

size_t aligned_size(size_t bytes) { return add_checked(bytes, kAlign - 1) / kAlign * kAlign; }

// Pairs of buffers alive at a common step, counted without listing them: all
// pairs less those where one buffer ends before the other starts.
uint64_t overlapping_pairs(const std::vector<BufferRequest>& r, const std::vector<uint32_t>& ids) {
  std::vector<int> lasts;
  lasts.reserve(ids.size());
  for (uint32_t i : ids) lasts.push_back(r[i].last);
  std::sort(lasts.begin(), lasts.end());
  uint64_t disjoint = 0;
  for (uint32_t i : ids)
    disjoint += static_cast<uint64_t>(std::lower_bound(lasts.begin(), lasts.end(), r[i].first) - lasts.begin());
  const uint64_t n = ids.size();
  return n * (n - 1) / 2 - disjoint;
}

// Calls visit(a, b) once for every pair of buffers alive at a common step: a
// sweep in order of first step over the set of buffers still alive.
template <typename Visit>
void for_each_overlap(const std::vector<BufferRequest>& r, const std::vector<uint32_t>& by_first, Visit&& visit) {
  std::set<std::pair<int, uint32_t>> alive;  // (last step, buffer)
  for (uint32_t i : by_first) {
    while (!alive.empty() && alive.begin()->first < r[i].first) alive.erase(alive.begin());
    for (const auto& entry : alive) visit(entry.second, i);
    alive.emplace(r[i].last, i);
  }
}

// Greedy by size: largest first, each at the lowest gap left by the larger
// buffers it overlaps in time. The overlap lists are built once (CSR), so a
// placement costs its own neighbours, not every buffer placed before it.
void plan_greedy_by_size(const std::vector<BufferRequest>& r, const std::vector<uint32_t>& ids,
                         const std::vector<uint32_t>& by_first, MemoryPlan& plan) {
  std::vector<uint32_t> start(r.size() + 1, 0);
  for_each_overlap(r, by_first, [&](uint32_t a, uint32_t b) { ++start[a + 1], ++start[b + 1]; });
  for (size_t i = 1; i < start.size(); ++i) start[i] += start[i - 1];
  std::vector<uint32_t> fill(start.begin(), start.end() - 1);
  std::vector<uint32_t> neighbours(start.back());
  for_each_overlap(r, by_first, [&](uint32_t a, uint32_t b) {
    neighbours[fill[a]++] = b;
    neighbours[fill[b]++] = a;
  });

  std::vector<uint32_t> order = ids;
  // Largest first; ties by index so the plan is deterministic.
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return r[a].bytes > r[b].bytes; });
  std::vector<bool> placed(r.size(), false);
  std::vector<std::pair<size_t, size_t>> busy;  // [begin, end) of placed buffers alive at the same time
  for (uint32_t i : order) {
    const size_t size = aligned_size(r[i].bytes);
    busy.clear();
    for (uint32_t k = start[i]; k < start[i + 1]; ++k) {
      const uint32_t j = neighbours[k];
      if (placed[j]) busy.emplace_back(plan.offsets[j], plan.offsets[j] + aligned_size(r[j].bytes));
    }
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;  // lowest gap that fits
    for (const auto& [b, e] : busy) {
      if (b >= add_checked(offset, size)) break;
      offset = std::max(offset, e);
    }
    plan.offsets[i] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, add_checked(offset, size));
    placed[i] = true;
  }
}

// Sweep in time order: buffers are freed after their last step and taken
// from the smallest free block that fits (lowest offset on ties), else from
// the top of the arena. O(n log n) whatever the overlap.
void plan_sweep_best_fit(const std::vector<BufferRequest>& r, const std::vector<uint32_t>& ids, MemoryPlan& plan) {
  std::vector<uint32_t> order = ids;  // by first step, larger first within a step
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    if (r[a].first != r[b].first) return r[a].first < r[b].first;
    if (r[a].bytes != r[b].bytes) return r[a].bytes > r[b].bytes;
    return a < b;
  });
  std::vector<uint32_t> by_last = ids;
  std::sort(by_last.begin(), by_last.end(),
            [&](uint32_t a, uint32_t b) { return r[a].last != r[b].last ? r[a].last < r[b].last : a < b; });
  std::map<size_t, size_t> free_at;                  // offset -> size
  std::set<std::pair<size_t, size_t>> free_by_size;  // (size, offset)
  size_t top = 0;
  auto release = [&](size_t off, size_t size) {
    auto next = free_at.lower_bound(off);
    if (next != free_at.end() && off + size == next->first) {
      size += next->second;
      free_by_size.erase({next->second, next->first});
      next = free_at.erase(next);
    }
    if (next != free_at.begin()) {
      const auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        off = prev->first;
        size += prev->second;
        free_by_size.erase({prev->second, prev->first});
        free_at.erase(prev);
      }
    }
    if (off + size == top) {
      top = off;  // the arena's top block: give it back to the top
      return;
    }
    free_at.emplace(off, size);
    free_by_size.emplace(size, off);
  };
  size_t freed = 0;
  for (uint32_t i : order) {
    // Every buffer that ended before this one starts also started before it, so it is placed.
    for (; freed < by_last.size() && r[by_last[freed]].last < r[i].first; ++freed) {
      const uint32_t j = by_last[freed];
      release(plan.offsets[j], aligned_size(r[j].bytes));
    }
    const size_t size = aligned_size(r[i].bytes);
    const auto fit = free_by_size.lower_bound({size, 0});
    if (fit != free_by_size.end()) {
      const auto [block, off] = *fit;
      free_by_size.erase(fit);
      free_at.erase(off);
      if (block > size) {
        free_at.emplace(off + size, block - size);
        free_by_size.emplace(block - size, off + size);
      }
      plan.offsets[i] = off;
    } else {
      plan.offsets[i] = top;
      top = add_checked(top, size);
      plan.arena_bytes = std::max(plan.arena_bytes, top);
    }
  }
}

}  // namespace

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests, uint64_t pair_budget) {
  if (requests.size() >= std::numeric_limits<uint32_t>::max()) throw std::length_error("memory plan: too many buffers");
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<uint32_t> ids;  // buffers that take bytes, in index order
  for (size_t i = 0; i < requests.size(); ++i) {
    const BufferRequest& r = requests[i];
    if (r.first > r.last) {
      throw std::invalid_argument("memory plan: buffer " + std::to_string(i) + " ends (step " + std::to_string(r.last) +
                                  ") before it starts (step " + std::to_string(r.first) + ")");
    }
    if (r.bytes > 0) ids.push_back(static_cast<uint32_t>(i));
  }
  if (overlapping_pairs(requests, ids) <= pair_budget) {
    std::vector<uint32_t> by_first = ids;
    std::stable_sort(by_first.begin(), by_first.end(),
                     [&](uint32_t a, uint32_t b) { return requests[a].first < requests[b].first; });
    plan_greedy_by_size(requests, ids, by_first, plan);
  } else {
    plan_sweep_best_fit(requests, ids, plan);
  }
  return plan;
}

}  // namespace xnor

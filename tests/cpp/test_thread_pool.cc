// How work is split over threads (operators/parallel.h share_range) and the thread pool that runs
// the shares: every index exactly once, in balanced ranges that do not depend on which thread runs
// them, whatever the timing of the workers.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "operators/parallel.h"
#include "runtime/thread_pool.h"

namespace xnor {
namespace {

// The shares, in order, checked against the rules; returns their ranges.
std::vector<std::pair<size_t, size_t>> checked_shares(size_t n, size_t grain, int threads) {
  const size_t shares = share_count(n, grain, threads);
  const size_t g = std::max<size_t>(grain, 1);
  EXPECT_EQ(shares, n == 0 ? 0 : std::min<size_t>(static_cast<size_t>(threads), (n + g - 1) / g));
  const size_t unit = std::max<size_t>(1, g / kShareUnitsPerGrain);
  std::vector<std::pair<size_t, size_t>> out;
  size_t at = 0, smallest = n, largest = 0;
  for (size_t s = 0; s < shares; ++s) {
    const ShareRange r = share_range(n, grain, threads, s);
    EXPECT_EQ(r.begin, at) << "n " << n << " grain " << grain << " threads " << threads << " share " << s;
    EXPECT_LT(r.begin, r.end) << "an empty share";
    if (r.end != n) EXPECT_EQ(r.end % unit, 0u) << "a boundary inside a unit";
    smallest = std::min(smallest, r.end - r.begin);
    largest = std::max(largest, r.end - r.begin);
    out.emplace_back(r.begin, r.end);
    at = r.end;
  }
  EXPECT_EQ(at, n) << "the shares do not cover [0, n)";
  // Equal to within one unit (the last share may be short by the partial last unit as well).
  if (shares > 1) EXPECT_LE(largest - smallest, 2 * unit) << "n " << n << " grain " << grain;
  return out;
}

TEST(ShareRange, CoversEveryIndexOnceInBalancedRanges) {
  for (int threads : {1, 2, 3, 4, 7, 16}) {
    for (size_t grain : {size_t{0}, size_t{1}, size_t{8}, size_t{63}, size_t{64}, size_t{1000}, size_t{16384}}) {
      for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, size_t{63}, size_t{64}, size_t{65}, size_t{1000},
                       size_t{16383}, size_t{16384}, size_t{16385}, size_t{25088}, size_t{50176}, size_t{100352},
                       size_t{200704}, size_t{1} << 40}) {
        checked_shares(n, grain, threads);
      }
    }
  }
}

TEST(ShareRange, SplitsElementWorkEvenlyNotInWholeGrains) {
  // 7x7x512 floats at the element grain: two halves, not 16384 + 8704.
  const auto r = checked_shares(25088, kElementGrain, 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], std::make_pair(size_t{0}, size_t{12544}));
  EXPECT_EQ(r[1], std::make_pair(size_t{12544}, size_t{25088}));
  // Below one grain: one share (the calling thread).
  EXPECT_EQ(share_count(kElementGrain, kElementGrain, 2), 1u);
}

// Runs parallel_for and returns the ranges fn saw, sorted; checks each index ran exactly once.
std::vector<std::pair<size_t, size_t>> ranges_run(ThreadPool& pool, size_t n, size_t grain) {
  std::mutex m;
  std::vector<std::pair<size_t, size_t>> seen;
  std::vector<std::atomic<int>> hits(n);
  pool.parallel_for(n, grain, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(m);
    seen.emplace_back(b, e);
  });
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "index " << i << " of " << n;
  std::sort(seen.begin(), seen.end());
  return seen;
}

TEST(ThreadPool, RunsTheSharesWhoeverRunsThem) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    // Back-to-back jobs of changing sizes: workers that arrive late for one job meet the next.
    for (int round = 0; round < 300; ++round) {
      const size_t n = static_cast<size_t>(1 + (round * 7919) % 5000);
      const size_t grain = static_cast<size_t>(1 + (round * 31) % 300);
      EXPECT_EQ(ranges_run(pool, n, grain), checked_shares(n, grain, threads))
          << "threads " << threads << " n " << n << " grain " << grain;
    }
  }
}

TEST(ThreadPool, EachShareRunsOnceAsABody) {
  // parallel_for calls the body at most once per share: operators give each call its own scratch.
  ThreadPool pool(4);
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> calls{0};
    pool.parallel_for(1000, 1, [&](size_t, size_t) { calls.fetch_add(1); });
    EXPECT_EQ(calls.load(), 4);
  }
}

}  // namespace
}  // namespace xnor

// What an operator needs from threads: a TaskRunner that splits [0, n) into ranges, and the one
// task-splitting policy every operator follows. The runtime's ThreadPool (runtime/thread_pool.h)
// is the TaskRunner; operators never see it, so this folder depends on nothing above it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace xnor {

// A non-owning reference to a callable fn(begin, end). Unlike std::function it
// never allocates, so running a graph allocates nothing; the callable must
// outlive the call (parallel_for blocks until every range is done).
class RangeFn {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, RangeFn>>>
  RangeFn(F&& fn)  // NOLINT: implicit, so that lambdas pass straight to parallel_for
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(fn)))),
        call_(&invoke<std::remove_reference_t<F>>) {}
  void operator()(size_t begin, size_t end) const { call_(object_, begin, end); }

 private:
  template <typename F>
  static void invoke(void* object, size_t begin, size_t end) {
    (*static_cast<F*>(object))(begin, end);
  }
  void* object_;
  void (*call_)(void*, size_t, size_t);
};

class TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // Threads that share the work (the calling thread included), >= 1.
  virtual int threads() const = 0;
  // Calls fn(begin, end) on the share_range()s of [0, n) for threads(): disjoint, contiguous,
  // deterministic ranges that cover [0, n), at most one per thread. Blocks until done.
  virtual void parallel_for(size_t n, size_t grain, RangeFn fn) = 0;
};

// ---------------------------------------------------------------- how [0, n) is split
// `grain` is the least work worth a share of its own: [0, n) goes to min(threads, ceil(n / grain))
// shares of equal size, to within one unit of max(1, grain / kShareUnitsPerGrain) (each boundary
// is a multiple of the unit, and the shares differ by at most one unit). Equal shares matter: cut
// into whole grains, 25088 values at grain 16384 were 16384 + 8704, and the op took as long on 2
// threads as the larger share (1.5x instead of 2x). The unit keeps boundaries off the middle of a
// few values (element-wise ops: 256 floats, 1 KiB) and rows whole (ranges of rows).
constexpr size_t kShareUnitsPerGrain = 64;

// The shares that [0, n) is split into on `threads` threads (0 when n == 0).
inline size_t share_count(size_t n, size_t grain, int threads) {
  if (n == 0) return 0;
  if (grain == 0) grain = 1;
  const size_t chunks = n / grain + (n % grain != 0 ? 1 : 0);
  const size_t t = threads < 1 ? 1 : static_cast<size_t>(threads);
  return chunks < t ? chunks : t;
}

struct ShareRange {
  size_t begin;
  size_t end;
};

// Share `share` (< share_count(n, grain, threads)) of [0, n): shares ascend with their index.
inline ShareRange share_range(size_t n, size_t grain, int threads, size_t share) {
  const size_t shares = share_count(n, grain, threads);
  if (grain == 0) grain = 1;
  const size_t unit = grain / kShareUnitsPerGrain > 0 ? grain / kShareUnitsPerGrain : 1;
  const size_t units = n / unit + (n % unit != 0 ? 1 : 0);  // the last unit may be short
  // units * share <= n * threads: no overflow for any n of a real tensor (n < 2^56).
  const size_t u0 = units * share / shares, u1 = units * (share + 1) / shares;
  const size_t begin = u0 * unit, end = u1 * unit;
  return {begin < n ? begin : n, end < n ? end : n};
}

// Runs fn over [0, n) on the runner, or inline (one range) when runner is null.
inline void parallel_for(TaskRunner* runner, size_t n, size_t grain, RangeFn fn) {
  if (runner == nullptr) {
    if (n > 0) fn(0, n);
    return;
  }
  runner->parallel_for(n, grain, fn);
}

inline int threads_of(const TaskRunner* runner) { return runner == nullptr ? 1 : runner->threads(); }

// ---------------------------------------------------------------- task-splitting policy
// Work is split at two levels: memory-bound element-wise ops hand out ranges of about
// kElementGrain values; compute-bound operators (binary convolution) cut their work into
// kTasksPerThread tasks per thread so that uneven tasks still balance.

// Values per task for memory-bound element-wise work (a few microseconds): handing a smaller
// task to another thread costs more than it saves, and on a loaded machine far more (the other
// thread may first have to be scheduled).
constexpr size_t kElementGrain = 16384;

// The grain, in rows of `row_values` values, that gives each task about kElementGrain values.
inline size_t element_grain_rows(size_t row_values) {
  return row_values >= kElementGrain ? 1 : kElementGrain / (row_values == 0 ? 1 : row_values);
}

// Compute-bound operators: tasks per thread with a runner, for balance.
constexpr int kTasksPerThread = 4;

// The fewest tasks a compute-bound operator should cut its work into on `runner`.
inline int64_t min_tasks(const TaskRunner* runner) {
  return runner == nullptr ? 1 : int64_t{kTasksPerThread} * runner->threads();
}

// ---------------------------------------------------------------- per-op work threshold
// An op whose work (Node::work: values touched, one per float read or written or per
// kFloatMacsPerValue float multiply-adds) is below kMinParallelWork runs on the calling thread only,
// whatever the session's thread count: waking, and on a loaded machine waiting for, a second thread
// costs more than it saves on such an op. 16384: in `bench/thread_threshold.py --min-work 0 8192 16384
// 32768 65536` (shipped models, batch 1, AVX2, 2 cores) no model ran slower with 2 threads than with 1
// at 8192 to 65536, and 65536 gave up most of the gain of the binary-weight and ternary models
// (1.75x -> 1.00x) and of reactnet-fmnist (1.61x -> 1.29x); 16384 keeps them. The environment
// variable XNORINFER_MIN_PARALLEL_WORK overrides it per session (0: every op uses every thread).
// Which thread computes a value never changes it, so this changes no result.
constexpr double kMinParallelWork = 16384.0;
// Below this work an op also runs on the calling thread when the pool's workers have gone to sleep
// (no parallel op for a while): waking them costs more than such an op saves.
constexpr double kMinWakeWork = 4 * kMinParallelWork;
constexpr double kFloatMacsPerValue = 8.0;

}  // namespace xnor

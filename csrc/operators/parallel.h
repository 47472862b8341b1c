// What an operator needs from threads: a TaskRunner that splits [0, n) into ranges, and the one
// task-splitting policy every operator follows. The runtime's ThreadPool (runtime/thread_pool.h)
// is the TaskRunner; operators never see it, so this folder depends on nothing above it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace xnor {

// A non-owning reference to a callable fn(begin, end) (RangeFn) or fn(begin, end, slot)
// (SlotRangeFn). Unlike std::function it never allocates, so running a graph allocates nothing;
// the callable must outlive the call (parallel_for blocks until every range is done).
template <typename Signature>
class FnRef;
template <typename... Args>
class FnRef<void(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FnRef>>>
  FnRef(F&& fn)  // NOLINT: implicit, so that lambdas pass straight to parallel_for
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(fn)))),
        call_(&invoke<std::remove_reference_t<F>>) {}
  void operator()(Args... args) const { call_(object_, args...); }

 private:
  template <typename F>
  static void invoke(void* object, Args... args) {
    (*static_cast<F*>(object))(args...);
  }
  void* object_;
  void (*call_)(void*, Args...);
};
using RangeFn = FnRef<void(size_t, size_t)>;
using SlotRangeFn = FnRef<void(size_t, size_t, int)>;

// ---------------------------------------------------------------- how [0, n) is split
// `grain` is the least work worth a share of its own: [0, n) goes to min(threads, ceil(n / grain))
// shares of equal size, to within one unit of max(1, grain / kShareUnitsPerGrain) (each boundary
// is a multiple of the unit, and the shares differ by at most one unit). Equal shares matter: cut
// into whole grains, 25088 values at grain 16384 were 16384 + 8704, and the op took as long on 2
// threads as the larger share (1.5x instead of 2x). The unit keeps boundaries off the middle of a
// few values (element-wise ops: 256 floats, 1 KiB) and rows whole (ranges of rows).
//
// Each share is cut into up to kChunksPerShare equal chunks (whole units). A share's chunks run
// on its own thread, front to back, unless that thread falls behind: a thread done with its own
// share takes chunks from the back of the others'. Equal shares do not run equally fast inside a
// model: a thread whose part of the input (or of the output's cache lines) sits in the other
// core's cache runs its share up to 1.6x slower (ReActNet-A's stride-2 binary convs: 312 vs 494
// us), and the op waited for it.
constexpr size_t kShareUnitsPerGrain = 64;
constexpr size_t kChunksPerShare = 8;

struct ShareRange {
  size_t begin;
  size_t end;
};

// How [0, n) is cut: `shares` shares of `per_share` chunks each, of whole `unit`s.
struct SplitPlan {
  size_t n = 0, unit = 1, units = 0, shares = 0, per_share = 0;
  size_t chunks() const { return shares * per_share; }
  // Chunk c (< chunks()) of [0, n): chunks ascend with their index, shares' chunks are consecutive.
  ShareRange chunk(size_t c) const {
    // units * c <= n * chunks: no overflow for any n of a real tensor (n < 2^50).
    const size_t begin = units * c / chunks() * unit, end = units * (c + 1) / chunks() * unit;
    return {begin < n ? begin : n, end < n ? end : n};
  }
};

inline SplitPlan split_plan(size_t n, size_t grain, int threads) {
  SplitPlan p;
  p.n = n;
  if (n == 0) return p;
  if (grain == 0) grain = 1;
  p.unit = grain / kShareUnitsPerGrain > 0 ? grain / kShareUnitsPerGrain : 1;
  p.units = n / p.unit + (n % p.unit != 0 ? 1 : 0);  // the last unit may be short
  const size_t grains = n / grain + (n % grain != 0 ? 1 : 0);
  const size_t t = threads < 1 ? 1 : static_cast<size_t>(threads);
  p.shares = grains < t ? grains : t;  // <= units, as unit <= grain
  const size_t per = p.units / p.shares;
  p.per_share = per < kChunksPerShare ? per : kChunksPerShare;
  return p;
}

// The shares that [0, n) is split into on `threads` threads (0 when n == 0).
inline size_t share_count(size_t n, size_t grain, int threads) { return split_plan(n, grain, threads).shares; }

// Share `share` (< share_count(n, grain, threads)) of [0, n): shares ascend with their index.
inline ShareRange share_range(size_t n, size_t grain, int threads, size_t share) {
  const SplitPlan p = split_plan(n, grain, threads);
  return {p.chunk(share * p.per_share).begin, p.chunk((share + 1) * p.per_share - 1).end};
}

class TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // Threads that share the work (the calling thread included), >= 1.
  virtual int threads() const = 0;
  // Calls fn(begin, end, slot) once on each chunk of split_plan(n, grain, threads()), on some
  // thread; `slot` (< threads()) names the thread: calls with one slot never overlap, so a slot
  // can own scratch memory. A thread may get several chunks. Chunks are deterministic: which
  // thread runs one never changes what it computes. Blocks until every chunk is done.
  virtual void parallel_for_slots(size_t n, size_t grain, SlotRangeFn fn) = 0;
  // parallel_for_slots without the slot.
  void parallel_for(size_t n, size_t grain, RangeFn fn) {
    auto ranges = [&fn](size_t begin, size_t end, int) { fn(begin, end); };
    parallel_for_slots(n, grain, ranges);
  }
};

// Runs fn over [0, n) on the runner, or inline (one range) when runner is null.
inline void parallel_for(TaskRunner* runner, size_t n, size_t grain, RangeFn fn) {
  if (runner == nullptr) {
    if (n > 0) fn(0, n);
    return;
  }
  runner->parallel_for(n, grain, fn);
}

// Runs fn over [0, n) on the runner, or inline (one range, slot 0) when runner is null.
inline void parallel_for_slots(TaskRunner* runner, size_t n, size_t grain, SlotRangeFn fn) {
  if (runner == nullptr) {
    if (n > 0) fn(0, n, 0);
    return;
  }
  runner->parallel_for_slots(n, grain, fn);
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

// Compute-bound operators: tasks per thread with a runner, for balance: a thread's share is cut
// into up to kChunksPerShare chunks, each of whole tasks, and the chunks balance the threads.
constexpr int kTasksPerThread = 2 * static_cast<int>(kChunksPerShare);

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

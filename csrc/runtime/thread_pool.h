// A fixed pool of worker threads for data-parallel kernels.
//
// parallel_for splits [0, n) into contiguous, deterministic ranges, one per
// thread, so every output element is computed by exactly one thread in the
// same way whatever the thread count. The calling thread is worker 0.
//
// fork() copies the pool into the child but not its worker threads: the pool
// remembers the process that started them (forked() is true in a child), runs
// parallel_for inline there instead of waiting forever, and its owner (the
// Session) starts a new pool in the child.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <mutex>
#include <thread>
#include <vector>

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
  static void invoke(void* object, size_t begin, size_t end) { (*static_cast<F*>(object))(begin, end); }
  void* object_;
  void (*call_)(void*, size_t, size_t);
};

class ThreadPool {
 public:
  // threads >= 1; threads - 1 workers are started.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // True in a process forked after this pool started: its workers do not exist here.
  bool forked() const;

  // Calls fn(begin, end) on disjoint ranges that cover [0, n); ranges are
  // multiples of `grain` except the last. Blocks until all are done. Not
  // reentrant: one parallel_for at a time per pool (guarded by a mutex).
  void parallel_for(size_t n, size_t grain, RangeFn fn);

 private:
  void worker_loop(int index);
  void run_share(int index);

  pid_t owner_pid_;  // the process whose threads the workers are
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // serialises callers of parallel_for
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stopping_ = false;
  // The job of the current generation (valid while pending_ > 0).
  const RangeFn* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
};

// Runs fn over [0, n) on the pool, or inline when pool is null.
void parallel_for(ThreadPool* pool, size_t n, size_t grain, RangeFn fn);

// Values per task for memory-bound element-wise work (a few microseconds): handing a smaller
// task to another thread costs more than it saves, and on a loaded machine far more (the other
// thread may first have to be scheduled).
constexpr size_t kElementGrain = 16384;

// The grain, in rows of `row_values` values, that gives each task about kElementGrain values.
inline size_t element_grain_rows(size_t row_values) {
  return row_values >= kElementGrain ? 1 : kElementGrain / (row_values == 0 ? 1 : row_values);
}

}  // namespace xnor

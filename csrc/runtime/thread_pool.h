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
#include <mutex>
#include <thread>
#include <vector>

#include "operators/parallel.h"

namespace xnor {

class ThreadPool final : public TaskRunner {
 public:
  // threads >= 1; threads - 1 workers are started.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const override { return static_cast<int>(workers_.size()) + 1; }
  // True in a process forked after this pool started: its workers do not exist here.
  bool forked() const;
  // True when every worker has stopped spinning and sleeps: a parallel_for must wake them
  // (a system call, and on a busy machine a worker that may first take the caller's core).
  bool asleep() const { return sleeping_.load(std::memory_order_relaxed) == static_cast<int>(workers_.size()); }

  // Calls fn(begin, end) on disjoint ranges that cover [0, n); ranges are
  // multiples of `grain` except the last. Blocks until all are done. Not
  // reentrant: one parallel_for at a time per pool (guarded by a mutex).
  void parallel_for(size_t n, size_t grain, RangeFn fn) override;

 private:
  void worker_loop(int index);
  void run_share(int index);
  // Claims and runs shares of the current job until none is left.
  void run_claimed_shares();

  pid_t owner_pid_;  // the process whose threads the workers are
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // serialises callers of parallel_for
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};     // shares of the current job not yet finished
  std::atomic<int> next_share_{0};  // the next share to claim; >= threads() when all are claimed
  std::atomic<int> sleeping_{0};    // workers waiting on wake_
  bool stopping_ = false;
  // The job of the current generation (valid while pending_ > 0).
  const RangeFn* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
};

}  // namespace xnor

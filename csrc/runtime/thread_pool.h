// A fixed pool of worker threads for data-parallel kernels.
//
// parallel_for splits [0, n) into contiguous, deterministic ranges, one per
// thread (operators/parallel.h share_range), so every output element is
// computed by exactly one thread in the same way whatever the thread count.
// The calling thread is worker 0. Share i runs on thread i unless thread i
// has not started it when another thread is free (then that thread takes it):
// consecutive ops split their tensors alike, so a thread finds the part of its
// input that it wrote itself in its own core's cache.
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

  // Calls fn(begin, end) on the share_range()s of [0, n). Blocks until all are
  // done. Not reentrant: one parallel_for at a time per pool (guarded by a mutex).
  void parallel_for(size_t n, size_t grain, RangeFn fn) override;

 private:
  // A share's claim flag, alone on its cache line (threads claim their own share at once).
  struct alignas(64) Claim {
    std::atomic<int> taken{1};  // 0: share i of the current job is free to claim
  };
  void worker_loop(int index);
  void run_share(size_t share);
  // Runs share `self` of the current job unless another thread took it, then any share that no
  // thread has claimed yet.
  void run_claimed_shares(int self);

  pid_t owner_pid_;  // the process whose threads the workers are
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // serialises callers of parallel_for
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};   // shares of the current job not yet finished
  std::atomic<int> sleeping_{0};  // workers waiting on wake_
  bool stopping_ = false;
  std::unique_ptr<Claim[]> claims_;  // one per thread: the flag of share i of the current job
  // The job of the current generation (valid while pending_ > 0).
  const RangeFn* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
};

}  // namespace xnor

// A fixed pool of worker threads for data-parallel kernels.
//
// parallel_for splits [0, n) into contiguous, deterministic ranges, one per
// thread (operators/parallel.h share_range), so every output element is
// computed by exactly one thread in the same way whatever the thread count.
// The calling thread is worker 0. Share i runs on thread i, chunk by chunk,
// except the chunks that another thread, done with its own share, takes from its
// back: consecutive ops split their tensors alike, so a thread finds the part of
// its input that it wrote itself in its own core's cache, and a share that runs
// slower (or a worker not yet scheduled) still does not hold the op up.
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

  // TaskRunner::parallel_for_slots. Not reentrant: one job at a time per pool (guarded by a mutex).
  void parallel_for_slots(size_t n, size_t grain, SlotRangeFn fn) override;

 private:
  // The chunks of share i of the current job that no thread has claimed: [front, back), packed
  // as front | back << 32, alone on its cache line (each thread claims from its own share).
  struct alignas(64) Span {
    std::atomic<uint64_t> left{0};
  };
  static constexpr uint64_t kNone = ~uint64_t{0};
  void worker_loop(int index);
  // Claims the front (own share) or back (another's) chunk of share s; kNone when none is left.
  uint64_t claim(size_t s, bool front);
  // Runs the chunks of share `self` of the current job, then those of other shares that no
  // thread has claimed yet, from their back.
  void run_chunks(int self);

  pid_t owner_pid_;  // the process whose threads the workers are
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // serialises callers of parallel_for_slots
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};   // chunks of the current job not yet finished
  std::atomic<int> sleeping_{0};  // workers waiting on wake_
  bool stopping_ = false;
  std::unique_ptr<Span[]> spans_;  // one per thread: the unclaimed chunks of share i
  // The job of the current generation (valid while pending_ > 0).
  const SlotRangeFn* job_ = nullptr;
  SplitPlan job_plan_;
};

}  // namespace xnor

#include "runtime/thread_pool.h"

#include <unistd.h>

#include <stdexcept>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define XNOR_CPU_RELAX() _mm_pause()
#else
#define XNOR_CPU_RELAX() ((void)0)
#endif

namespace xnor {
namespace {
// Workers spin this many rounds (tens of microseconds) before sleeping: layers
// come back to back, and a condition-variable wake-up costs several microseconds.
constexpr int kSpinRounds = 2000;
}  // namespace

ThreadPool::ThreadPool(int threads) : owner_pid_(getpid()) {
  if (threads < 1) throw std::invalid_argument("ThreadPool needs at least 1 thread");
  claims_ = std::make_unique<Claim[]>(static_cast<size_t>(threads));
  workers_.reserve(static_cast<size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::forked() const { return getpid() != owner_pid_; }

void ThreadPool::run_claimed_shares(int self) {
  // Any thread may run any share: a worker that the OS has not scheduled yet (other processes on
  // the cores) leaves its share to whoever is free, instead of the caller spinning until it runs.
  // A share's range does not depend on who runs it, so results stay the same. Each thread first
  // takes its own share: the same thread then handles the same part of every tensor, op after op.
  const int shares = threads();
  for (int k = 0; k < shares; ++k) {
    const int i = (self + k) % shares;
    if (claims_[static_cast<size_t>(i)].taken.exchange(1, std::memory_order_acq_rel) != 0) continue;
    run_share(static_cast<size_t>(i));
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run_share(size_t share) {
  const ShareRange r = share_range(job_n_, job_grain_, threads(), share);
  if (r.begin < r.end) (*job_)(r.begin, r.end);
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinRounds) {
      XNOR_CPU_RELAX();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_.fetch_add(1, std::memory_order_relaxed);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleeping_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = generation_.load(std::memory_order_acquire);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
    }
    run_claimed_shares(index);
  }
}

void ThreadPool::parallel_for(size_t n, size_t grain, RangeFn fn) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  if (forked()) {
    // In a child of fork() the workers (and maybe this pool's locks) are the parent's: run
    // inline, which gives the same results. A Session starts a new pool there instead.
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  const size_t shares = share_count(n, grain, threads());
  if (shares <= 1) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_n_ = n;
    job_grain_ = grain;
    pending_.store(static_cast<int>(shares), std::memory_order_release);
    // After the job: a thread that claims a share sees it. Every flag is taken (1) between jobs.
    for (size_t i = 0; i < shares; ++i) claims_[i].taken.store(0, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_claimed_shares(0);
  // Only shares already started by another thread remain; give the core away while they finish
  // when spinning has not been enough (that thread may be waiting for this core).
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinRounds) {
      XNOR_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
}

}  // namespace xnor

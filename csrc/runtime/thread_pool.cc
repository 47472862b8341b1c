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
  spans_ = std::make_unique<Span[]>(static_cast<size_t>(threads));
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

uint64_t ThreadPool::claim(size_t s, bool front) {
  std::atomic<uint64_t>& left = spans_[s].left;
  uint64_t v = left.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t lo = v & 0xffffffffu, hi = v >> 32;
    if (lo >= hi) return kNone;
    const uint64_t next = front ? (lo + 1) | hi << 32 : lo | (hi - 1) << 32;
    // A claim that succeeds is one of the current job: a new job stores new spans (after its
    // fields) before it bumps the generation, and the exchange reads that store or a later one.
    if (left.compare_exchange_weak(v, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return front ? lo : hi - 1;
    }
  }
}

void ThreadPool::run_chunks(int self) {
  // Any thread may run any chunk: a worker that the OS has not scheduled yet (other processes on
  // the cores) leaves its share to whoever is free, instead of the caller spinning until it runs.
  // A chunk's range does not depend on who runs it, so results stay the same.
  const int count = threads();
  for (int k = 0; k < count; ++k) {
    const size_t s = static_cast<size_t>((self + k) % count);
    for (uint64_t c = claim(s, k == 0); c != kNone; c = claim(s, k == 0)) {
      const ShareRange r = job_plan_.chunk(static_cast<size_t>(c));
      (*job_)(r.begin, r.end, self);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
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
    run_chunks(index);
  }
}

void ThreadPool::parallel_for_slots(size_t n, size_t grain, SlotRangeFn fn) {
  if (n == 0) return;
  if (forked()) {
    // In a child of fork() the workers (and maybe this pool's locks) are the parent's: run
    // inline, which gives the same results. A Session starts a new pool in the child.
    fn(0, n, 0);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  const SplitPlan plan = split_plan(n, grain, threads());
  if (plan.shares <= 1) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_plan_ = plan;
    pending_.store(static_cast<int>(plan.chunks()), std::memory_order_release);
    // After the job: a thread that claims a chunk sees it. Every span is empty between jobs.
    const size_t per = plan.per_share;
    for (size_t s = 0; s < static_cast<size_t>(threads()); ++s) {
      const uint64_t lo = s < plan.shares ? s * per : 0, hi = s < plan.shares ? (s + 1) * per : 0;
      spans_[s].left.store(lo | hi << 32, std::memory_order_release);
    }
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_chunks(0);
  // Only chunks already started by another thread remain; give the core away while they finish
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

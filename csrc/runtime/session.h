// A loaded model ready to run: the validated file, the built graph, a
// thread pool owned by the session, and the memory plan of the last input
// shape (one arena, reused until the input shape changes). run() executes
// every op in one call. Calls are serialised by a mutex, so one Session may
// be shared between threads.
//
// The memory plan's total is known before anything is allocated: a plan above
// max_memory bytes is refused (MemoryLimitError naming the largest buffer),
// at load for the recorded input shape and at run for any other.
// After fork() the child's first run starts its own thread pool.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "operators/aligned_buffer.h"
#include "runtime/graph.h"
#include "runtime/isa.h"
#include "runtime/memory_plan.h"
#include "runtime/thread_pool.h"

namespace xnor {

// A memory plan above the session's limit. The message names the file, the
// input shape, the plan's bytes, the limit and the largest buffer.
class MemoryLimitError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Half of the physical memory (sysconf) or of the cgroup's memory limit when that is lower,
// in whole pages.
uint64_t default_max_memory();

class Session {
 public:
  // threads >= 1; max_memory > 0 bytes bounds every memory plan. Throws
  // std::invalid_argument on bad arguments, MemoryLimitError when the recorded
  // input shape's plan is above max_memory.
  // `graph` (usually Model::graph()) is shared: sessions only read it.
  Session(std::shared_ptr<const Graph> graph, int threads, uint64_t max_memory);

  const Graph& graph() const { return *graph_; }
  int threads() const { return threads_; }
  uint64_t max_memory() const { return max_memory_; }
  // Arena bytes of the memory plan for an NCHW input (n, c, h, w), computed
  // without allocating. Throws like prepare(), MemoryLimitError above max_memory().
  uint64_t planned_bytes(int64_t n, int64_t c, int64_t h, int64_t w) const;

  // Output shapes (NHWC or (N, F)) for an NCHW input (n, c, h, w); plans memory
  // for that shape. Throws std::invalid_argument on an input the graph cannot take.
  std::vector<Shape> prepare(int64_t n, int64_t c, int64_t h, int64_t w);
  // Runs on NCHW float input x (n, c, h, w); writes each graph output into
  // outputs[i] (sized as prepare() says). Call without the GIL.
  void run(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* const* outputs, Isa isa);

  // The same for a graph with any number of inputs of any rank: shapes[i] is graph input i as the
  // caller holds it (NCHW for a 4-D input, else the recorded order), all with the same batch N.
  std::vector<Shape> prepare(const Shape* shapes, size_t count);
  uint64_t planned_bytes(const Shape* shapes, size_t count) const;
  void run(const float* const* xs, const Shape* shapes, size_t count, float* const* outputs, Isa isa);
  std::vector<double> profile(const float* const* xs, const Shape* shapes, size_t count, float* const* outputs, Isa isa,
                              int runs);
  // run() `runs` times (runs >= 1) under one lock, timing every graph op with
  // std::chrono::steady_clock. Returns, per step of graph().steps() (execution
  // order), the wall seconds accumulated over all runs. Outputs are written as
  // by run() and are identical to it. Call without the GIL.
  std::vector<double> profile(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* const* outputs,
                              Isa isa, int runs);
  // Per step of graph().steps(): whether it runs on the session's threads (true) or on the calling
  // thread only (its Node::work below min_parallel_work()), for these inputs (as prepare() takes
  // them). All false for a one-thread session.
  std::vector<bool> parallel_steps(const Shape* shapes, size_t count) const;
  // The work threshold of parallel_steps(): kMinParallelWork, or XNORINFER_MIN_PARALLEL_WORK at construction.
  double min_parallel_work() const { return min_parallel_work_; }
  // Per step: the affine step fused into it (run as its GEMM epilogue), or -1.
  const std::vector<int>& fused_affine() const { return fused_affine_; }
  // Per step: the element-wise steps chained onto it (run on its rows as they complete), in order.
  const std::vector<std::vector<int>>& fused_chain() const { return fused_chain_; }

 private:
  // Fuses each sign op into the op that produces its float input where that op can
  // (Node::fuses_sign): fills fused_sign_ and fused_away_. XNORINFER_FUSE=0 turns fusion off,
  // XNORINFER_FUSE=sign keeps the sign fusion only.
  // Then fuses each affine op into the float conv2d/linear that produces its input (Node::fuses_affine)
  // where that affine has no fused sign: fills fused_affine_ (and fused_away_).
  // Last, chains element-wise steps (Node::runs_rows: residual add, PReLU, affine, each with its
  // fused sign) onto a float producer that hands out its complete rows (Node::fuses_rows: the
  // binary conv): fills fused_chain_ (and fused_away_).
  void plan_fusion();
  void plan_chains(const std::vector<int>& producer);  // the chains of plan_fusion; producer[t]: step or -1
  // After the fusion: a fused affine or chain link that is element-wise writes over its input when
  // nothing else reads that input (not a graph output either), so a conv -> add -> PReLU chain or a
  // stem conv -> batch norm writes one buffer instead of several. Fills buffer_.
  void plan_in_place();
  // The step that runs step i: i, or the producer that step i is fused into.
  std::vector<int> runs_in_step() const;
  // Whether step i runs on the pool for these tensor shapes (see parallel_steps).
  bool step_parallel(size_t i, const std::vector<Shape>& shapes, double scale = 1.0) const;
  struct StepIO {
    std::vector<const void*> in;
    std::vector<Shape> in_shapes;
    void* out = nullptr;
    void* workspace = nullptr;     // the node's scratch for this step, in the arena
    bool parallel = false;         // runs on the pool (step_parallel)
    bool wakes = false;            // parallel, and large enough to wake sleeping workers (kMinWakeWork)
    std::vector<ChainLink> chain;  // the fused element-wise steps run on this step's rows
  };
  struct Plan {
    std::vector<Shape> inputs;  // engine-layout input shapes (batch 1 for a per-image graph)
    std::vector<Shape> shapes;
    std::vector<StepIO> io;
    std::vector<void*> tensor_data;
    size_t arena_bytes = 0;
  };
  // Shapes, buffer requests and their placement for one input shape (nothing allocated).
  struct Layout {
    std::vector<Shape> shapes;
    std::vector<BufferRequest> requests;  // tensors (by index), then one workspace per step
    std::vector<bool> live;               // per tensor: owns a buffer
    MemoryPlan placement;
  };
  // Checks the caller's input shapes against the graph; returns the batch N.
  int64_t check_inputs(const Shape* shapes, size_t count) const;
  // The engine-layout shapes of one call of the graph (batch 1 for a per-image graph), into *out.
  void engine_inputs(const Shape* shapes, size_t count, std::vector<Shape>* out) const;
  Layout layout_for(const std::vector<Shape>& inputs) const;  // throws MemoryLimitError above max_memory_
  const Plan& plan_for(const std::vector<Shape>& inputs);     // caller holds mutex_
  // One execution; caller holds mutex_. With kProfile, adds each step's wall
  // seconds to op_seconds[i] (sized steps().size()); without, no clock is read.
  template <bool kProfile>
  void run_locked(const float* const* xs, const Shape* shapes, float* const* outputs, Isa isa, double* op_seconds);
  // One call of the graph on n images starting at image `first` of the caller's batch.
  template <bool kProfile>
  void run_images(RunContext& ctx, const Plan& p, const float* const* xs, int64_t n, float* const* outputs,
                  int64_t first, double* op_seconds);

  std::shared_ptr<const Graph> graph_;         // owns the file its parameters live in
  std::vector<int> fused_sign_;                // per step: the sign step fused into it, or -1
  std::vector<int> fused_affine_;              // per step: the affine step fused into it, or -1
  std::vector<std::vector<int>> fused_chain_;  // per step: the element-wise steps chained onto it, in order
  std::vector<int> buffer_;       // per tensor: the tensor whose planned buffer holds it (views, in-place outputs)
  std::vector<bool> fused_away_;  // per step: a sign, affine or chain link run by its producer (skipped)
  double min_parallel_work_;
  int threads_;
  uint64_t max_memory_;
  std::unique_ptr<ThreadPool> pool_;  // null for one thread
  std::mutex mutex_;
  Plan plan_;               // the plan of the last input shape
  std::vector<Shape> key_;  // scratch for plan_for's key (reused: no allocation per run)
  AlignedBytes arena_;      // plan_.arena_bytes or more
};

}  // namespace xnor

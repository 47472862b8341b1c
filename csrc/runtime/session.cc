#include "runtime/session.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "microkernels/dispatch.h"

namespace xnor {
namespace {
using Clock = std::chrono::steady_clock;

// "10077696000 bytes (9.39 GiB)"
std::string bytes_str(uint64_t bytes) {
  char human[32];
  std::snprintf(human, sizeof human, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return std::to_string(bytes) + " bytes (" + human + ")";
}
}  // namespace

uint64_t default_max_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  uint64_t memory =
      pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : uint64_t{8} << 30;
  // In a container the cgroup's limit is what the OOM killer enforces (v2, then v1; "max" or a
  // huge v1 value means none).
  for (const char* limit_file : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(limit_file);
    unsigned long long limit = 0;
    if (in >> limit && limit > 0 && limit < memory) memory = limit;
  }
  return memory / 2 / static_cast<uint64_t>(page > 0 ? page : 4096) * static_cast<uint64_t>(page > 0 ? page : 4096);
}

Session::Session(std::shared_ptr<const Graph> graph, int threads, uint64_t max_memory)
    : graph_(std::move(graph)), threads_(threads), max_memory_(max_memory) {
  if (!graph_) throw std::invalid_argument("Session: no graph");
  if (threads < 1 || threads > 1024) throw std::invalid_argument("threads must be between 1 and 1024");
  if (max_memory == 0) throw std::invalid_argument("max_memory must be a positive number of bytes");
  plan_fusion();
  // Refuse at load a model whose recorded input already needs more than the limit.
  const Shape in = graph_->input_nchw();
  layout_for(in.d[0], in.d[2], in.d[3]);
  if (threads > 1) pool_ = std::make_unique<ThreadPool>(threads);
}

void Session::plan_fusion() {
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  fused_sign_.assign(steps.size(), -1);
  fused_away_.assign(steps.size(), false);
  if (const char* fuse = std::getenv("XNORINFER_FUSE"); fuse != nullptr && std::string(fuse) == "0") return;
  std::vector<int> producer(tensors.size(), -1);
  for (size_t i = 0; i < steps.size(); ++i) {
    const Graph::Step& s = steps[i];
    if (s.node->sign_epilogue() != nullptr && s.inputs.size() == 1) {
      const int t = s.inputs[0];
      const int p = producer[static_cast<size_t>(t)];
      // The producer writes t itself (not a view) as f32, and packs for one sign op at most.
      if (p >= 0 && tensors[t].storage == t && tensors[t].dtype == DType::kF32 && steps[p].node->fuses_sign() &&
          fused_sign_[p] < 0 && tensors[s.output].storage == s.output) {
        fused_sign_[p] = static_cast<int>(i);
        fused_away_[i] = true;
      }
    }
    producer[static_cast<size_t>(s.output)] = static_cast<int>(i);
  }
}

void Session::check_input(int64_t n, int64_t c, int64_t h, int64_t w) const {
  const Shape want = graph_->input_nchw();
  if (n < 1 || c != want.d[1] || h < 1 || w < 1) {
    throw std::invalid_argument("input must be float32 NCHW (N, " + std::to_string(want.d[1]) +
                                ", H, W) with N >= 1, got (" + std::to_string(n) + ", " + std::to_string(c) + ", " +
                                std::to_string(h) + ", " + std::to_string(w) + ")");
  }
  if (graph_->per_image() && (h != want.d[2] || w != want.d[3])) {
    throw std::invalid_argument("this model runs at its recorded input size only: input must be float32 NCHW (N, " +
                                std::to_string(want.d[1]) + ", " + std::to_string(want.d[2]) + ", " +
                                std::to_string(want.d[3]) + "), got (" + std::to_string(n) + ", " + std::to_string(c) +
                                ", " + std::to_string(h) + ", " + std::to_string(w) + ")");
  }
}

Session::Layout Session::layout_for(int64_t n, int64_t h, int64_t w) const {
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  Layout l;
  l.shapes = graph_->infer(n, h, w);
  // Lifetimes per storage tensor: from its producer to its last reader (or the end for outputs).
  const int end = static_cast<int>(steps.size());
  std::vector<BufferRequest>& req = l.requests;
  req.resize(tensors.size());
  l.live.assign(tensors.size(), false);
  std::vector<int> producer(tensors.size(), -1);
  auto touch = [&](int t, int step) {
    const int s = tensors[t].storage;
    req[s].last = std::max(req[s].last, step);
  };
  const int in = graph_->input();
  l.live[in] = true;
  req[in] = {static_cast<size_t>(checked_bytes(l.shapes[in], DType::kF32, "graph input")), -1, -1};
  for (int i = 0; i < end; ++i) {
    for (int t : steps[i].inputs) touch(t, i);
    const int o = steps[i].output;
    if (tensors[o].storage == o) {
      l.live[o] = true;
      producer[o] = i;
      req[o] = {static_cast<size_t>(checked_bytes(l.shapes[o], tensors[o].dtype, tensors[o].name)), i, i};
    }
  }
  for (int t : graph_->outputs()) touch(t, end);
  // A fused sign's bits are written by its producer's step: they live from there.
  for (int i = 0; i < end; ++i)
    if (fused_sign_[i] >= 0) req[steps[fused_sign_[i]].output].first = i;
  // Each step's workspace lives during that step only, so it shares bytes with dead tensors.
  std::vector<Shape> in_shapes;
  for (int i = 0; i < end; ++i) {
    in_shapes.clear();
    for (int t : steps[i].inputs) in_shapes.push_back(l.shapes[t]);
    req.push_back({steps[i].node->workspace_bytes(in_shapes.data(), in_shapes.size(), threads_), i, i});
  }
  l.placement = plan_memory(req);
  if (l.placement.arena_bytes > max_memory_) {
    size_t largest = 0;
    for (size_t i = 1; i < req.size(); ++i)
      if (req[i].bytes > req[largest].bytes) largest = i;
    std::string what;
    if (largest < tensors.size()) {
      const int t = static_cast<int>(largest);
      what = "tensor '" + tensors[t].name + "' " + l.shapes[t].str();
      if (producer[t] >= 0) {
        const Node& node = *steps[static_cast<size_t>(producer[t])].node;
        what += ", the output of op '" + node.name() + "' (" + node.kind() + ")";
      }
    } else {
      const Node& node = *steps[largest - tensors.size()].node;
      what = "the workspace of op '" + node.name() + "' (" + node.kind() + ")";
    }
    throw MemoryLimitError(graph_->file().path() + ": input (" + std::to_string(n) + ", " +
                           std::to_string(graph_->input_nchw().d[1]) + ", " + std::to_string(h) + ", " +
                           std::to_string(w) + ") needs a memory plan of " + bytes_str(l.placement.arena_bytes) +
                           ", above the limit of " + bytes_str(max_memory_) + " (max_memory); the largest buffer is " +
                           what + " with " + bytes_str(req[largest].bytes));
  }
  return l;
}

uint64_t Session::planned_bytes(int64_t n, int64_t c, int64_t h, int64_t w) const {
  check_input(n, c, h, w);
  return layout_for(graph_->per_image() ? 1 : n, h, w).placement.arena_bytes;
}

const Session::Plan& Session::plan_for(int64_t n, int64_t h, int64_t w) {
  if (!plan_.io.empty() && plan_.n == n && plan_.h == h && plan_.w == w) return plan_;
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  Layout l = layout_for(n, h, w);
  const MemoryPlan& mp = l.placement;
  Plan p;
  p.n = n;
  p.h = h;
  p.w = w;
  p.shapes = std::move(l.shapes);
  p.arena_bytes = mp.arena_bytes;
  if (p.arena_bytes > arena_.size()) {
    plan_ = Plan();           // its pointers die with the old arena
    arena_ = AlignedBytes();  // freed before the larger one is allocated
    arena_ = AlignedBytes(p.arena_bytes);
  }
  p.tensor_data.assign(tensors.size(), nullptr);
  for (size_t t = 0; t < tensors.size(); ++t) {
    const int s = tensors[t].storage;
    if (l.live[s]) p.tensor_data[t] = arena_.data() + mp.offsets[s];
  }
  p.io.resize(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    StepIO& io = p.io[i];
    for (int t : steps[i].inputs) {
      io.in.push_back(p.tensor_data[t]);
      io.in_shapes.push_back(p.shapes[t]);
    }
    io.out = p.tensor_data[steps[i].output];
    const size_t ws = tensors.size() + i;
    if (l.requests[ws].bytes > 0) io.workspace = arena_.data() + mp.offsets[ws];
  }
  plan_ = std::move(p);
  return plan_;
}

std::vector<Shape> Session::prepare(int64_t n, int64_t c, int64_t h, int64_t w) {
  check_input(n, c, h, w);
  std::lock_guard<std::mutex> lock(mutex_);
  const Plan& p = plan_for(graph_->per_image() ? 1 : n, h, w);
  std::vector<Shape> out;
  for (int t : graph_->outputs()) {
    out.push_back(p.shapes[t]);
    out.back().d[0] = n;  // a per-image graph's outputs have batch 1 per call (Graph checks it)
  }
  return out;
}

void Session::run(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* const* outputs, Isa isa) {
  check_input(n, c, h, w);
  std::lock_guard<std::mutex> lock(mutex_);
  run_locked<false>(x, n, c, h, w, outputs, isa, nullptr);
}

std::vector<double> Session::profile(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* const* outputs,
                                     Isa isa, int runs) {
  if (runs < 1) throw std::invalid_argument("profile: runs must be >= 1, got " + std::to_string(runs));
  check_input(n, c, h, w);
  std::vector<double> op_seconds(graph_->steps().size(), 0.0);  // allocated once, before any timing
  std::lock_guard<std::mutex> lock(mutex_);
  for (int r = 0; r < runs; ++r) run_locked<true>(x, n, c, h, w, outputs, isa, op_seconds.data());
  return op_seconds;
}

template <bool kProfile>
void Session::run_locked(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* const* outputs, Isa isa,
                         double* op_seconds) {
  if (pool_ && pool_->forked()) {
    // fork() copied the pool but not its workers: the copy's threads and locks belong to the
    // parent, so it is left alone (never destroyed here) and this process starts its own.
    (void)pool_.release();
    pool_ = std::make_unique<ThreadPool>(threads_);
  }
  RunContext ctx{pool_.get(), isa, &elementwise_kernels(isa), &binary_kernels(isa)};
  // A per-image graph runs its images one at a time, each at batch 1.
  const int64_t batch = graph_->per_image() ? 1 : n;
  const Plan& p = plan_for(batch, h, w);
  const size_t pixels = static_cast<size_t>(h * w);
  const size_t channels = static_cast<size_t>(c);
  for (int64_t first = 0; first < n; first += batch) {
    run_images<kProfile>(ctx, p, x + static_cast<size_t>(first) * pixels * channels, batch, channels, pixels, outputs,
                         first, op_seconds);
  }
}

template <bool kProfile>
void Session::run_images(RunContext& ctx, const Plan& p, const float* x, int64_t n, size_t channels, size_t pixels,
                         float* const* outputs, int64_t first, double* op_seconds) {
  // NCHW -> NHWC into the input buffer.
  float* in = static_cast<float*>(p.tensor_data[graph_->input()]);
  parallel_for(ctx.pool, static_cast<size_t>(n) * pixels, element_grain_rows(channels), [&](size_t b, size_t e) {
    while (b < e) {
      const size_t img = b / pixels, stop = std::min(e, (img + 1) * pixels);
      ctx.ew->nchw_to_nhwc(x + img * pixels * channels, channels, pixels, b - img * pixels, stop - img * pixels,
                           in + img * pixels * channels);
      b = stop;
    }
  });
  const auto& steps = graph_->steps();
  for (size_t i = 0; i < steps.size(); ++i) {
    if (fused_away_[i]) continue;  // its producer wrote the bits
    const StepIO& io = p.io[i];
    ctx.workspace = io.workspace;
    const int fused = fused_sign_[i];
    ctx.sign = fused < 0 ? nullptr : steps[fused].node->sign_epilogue();
    ctx.sign_out = fused < 0 ? nullptr : static_cast<uint64_t*>(p.io[fused].out);
    try {
      if constexpr (kProfile) {
        const Clock::time_point t0 = Clock::now();
        steps[i].node->run(ctx, io.in.data(), io.in_shapes.data(), io.in.size(), io.out, p.shapes[steps[i].output]);
        op_seconds[i] += std::chrono::duration<double>(Clock::now() - t0).count();
      } else {
        (void)op_seconds;
        steps[i].node->run(ctx, io.in.data(), io.in_shapes.data(), io.in.size(), io.out, p.shapes[steps[i].output]);
      }
    } catch (const std::exception& e) {
      throw std::runtime_error("op '" + steps[i].node->name() + "' (" + steps[i].node->kind() + "): " + e.what());
    }
  }
  const auto& outs = graph_->outputs();
  for (size_t k = 0; k < outs.size(); ++k) {
    const size_t count = static_cast<size_t>(p.shapes[outs[k]].elements());  // of these n images
    std::memcpy(outputs[k] + static_cast<size_t>(first) * (count / static_cast<size_t>(n)), p.tensor_data[outs[k]],
                count * sizeof(float));
  }
}

}  // namespace xnor

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

// "(1, 3, 32, 32)" for one input, "(1, 3, 32, 32), (1, 10)" for several (as the caller holds them).
std::string inputs_str(const std::vector<Shape>& engine) {
  std::string s;
  for (size_t i = 0; i < engine.size(); ++i) s += (i ? ", " : "") + Graph::user_shape(engine[i]).str();
  return s;
}

Shape nchw_shape(int64_t n, int64_t c, int64_t h, int64_t w) { return Shape{4, {n, c, h, w}}; }
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
    : graph_(std::move(graph)), min_parallel_work_(kMinParallelWork), threads_(threads), max_memory_(max_memory) {
  if (!graph_) throw std::invalid_argument("Session: no graph");
  if (threads < 1 || threads > 1024) throw std::invalid_argument("threads must be between 1 and 1024");
  if (max_memory == 0) throw std::invalid_argument("max_memory must be a positive number of bytes");
  if (const char* env = std::getenv("XNORINFER_MIN_PARALLEL_WORK"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end == env || *end != '\0' || !(v >= 0.0) || v > 1e18) {
      throw std::invalid_argument(std::string("XNORINFER_MIN_PARALLEL_WORK must be a number >= 0, got '") + env + "'");
    }
    min_parallel_work_ = v;
  }
  plan_fusion();
  // Refuse at load a model whose recorded input already needs more than the limit.
  std::vector<Shape> recorded;
  for (int t : graph_->inputs()) recorded.push_back(graph_->tensors()[t].declared);
  layout_for(recorded);
  if (threads > 1) pool_ = std::make_unique<ThreadPool>(threads);
}

void Session::plan_fusion() {
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  fused_sign_.assign(steps.size(), -1);
  fused_affine_.assign(steps.size(), -1);
  fused_chain_.assign(steps.size(), {});
  fused_away_.assign(steps.size(), false);
  // XNORINFER_FUSE=0: no fusion; =sign: sign fusion only (no affine epilogues, no chains).
  const char* fuse = std::getenv("XNORINFER_FUSE");
  if (fuse != nullptr && std::string(fuse) == "0") {
    plan_in_place();  // views only: nothing is fused
    return;
  }
  const bool fuse_affine = fuse == nullptr || std::string(fuse) != "sign";
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
  // Affine ops after a float conv/linear (batch norm after the stem): the producer writes its own
  // output as before and, block by block, the affine op's output from it.
  for (size_t i = 0; fuse_affine && i < steps.size(); ++i) {
    const Graph::Step& s = steps[i];
    if (s.node->affine_epilogue() == nullptr || s.inputs.size() != 1 || fused_sign_[i] >= 0) continue;
    const int t = s.inputs[0];
    const int p = producer[static_cast<size_t>(t)];
    if (p >= 0 && tensors[t].storage == t && tensors[t].dtype == DType::kF32 && steps[p].node->fuses_affine() &&
        fused_affine_[p] < 0 && fused_sign_[p] < 0 && tensors[s.output].storage == s.output) {
      fused_affine_[p] = static_cast<int>(i);
      fused_away_[i] = true;
    }
  }
  if (fuse_affine) plan_chains(producer);
  plan_in_place();
}

void Session::plan_in_place() {
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  std::vector<int> readers(tensors.size(), 0);
  for (const Graph::Step& s : steps) {
    for (size_t k = 0; k < s.inputs.size(); ++k) {
      const int t = s.inputs[k];
      if (std::find(s.inputs.begin(), s.inputs.begin() + static_cast<std::ptrdiff_t>(k), t) == s.inputs.begin() + k)
        ++readers[static_cast<size_t>(t)];
    }
  }
  for (int t : graph_->outputs()) ++readers[static_cast<size_t>(t)];
  // overwrites[i]: the input tensor that step i writes over, or -1.
  std::vector<int> overwrites(steps.size(), -1);
  auto consider = [&](int step, int input) {
    const Graph::Step& s = steps[static_cast<size_t>(step)];
    if (s.node->element_wise() && readers[static_cast<size_t>(input)] == 1 && tensors[input].storage == input &&
        tensors[input].dtype == DType::kF32 && tensors[s.output].storage == s.output &&
        tensors[s.output].dtype == DType::kF32) {
      overwrites[static_cast<size_t>(step)] = input;
    }
  };
  for (size_t p = 0; p < steps.size(); ++p) {
    if (fused_affine_[p] >= 0) consider(fused_affine_[p], steps[p].output);
    int tail = steps[p].output;
    for (int link : fused_chain_[p]) {
      consider(link, tail);
      tail = steps[static_cast<size_t>(link)].output;
    }
  }
  buffer_.resize(tensors.size());
  for (size_t t = 0; t < tensors.size(); ++t) buffer_[t] = static_cast<int>(t);
  for (size_t i = 0; i < steps.size(); ++i) {  // in step order: an input's buffer is known first
    const int o = steps[i].output;
    if (overwrites[i] >= 0) {
      buffer_[static_cast<size_t>(o)] = buffer_[static_cast<size_t>(overwrites[i])];
    } else if (tensors[o].storage != o) {
      buffer_[static_cast<size_t>(o)] = buffer_[static_cast<size_t>(tensors[o].storage)];
    }
  }
}

void Session::plan_chains(const std::vector<int>& producer) {
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  std::vector<std::vector<int>> readers(tensors.size());  // ascending step order
  for (size_t i = 0; i < steps.size(); ++i) {
    for (int t : steps[i].inputs) readers[static_cast<size_t>(t)].push_back(static_cast<int>(i));
  }
  auto owns_f32 = [&](int t) { return tensors[t].storage == t && tensors[t].dtype == DType::kF32; };
  for (size_t p = 0; p < steps.size(); ++p) {
    if (!steps[p].node->fuses_rows() || fused_away_[p] || !owns_f32(steps[p].output)) continue;
    int tail = steps[p].output, after = static_cast<int>(p);
    std::vector<int> made = {tail};  // the chain's outputs so far
    // Rows of t are complete when the chain's rows are handed out: made before p, or by the chain.
    auto ready = [&](int t) {
      return producer[static_cast<size_t>(t)] < static_cast<int>(p) ||
             std::find(made.begin(), made.end(), t) != made.end();
    };
    for (;;) {
      // The first later reader of the tail, if it is element-wise on rows whose every input is
      // complete by then (made before the producer, or by the chain itself).
      const std::vector<int>& r = readers[static_cast<size_t>(tail)];
      const auto next = std::upper_bound(r.begin(), r.end(), after);
      if (next == r.end()) break;
      const Graph::Step& e = steps[static_cast<size_t>(*next)];
      bool ok = e.node->runs_rows() && !fused_away_[*next] && fused_affine_[*next] < 0 && owns_f32(e.output);
      for (int t : e.inputs) ok = ok && owns_f32(t) && ready(t);
      if (!ok) break;
      fused_chain_[p].push_back(*next);
      fused_away_[*next] = true;
      tail = e.output;
      after = *next;
      made.push_back(tail);
    }
  }
}

std::vector<int> Session::runs_in_step() const {
  std::vector<int> at(graph_->steps().size());
  for (size_t i = 0; i < at.size(); ++i) at[i] = static_cast<int>(i);
  for (size_t i = 0; i < at.size(); ++i) {
    if (fused_sign_[i] >= 0) at[fused_sign_[i]] = static_cast<int>(i);
    if (fused_affine_[i] >= 0) at[fused_affine_[i]] = static_cast<int>(i);
  }
  // A chain link runs in its producer, and so does the sign fused into the link.
  for (size_t i = 0; i < at.size(); ++i) {
    for (int link : fused_chain_[i]) {
      at[link] = static_cast<int>(i);
      if (fused_sign_[link] >= 0) at[fused_sign_[link]] = static_cast<int>(i);
    }
  }
  return at;
}

bool Session::step_parallel(size_t i, const std::vector<Shape>& shapes, double scale) const {
  if (threads_ < 2) return false;
  const auto& steps = graph_->steps();
  auto work_of = [&](size_t step) {
    std::vector<Shape> in;
    for (int t : steps[step].inputs) in.push_back(shapes[static_cast<size_t>(t)]);
    return steps[step].node->work(in.data(), in.size(), shapes[static_cast<size_t>(steps[step].output)]);
  };
  double work = work_of(i);
  if (fused_sign_[i] >= 0) work += work_of(static_cast<size_t>(fused_sign_[i]));
  if (fused_affine_[i] >= 0) work += work_of(static_cast<size_t>(fused_affine_[i]));
  for (int link : fused_chain_[i]) {
    work += work_of(static_cast<size_t>(link));
    if (fused_sign_[link] >= 0) work += work_of(static_cast<size_t>(fused_sign_[link]));
  }
  return work >= min_parallel_work_ * scale;
}

std::vector<bool> Session::parallel_steps(const Shape* shapes, size_t count) const {
  check_inputs(shapes, count);
  std::vector<Shape> in;
  engine_inputs(shapes, count, &in);
  const std::vector<Shape> all = graph_->infer(in);
  std::vector<bool> out(graph_->steps().size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = !fused_away_[i] && step_parallel(i, all);
  return out;
}

int64_t Session::check_inputs(const Shape* shapes, size_t count) const {
  const std::vector<int>& ins = graph_->inputs();
  if (count != ins.size()) {
    throw std::invalid_argument("this model takes " + std::to_string(ins.size()) + " input" +
                                (ins.size() == 1 ? "" : "s") + ", got " + std::to_string(count));
  }
  const int64_t n = count ? shapes[0].d[0] : 0;
  for (size_t i = 0; i < count; ++i) {
    const Shape& got = shapes[i];
    const Shape want = graph_->input_user(i);
    if (want.rank == 4 && ins.size() == 1) {  // an image model: the messages of the single-input API
      if (got.rank != 4 || got.d[0] < 1 || got.d[1] != want.d[1] || got.d[2] < 1 || got.d[3] < 1) {
        throw std::invalid_argument("input must be float32 NCHW (N, " + std::to_string(want.d[1]) +
                                    ", H, W) with N >= 1, got " + got.str());
      }
      if (graph_->per_image() && (got.d[2] != want.d[2] || got.d[3] != want.d[3])) {
        throw std::invalid_argument("this model runs at its recorded input size only: input must be float32 NCHW (N, " +
                                    std::to_string(want.d[1]) + ", " + std::to_string(want.d[2]) + ", " +
                                    std::to_string(want.d[3]) + "), got " + got.str());
      }
      continue;
    }
    // Any other input: the recorded shape with any batch; a 4-D one (NCHW) also any H and W
    // unless the graph runs per image.
    bool ok = got.rank == want.rank && got.d[0] >= 1 && got.d[0] == n;
    const bool spatial = want.rank == 4 && !graph_->per_image();
    for (int a = 1; ok && a < want.rank; ++a) ok = got.d[a] == want.d[a] || (spatial && a >= 2 && got.d[a] >= 1);
    if (!ok) {  // (messages are built only here: a run allocates nothing)
      const std::string what =
          ins.size() == 1 ? "input" : "input " + std::to_string(i) + " ('" + graph_->tensors()[ins[i]].name + "')";
      std::string shown = "(N";
      for (int a = 1; a < want.rank; ++a) {
        shown += ", " + (spatial && a == 2 ? std::string("H") : spatial && a == 3 ? "W" : std::to_string(want.d[a]));
      }
      throw std::invalid_argument(what + " must be float32 " + (want.rank == 4 ? "NCHW " : "") + shown + ")" +
                                  (i ? " with the batch N of input 0 (" + std::to_string(n) + ")" : " with N >= 1") +
                                  ", got " + got.str());
    }
  }
  return n;
}

void Session::engine_inputs(const Shape* shapes, size_t count, std::vector<Shape>* out) const {
  out->resize(count);
  for (size_t i = 0; i < count; ++i) {
    (*out)[i] = Graph::engine_shape(shapes[i]);
    if (graph_->per_image()) (*out)[i].d[0] = 1;
  }
}

Session::Layout Session::layout_for(const std::vector<Shape>& inputs) const {
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  Layout l;
  l.shapes = graph_->infer(inputs);
  // Lifetimes per storage tensor: from its producer to its last reader (or the end for outputs).
  const int end = static_cast<int>(steps.size());
  std::vector<BufferRequest>& req = l.requests;
  req.resize(tensors.size());
  l.live.assign(tensors.size(), false);
  std::vector<int> producer(tensors.size(), -1);
  auto touch = [&](int t, int step) {
    const int s = buffer_[static_cast<size_t>(t)];
    req[s].last = std::max(req[s].last, step);
  };
  for (int in : graph_->inputs()) {
    l.live[in] = true;
    req[in] = {static_cast<size_t>(checked_bytes(l.shapes[in], DType::kF32, "graph input")), -1, -1};
  }
  for (int i = 0; i < end; ++i) {
    for (int t : steps[i].inputs) touch(t, i);
    const int o = steps[i].output;
    if (buffer_[static_cast<size_t>(o)] == o) {
      l.live[o] = true;
      producer[o] = i;
      req[o] = {static_cast<size_t>(checked_bytes(l.shapes[o], tensors[o].dtype, tensors[o].name)), i, i};
    }
  }
  for (int t : graph_->outputs()) touch(t, end);
  // A fused step's output is written by the step it runs in: it lives from there.
  const std::vector<int> at = runs_in_step();
  for (int i = 0; i < end; ++i) {
    if (at[i] != i && buffer_[static_cast<size_t>(steps[i].output)] == steps[i].output) {
      req[steps[i].output].first = at[i];
    }
  }
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
    throw MemoryLimitError(graph_->file().path() + ": input" + (inputs.size() == 1 ? " " : "s ") + inputs_str(inputs) +
                           " needs a memory plan of " + bytes_str(l.placement.arena_bytes) + ", above the limit of " +
                           bytes_str(max_memory_) + " (max_memory); the largest buffer is " + what + " with " +
                           bytes_str(req[largest].bytes));
  }
  return l;
}

uint64_t Session::planned_bytes(int64_t n, int64_t c, int64_t h, int64_t w) const {
  const Shape s = nchw_shape(n, c, h, w);
  return planned_bytes(&s, 1);
}

uint64_t Session::planned_bytes(const Shape* shapes, size_t count) const {
  check_inputs(shapes, count);
  std::vector<Shape> in;
  engine_inputs(shapes, count, &in);
  return layout_for(in).placement.arena_bytes;
}

const Session::Plan& Session::plan_for(const std::vector<Shape>& inputs) {
  if (!plan_.io.empty() && plan_.inputs == inputs) return plan_;
  const auto& tensors = graph_->tensors();
  const auto& steps = graph_->steps();
  Layout l = layout_for(inputs);
  const MemoryPlan& mp = l.placement;
  Plan p;
  p.inputs = inputs;
  p.shapes = std::move(l.shapes);
  p.arena_bytes = mp.arena_bytes;
  if (p.arena_bytes > arena_.size()) {
    plan_ = Plan();           // its pointers die with the old arena
    arena_ = AlignedBytes();  // freed before the larger one is allocated
    arena_ = AlignedBytes(p.arena_bytes);
  }
  p.tensor_data.assign(tensors.size(), nullptr);
  for (size_t t = 0; t < tensors.size(); ++t) {
    const int s = buffer_[t];
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
    io.parallel = step_parallel(i, p.shapes);
    io.wakes = io.parallel && step_parallel(i, p.shapes, kMinWakeWork / kMinParallelWork);
  }
  for (size_t i = 0; i < steps.size(); ++i) {  // after io is complete: links point into it
    for (int link : fused_chain_[i]) {
      const StepIO& l = p.io[static_cast<size_t>(link)];
      const int sign = fused_sign_[link];
      p.io[i].chain.push_back({steps[link].node.get(), l.in.data(), l.in_shapes.data(), l.in.size(), l.out,
                               p.shapes[static_cast<size_t>(steps[link].output)].channels(),
                               sign < 0 ? nullptr : steps[sign].node->sign_epilogue(),
                               sign < 0 ? nullptr : static_cast<uint64_t*>(p.io[sign].out)});
    }
  }
  plan_ = std::move(p);
  return plan_;
}

std::vector<Shape> Session::prepare(int64_t n, int64_t c, int64_t h, int64_t w) {
  const Shape s = nchw_shape(n, c, h, w);
  return prepare(&s, 1);
}

std::vector<Shape> Session::prepare(const Shape* shapes, size_t count) {
  const int64_t n = check_inputs(shapes, count);
  std::lock_guard<std::mutex> lock(mutex_);
  engine_inputs(shapes, count, &key_);
  const Plan& p = plan_for(key_);
  std::vector<Shape> out;
  for (int t : graph_->outputs()) {
    out.push_back(p.shapes[t]);
    // A per-image graph's outputs have batch 1 per call (Graph checks it), n calls fill n rows. A
    // batched graph's output keeps its inferred shape: its axis 0 is not always the batch (a gather
    // by a constant batch-1 index gives 1 row, as in PyTorch), and the caller must not be handed
    // rows that no op writes.
    if (graph_->per_image()) out.back().d[0] = n;
  }
  return out;
}

void Session::run(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* const* outputs, Isa isa) {
  const Shape s = nchw_shape(n, c, h, w);
  run(&x, &s, 1, outputs, isa);
}

void Session::run(const float* const* xs, const Shape* shapes, size_t count, float* const* outputs, Isa isa) {
  check_inputs(shapes, count);
  std::lock_guard<std::mutex> lock(mutex_);
  run_locked<false>(xs, shapes, outputs, isa, nullptr);
}

std::vector<double> Session::profile(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, float* const* outputs,
                                     Isa isa, int runs) {
  const Shape s = nchw_shape(n, c, h, w);
  return profile(&x, &s, 1, outputs, isa, runs);
}

std::vector<double> Session::profile(const float* const* xs, const Shape* shapes, size_t count, float* const* outputs,
                                     Isa isa, int runs) {
  if (runs < 1) throw std::invalid_argument("profile: runs must be >= 1, got " + std::to_string(runs));
  check_inputs(shapes, count);
  std::vector<double> op_seconds(graph_->steps().size(), 0.0);  // allocated once, before any timing
  std::lock_guard<std::mutex> lock(mutex_);
  for (int r = 0; r < runs; ++r) run_locked<true>(xs, shapes, outputs, isa, op_seconds.data());
  return op_seconds;
}

template <bool kProfile>
void Session::run_locked(const float* const* xs, const Shape* shapes, float* const* outputs, Isa isa,
                         double* op_seconds) {
  if (pool_ && pool_->forked()) {
    // fork() copied the pool but not its workers: the copy's threads and locks belong to the
    // parent, so it is left alone (never destroyed here) and this process starts its own.
    (void)pool_.release();
    pool_ = std::make_unique<ThreadPool>(threads_);
  }
  RunContext ctx{pool_.get(), isa, &elementwise_kernels(isa), &binary_kernels(isa)};
  // A per-image graph runs its images one at a time, each at batch 1.
  const int64_t n = shapes[0].d[0];
  const int64_t batch = graph_->per_image() ? 1 : n;
  engine_inputs(shapes, graph_->inputs().size(), &key_);
  const Plan& p = plan_for(key_);
  for (int64_t first = 0; first < n; first += batch) {
    run_images<kProfile>(ctx, p, xs, batch, outputs, first, op_seconds);
  }
}

template <bool kProfile>
void Session::run_images(RunContext& ctx, const Plan& p, const float* const* xs, int64_t n, float* const* outputs,
                         int64_t first, double* op_seconds) {
  const std::vector<int>& ins = graph_->inputs();
  for (size_t k = 0; k < ins.size(); ++k) {
    const Shape& s = p.inputs[k];  // engine layout, batch n
    const size_t item = static_cast<size_t>(s.elements() / s.d[0]);
    const float* x = xs[k] + static_cast<size_t>(first) * item;
    float* in = static_cast<float*>(p.tensor_data[ins[k]]);
    if (s.rank != 4) {  // any other rank: already in the engine's order
      std::memcpy(in, x, static_cast<size_t>(n) * item * sizeof(float));
      continue;
    }
    // NCHW -> NHWC into the input buffer.
    const size_t channels = static_cast<size_t>(s.d[3]), pixels = static_cast<size_t>(s.d[1] * s.d[2]);
    const double values = 2.0 * static_cast<double>(n) * static_cast<double>(pixels * channels);  // read + written
    ThreadPool* const pool = threads_ > 1 && values >= min_parallel_work_ ? pool_.get() : nullptr;
    parallel_for(pool, static_cast<size_t>(n) * pixels, element_grain_rows(channels), [&](size_t b, size_t e) {
      while (b < e) {
        const size_t img = b / pixels, stop = std::min(e, (img + 1) * pixels);
        ctx.ew->nchw_to_nhwc(x + img * pixels * channels, channels, pixels, b - img * pixels, stop - img * pixels,
                             in + img * pixels * channels);
        b = stop;
      }
    });
  }
  const auto& steps = graph_->steps();
  for (size_t i = 0; i < steps.size(); ++i) {
    if (fused_away_[i]) continue;  // its producer wrote the bits
    const StepIO& io = p.io[i];
    ctx.workspace = io.workspace;
    const int fused = fused_sign_[i];
    ctx.sign = fused < 0 ? nullptr : steps[fused].node->sign_epilogue();
    ctx.sign_out = fused < 0 ? nullptr : static_cast<uint64_t*>(p.io[fused].out);
    const int affine = fused_affine_[i];
    ctx.affine = affine < 0 ? nullptr : steps[affine].node->affine_epilogue();
    ctx.affine_out = affine < 0 ? nullptr : static_cast<float*>(p.io[affine].out);
    const RowChain chain{io.chain.data(), io.chain.size(), ctx.isa, ctx.ew};
    ctx.chain = io.chain.empty() ? nullptr : &chain;
    // Below the work threshold a step runs on this thread only (nodes see no pool).
    // A mid-size op does not wake sleeping workers (which thread runs a value never changes it).
    ctx.pool = io.parallel && (io.wakes || !pool_->asleep()) ? pool_.get() : nullptr;
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

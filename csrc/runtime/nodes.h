// Graph operators: one Node per op of the IR (docs/ir.md), built once at load
// from the op's attributes and parameters (weights are packed/copied into the
// kernels' layouts there), then run any number of times on planned buffers.
// Each op kind is one file under runtime/nodes/; op_registry.h lists them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "microkernels/dispatch.h"
#include "microkernels/elementwise.h"
#include "runtime/graph_desc.h"
#include "runtime/isa.h"
#include "runtime/tensor_shape.h"
#include "runtime/thread_pool.h"

namespace xnor {

// A parameter array, already checked against its data section (size, dtype).
struct ParamView {
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  int64_t count = 0;
};

// A sign op fused into the op that produces its float input (Session, at plan time): the
// producer packs each block of rows it wrote while the block is still in cache, with the sign op's
// kernel and parameters, so the bits are the ones the sign op would have written.
struct SignEpilogue {
  const float* thresholds;  // [groups][channels]
  int64_t channels;
  int64_t groups;
  bool zero_is_minus;
};

// A per-channel affine op (folded batch norm, y = fma(x, scale[c], shift[c])) fused into the float
// conv/linear that produces its input (Session, at plan time): the producer applies it to each
// block of its output right after writing it, with the affine op's own kernel, into the affine
// op's output buffer, so the values are the ones the affine op would have written.
struct AffineEpilogue {
  const float* scale;  // [channels]
  const float* shift;  // [channels]
  int64_t channels;
};

class Node;
class BinaryConv2d;  // operators/bconv2d.h

// One element-wise step run inside the step that produces its input (Session, at plan time):
// its planned buffers and, when a sign op is fused into it, that sign's parameters and bits.
struct ChainLink {
  const Node* node;
  const void* const* in;
  const Shape* in_shapes;
  size_t count;
  void* out;
  int64_t out_channels;
  const SignEpilogue* sign = nullptr;
  uint64_t* sign_out = nullptr;
};

// The element-wise steps fused after a float producer (binary conv + residual add + PReLU +
// sign): the producer hands each run of complete output rows (pixels) to the links in order,
// while the rows are in cache; every link writes its own output, so later readers see the same
// tensors as without fusion.
struct RowChain {
  const ChainLink* links;
  size_t count;
  Isa isa;
  const ElementwiseKernels* ew;
};

// Per-step context: the pool, the kernel tables of the chosen ISA, and the
// step's workspace (Node::workspace_bytes bytes, 64-byte aligned, from the plan).
struct RunContext {
  ThreadPool* pool;
  Isa isa;
  const ElementwiseKernels* ew;
  const BinaryKernels* bin;
  void* workspace = nullptr;
  // Set on a step whose output a sign op reads, when that sign is fused into it (fuses_sign()).
  const SignEpilogue* sign = nullptr;
  uint64_t* sign_out = nullptr;
  // Set on a step whose output an affine op reads, when that affine is fused into it (fuses_affine()).
  const AffineEpilogue* affine = nullptr;
  float* affine_out = nullptr;
  // Set on a step whose output starts a chain of fused element-wise steps (fuses_rows()).
  const RowChain* chain = nullptr;
};

class Node {
 public:
  Node(const OpDesc& op, std::vector<DType> in_types, DType out_type)
      : kind_(op.kind), name_(op.name), in_types_(std::move(in_types)), out_type_(out_type) {}
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& kind() const { return kind_; }
  const std::string& name() const { return name_; }
  DType in_type(size_t i) const { return in_types_.size() == 1 ? in_types_[0] : in_types_[i]; }
  DType out_type() const { return out_type_; }
  // Bytes the node holds beside the model's parameters (repacked weights, constants).
  virtual size_t held_bytes() const { return 0; }
  // The binary GEMM layer the op runs on (bconv2d, blinear), for reports of its engine
  // (XNORINFER_BGEMM); null for every other op.
  virtual const BinaryConv2d* binary_gemm() const { return nullptr; }
  // True when the output is a view of input 0's storage (flatten).
  virtual bool aliases_input() const { return false; }
  // True when run() honours ctx.sign (writes every output row through nodes::for_out_rows).
  virtual bool fuses_sign() const { return false; }
  // A sign op's parameters, for fusing it into its producer; null for every other op.
  virtual const SignEpilogue* sign_epilogue() const { return nullptr; }
  // True when run() honours ctx.affine (float conv2d / linear, through their GEMM epilogue).
  virtual bool fuses_affine() const { return false; }
  // An affine op's parameters, for fusing it into its producer; null for every other op.
  virtual const AffineEpilogue* affine_epilogue() const { return nullptr; }
  // True when run() honours ctx.chain: hands every output row to nodes::run_chain_rows once complete
  // (binary conv with float output, float conv).
  virtual bool fuses_rows() const { return false; }
  // True for an op whose output row r (pixel, NHWC) depends on row r of each input only (an
  // element-wise op, a concat along the channels): run_rows() then computes any run of rows.
  virtual bool runs_rows() const { return false; }
  // True when the output has input 0's shape and each output value is computed from the values at
  // the same position of the inputs only: the kernel may then write over the input it reads.
  virtual bool element_wise() const { return false; }
  // Rows [first, first + rows) of the output (runs_rows() ops only), on the calling thread.
  virtual void run_rows(const RunContext& /*ctx*/, const void* const* /*in*/, const Shape* /*in_shapes*/,
                        size_t /*count*/, void* /*out*/, int64_t /*first*/, int64_t /*rows*/) const {}
  // The work of one run for these shapes, in values touched (one float read or written, or eight
  // float multiply-adds of a GEMM). The session runs a step on the calling thread only when it
  // is below the threshold that pays for a second thread (operators/parallel.h kMinParallelWork).
  // Default: every input and output value once, plus, per output row, held_bytes() / 4 (a
  // binary conv/linear reads all its packed weights once per output pixel or row: 32 binary
  // multiply-adds per unit).
  virtual double work(const Shape* in, size_t count, const Shape& out) const {
    return values_touched(in, count, out) + static_cast<double>(out.rows()) * static_cast<double>(held_bytes()) / 4.0;
  }
  // Every input and output value once.
  static double values_touched(const Shape* in, size_t count, const Shape& out) {
    double values = static_cast<double>(out.elements());
    for (size_t i = 0; i < count; ++i) values += static_cast<double>(in[i].elements());
    return values;
  }

  // Output shape for these input shapes; throws std::invalid_argument naming the op.
  virtual Shape infer(const Shape* in, size_t count) const = 0;
  // Scratch bytes run() needs for these input shapes on `threads` threads; the
  // session plans them beside the tensors, so running allocates nothing.
  virtual size_t workspace_bytes(const Shape* /*in*/, size_t /*count*/, int /*threads*/) const { return 0; }
  // Runs on planned buffers (ctx.workspace holds workspace_bytes); allocates nothing.
  virtual void run(const RunContext& ctx, const void* const* in, const Shape* in_shapes, size_t count, void* out,
                   const Shape& out_shape) const = 0;

 protected:
  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::string kind_, name_;
  std::vector<DType> in_types_;  // one entry: every input has this type
  DType out_type_;
};

// Builds the node of `op`: finds its kind in the registry (op_registry.h), checks it against
// the kind's schema, then runs its factory. `in_channels` are the declared channel counts of
// its inputs; `per_image` says the graph runs per image (axis 0 need not be the batch). Throws
// std::invalid_argument naming the op on any bad attribute, parameter shape/dtype or input count.
std::unique_ptr<Node> make_node(const OpDesc& op, const std::map<std::string, ParamView>& params,
                                const std::vector<int64_t>& in_channels, bool per_image = false);

}  // namespace xnor

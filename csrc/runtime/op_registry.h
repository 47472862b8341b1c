// Every op kind the runtime runs: a const table of (schema, factory) registrations, one per
// kind, each defined in its node's file under runtime/nodes/. make_node() (nodes.h) finds the
// kind here, checks the op against the schema, then calls the factory.
//
// Adding an op: a file under runtime/nodes/ that defines `<kind>_schema` and `make_<kind>`, and
// its kind in XNOR_OP_KINDS below.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/graph_desc.h"
#include "runtime/nodes.h"
#include "runtime/op_schema.h"

namespace xnor {

// An op's attributes, parameters and input channel counts for its factory, already checked
// against the op's schema: required entries exist and every entry has its declared type or
// dtype. The semantic checks (ranges, shapes, values) are the factory's; fail() names the op.
class OpArgs {
 public:
  OpArgs(const OpDesc& op, const std::map<std::string, ParamView>& params, const std::vector<int64_t>& in_channels,
         bool per_image = false)
      : op_(op), params_(params), in_channels_(in_channels), per_image_(per_image) {}

  const OpDesc& op() const { return op_; }
  [[noreturn]] void fail(const std::string& what) const;

  bool has(const std::string& attr) const { return op_.attrs.count(attr) != 0; }
  // A list of two values in [0, kMaxKernel] (kernel, stride and padding sizes).
  std::pair<int, int> pair(const std::string& attr) const;
  int64_t integer(const std::string& attr) const { return op_.attrs.at(attr).i; }
  // A float attribute (a JSON integer is accepted).
  double number(const std::string& attr) const;
  bool boolean(const std::string& attr, bool fallback) const;
  std::string string(const std::string& attr, const std::string& fallback) const;
  // The parameter, or null when it is optional and absent; with `shape`, checked to have it.
  const ParamView* param(const std::string& name) const;
  const ParamView* param(const std::string& name, const std::vector<int64_t>& shape) const;
  // The declared channel count of input i.
  int64_t in_channels(size_t i) const { return in_channels_.at(i); }
  // True in a per-image graph (graph.h): axis 0 need not be the batch, so an op may mix along it.
  bool per_image() const { return per_image_; }

 private:
  const OpDesc& op_;
  const std::map<std::string, ParamView>& params_;
  const std::vector<int64_t>& in_channels_;
  bool per_image_;
};

using NodeFactory = std::unique_ptr<Node> (*)(const OpArgs& args);

struct OpRegistration {
  const OpSchema* schema;
  NodeFactory factory;
};

// The registration of `kind`, or null when no such op exists.
const OpRegistration* find_op(const std::string& kind);
// Every registration, sorted by kind.
ConstSpan<OpRegistration> registered_ops();

// Throws std::invalid_argument ("op 'NAME' (KIND): ...") unless `op` fits `schema`: its input
// and output counts, every required attribute and parameter present, no unknown one, each
// attribute of its type and each parameter of its dtype.
void check_op(const OpSchema& schema, const OpDesc& op, const std::map<std::string, ParamView>& params);

// The op kinds, sorted; each has `<kind>_schema` and `make_<kind>` in namespace xnor::ops.
// clang-format off: one kind per line
#define XNOR_OP_KINDS(X) \
  X(abs) \
  X(adaptive_avgpool2d) \
  X(adaptive_maxpool2d) \
  X(add) \
  X(affine) \
  X(arg_reduce) \
  X(avgpool2d) \
  X(bconcat) \
  X(bconv2d) \
  X(bflatten) \
  X(binary) \
  X(bitplane) \
  X(blinear) \
  X(bmaxpool2d) \
  X(bwconv2d) \
  X(bwlinear) \
  X(cast_float) \
  X(compare) \
  X(concat) \
  X(constant) \
  X(conv2d) \
  X(conv_transpose2d) \
  X(cumsum) \
  X(elu) \
  X(erf) \
  X(exp) \
  X(expand) \
  X(flatten) \
  X(floor) \
  X(gather) \
  X(gelu) \
  X(global_avgpool) \
  X(hardsigmoid) \
  X(hardswish) \
  X(hardtanh) \
  X(leaky_relu) \
  X(linear) \
  X(log) \
  X(log_softmax) \
  X(matmul) \
  X(maxpool2d) \
  X(mul) \
  X(neg) \
  X(pad) \
  X(prelu) \
  X(reciprocal) \
  X(reduce) \
  X(relu) \
  X(reshape) \
  X(resize) \
  X(round) \
  X(rsqrt) \
  X(scatter) \
  X(sigmoid) \
  X(sign) \
  X(signum) \
  X(silu) \
  X(slice) \
  X(softmax) \
  X(sqrt) \
  X(take) \
  X(tanh) \
  X(tbconv2d) \
  X(tblinear) \
  X(topk) \
  X(transpose) \
  X(unpack) \
  X(where)
// clang-format on

namespace ops {
#define XNOR_DECLARE_OP(kind)          \
  extern const OpSchema kind##_schema; \
  std::unique_ptr<Node> make_##kind(const OpArgs& args);
XNOR_OP_KINDS(XNOR_DECLARE_OP)
#undef XNOR_DECLARE_OP
}  // namespace ops

}  // namespace xnor

#include "runtime/op_registry.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "runtime/nodes/node_util.h"

namespace xnor {

const char* attr_type_name(AttrType type) {
  switch (type) {
    case AttrType::kInt: return "int";
    case AttrType::kFloat: return "float";
    case AttrType::kBool: return "bool";
    case AttrType::kString: return "string";
    case AttrType::kInts: return "ints";
  }
  return "unknown";
}

const char* param_dtype_name(ParamDType dtype) {
  switch (dtype) {
    case ParamDType::kFloat32: return "float32";
    case ParamDType::kUint64: return "uint64";
    case ParamDType::kInt32: return "int32";
    case ParamDType::kUint8: return "uint8";
  }
  return "unknown";
}

namespace {

#define XNOR_REGISTER_OP(kind) OpRegistration{&ops::kind##_schema, &ops::make_##kind},
// Sorted by kind (XNOR_OP_KINDS is), so find_op can search it.
const OpRegistration kRegistrations[] = {XNOR_OP_KINDS(XNOR_REGISTER_OP)};
#undef XNOR_REGISTER_OP

[[noreturn]] void op_fail(const OpDesc& op, const std::string& what) {
  throw std::invalid_argument("op '" + op.name + "' (" + op.kind + "): " + what);
}

bool attr_has_type(const AttrValue& v, AttrType type) {
  switch (type) {
    case AttrType::kInt: return v.type == AttrValue::Type::kInt;
    case AttrType::kFloat: return v.type == AttrValue::Type::kFloat || v.type == AttrValue::Type::kInt;
    case AttrType::kBool: return v.type == AttrValue::Type::kBool;
    case AttrType::kString: return v.type == AttrValue::Type::kString;
    case AttrType::kInts: return v.type == AttrValue::Type::kInts;
  }
  return false;
}

const char* attr_type_phrase(AttrType type) {
  switch (type) {
    case AttrType::kInt: return "an integer";
    case AttrType::kFloat: return "a number";
    case AttrType::kBool: return "a boolean";
    case AttrType::kString: return "a string";
    case AttrType::kInts: return "a list of integers";
  }
  return "unknown";
}

}  // namespace

const OpRegistration* find_op(const std::string& kind) {
  const auto less = [](const OpRegistration& r, const std::string& k) { return k.compare(r.schema->name) > 0; };
  const OpRegistration* it = std::lower_bound(std::begin(kRegistrations), std::end(kRegistrations), kind, less);
  return it != std::end(kRegistrations) && kind == it->schema->name ? it : nullptr;
}

ConstSpan<OpRegistration> registered_ops() { return kRegistrations; }

void check_op(const OpSchema& schema, const OpDesc& op, const std::map<std::string, ParamView>& params) {
  const size_t inputs = op.inputs.size();
  if (inputs < static_cast<size_t>(schema.min_inputs) || inputs > static_cast<size_t>(schema.max_inputs)) {
    if (schema.min_inputs == schema.max_inputs) {
      op_fail(op, "takes " + std::to_string(schema.min_inputs) + " input(s), got " + std::to_string(inputs));
    }
    op_fail(op, "takes " + std::to_string(schema.min_inputs) + " to " + std::to_string(schema.max_inputs) +
                    " inputs, got " + std::to_string(inputs));
  }
  if (op.outputs.size() != 1) op_fail(op, "must have exactly one output");
  // Named variables, not structured bindings: a C++17 lambda cannot capture a binding (clang refuses).
  for (const auto& entry : op.attrs) {
    const std::string& key = entry.first;
    const AttrValue& value = entry.second;
    const AttrSchema* a =
        std::find_if(schema.attrs.begin(), schema.attrs.end(), [&](const AttrSchema& s) { return key == s.name; });
    if (a == schema.attrs.end()) op_fail(op, "unknown attribute '" + key + "'");
    if (!attr_has_type(value, a->type)) op_fail(op, "'" + key + "' must be " + attr_type_phrase(a->type));
  }
  for (const AttrSchema& a : schema.attrs) {
    if (a.required && op.attrs.count(a.name) == 0) op_fail(op, std::string("missing attribute '") + a.name + "'");
  }
  for (const auto& entry : params) {
    const std::string& key = entry.first;
    const ParamView& p = entry.second;
    const ParamSchema* s =
        std::find_if(schema.params.begin(), schema.params.end(), [&](const ParamSchema& s) { return key == s.name; });
    if (s == schema.params.end()) op_fail(op, "unknown parameter '" + key + "'");
    if (p.dtype != param_dtype_name(s->dtype)) {
      op_fail(op, "parameter '" + key + "' must be " + param_dtype_name(s->dtype) + ", got " + p.dtype);
    }
  }
  for (const ParamSchema& p : schema.params) {
    if (p.required && params.count(p.name) == 0) op_fail(op, std::string("missing parameter '") + p.name + "'");
  }
}

void Node::fail(const std::string& what) const {
  throw std::invalid_argument("op '" + name_ + "' (" + kind_ + "): " + what);
}

std::unique_ptr<Node> make_node(const OpDesc& op, const std::map<std::string, ParamView>& params,
                                const std::vector<int64_t>& in_channels, bool per_image) {
  const OpRegistration* reg = find_op(op.kind);
  if (reg == nullptr) op_fail(op, "unknown op kind");
  check_op(*reg->schema, op, params);
  return reg->factory(OpArgs(op, params, in_channels, per_image));
}

// ---------------------------------------------------------------- OpArgs

void OpArgs::fail(const std::string& what) const { op_fail(op_, what); }

std::pair<int, int> OpArgs::pair(const std::string& attr) const {
  const AttrValue& a = op_.attrs.at(attr);
  if (a.ints.size() != 2) fail("'" + attr + "' must be a list of two integers");
  for (int64_t v : a.ints) {
    if (v < 0 || v > nodes::kMaxKernel) fail("'" + attr + "' value " + std::to_string(v) + " is out of range");
  }
  return {static_cast<int>(a.ints[0]), static_cast<int>(a.ints[1])};
}

double OpArgs::number(const std::string& attr) const {
  const AttrValue& a = op_.attrs.at(attr);
  return a.type == AttrValue::Type::kInt ? static_cast<double>(a.i) : a.f;
}

bool OpArgs::boolean(const std::string& attr, bool fallback) const {
  auto it = op_.attrs.find(attr);
  return it == op_.attrs.end() ? fallback : it->second.b;
}

std::string OpArgs::string(const std::string& attr, const std::string& fallback) const {
  auto it = op_.attrs.find(attr);
  return it == op_.attrs.end() ? fallback : it->second.s;
}

const ParamView* OpArgs::param(const std::string& name) const {
  auto it = params_.find(name);
  return it == params_.end() ? nullptr : &it->second;
}

const ParamView* OpArgs::param(const std::string& name, const std::vector<int64_t>& shape) const {
  const ParamView* p = param(name);
  if (p != nullptr && p->shape != shape) {
    fail("parameter '" + name + "' must have shape " + nodes::shape_str(shape) + ", got " + nodes::shape_str(p->shape));
  }
  return p;
}

}  // namespace xnor

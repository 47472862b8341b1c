// The plain description of a graph that the runtime is built from: the
// .xbin JSON section as parsed and checked by describe() (csrc/runtime/model.cc).
// csrc/runtime/graph.cc still checks every reference, dtype, shape and size
// before it allocates or reads, so a GraphDesc built by hand is safe too.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/json.h"

namespace xnor {

// A JSON attribute value: an integer, a number, a boolean, a string or a list of integers.
struct AttrValue {
  enum class Type { kInt, kFloat, kBool, kString, kInts } type = Type::kInt;
  int64_t i = 0;
  double f = 0.0;
  bool b = false;
  std::string s;
  std::vector<int64_t> ints;
};

struct ParamDesc {
  int64_t section = -1;        // index of the data section holding the bytes
  std::string dtype;           // "float32" | "uint64" | "int32" | "uint8"
  std::vector<int64_t> shape;  // C order, little-endian
};

struct TensorDesc {
  std::string name;
  std::string dtype;  // "f32" | "bits"
  std::vector<int64_t> shape;
};

struct OpDesc {
  std::string kind;
  std::string name;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::map<std::string, AttrValue> attrs;
  std::map<std::string, ParamDesc> params;
  // The keys of attrs and params in file order (for readers that write the graph back).
  std::vector<std::string> attr_order, param_order;
};

struct GraphDesc {
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<TensorDesc> tensors;
  std::vector<OpDesc> ops;
  json::Value metadata = json::Value::object();  // the "metadata" object, members in file order
};

}  // namespace xnor

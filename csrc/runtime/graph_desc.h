// The plain description of a graph that the runtime is built from: the
// .xbin JSON section as parsed and checked by xnorinfer/xbin.py, handed over
// by the bindings. Nothing here is trusted: csrc/runtime/graph.cc checks
// every reference, dtype, shape and size again before it allocates or reads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

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
};

struct GraphDesc {
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<TensorDesc> tensors;
  std::vector<OpDesc> ops;
};

}  // namespace xnor

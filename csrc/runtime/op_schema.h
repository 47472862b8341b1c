// The declaration of an op kind: its input count, typed attributes and parameter dtypes, as the
// .xbin format allows them (docs/ir.md). The loader checks every op against its schema before the
// node is built (op_registry.h), so a node factory reads typed values without checking for them.
// Each schema is a const object in the op's file under runtime/nodes/.
#pragma once

#include <cstddef>

namespace xnor {

enum class AttrType { kInt, kFloat, kBool, kString, kInts };
enum class ParamDType { kFloat32, kUint64, kInt32, kUint8 };

// "int" | "float" | "bool" | "string" | "ints"
const char* attr_type_name(AttrType type);
// "float32" | "uint64" | "int32" | "uint8", as the .xbin records parameter dtypes
const char* param_dtype_name(ParamDType dtype);

// A read-only view of a const array (C++17 has no std::span).
template <typename T>
struct ConstSpan {
  const T* items = nullptr;
  size_t size = 0;
  constexpr ConstSpan() = default;
  template <size_t N>
  constexpr ConstSpan(const T (&array)[N]) : items(array), size(N) {}  // NOLINT: implicit from an array
  constexpr const T* begin() const { return items; }
  constexpr const T* end() const { return items + size; }
};

struct AttrSchema {
  const char* name;
  AttrType type;  // kFloat also accepts a JSON integer
  bool required;
};

struct ParamSchema {
  const char* name;
  ParamDType dtype;
  bool required;
};

struct OpSchema {
  const char* name;  // the op kind
  int min_inputs;
  int max_inputs;
  ConstSpan<AttrSchema> attrs;
  ConstSpan<ParamSchema> params;
};

}  // namespace xnor

// A small strict JSON reader (RFC 8259) for the .xbin graph section, so that a
// C++ program loads a model without Python or a third-party library.
//
// Strict: exactly one value with optional whitespace around it; no NaN/Infinity,
// comments, trailing commas, leading zeros, byte order mark or control characters
// in strings; UTF-8 checked (no overlongs, surrogates or code points above
// U+10FFFF, \u escapes paired correctly); duplicate object keys refused.
// Bounded: nesting depth, value count and input size, so a hostile document costs
// at most a known amount of memory and stack. Numbers without a fraction or
// exponent are exact int64 (refused outside it); others are doubles parsed in the
// C locale (std::from_chars), refused when they overflow to infinity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xnor::json {

// The message gives the byte offset and what was expected.
class ParseError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct Limits {
  size_t max_depth = 64;                // nested arrays/objects
  size_t max_values = size_t{1} << 23;  // every value counts, including keys' values and elements
  size_t max_bytes = size_t{64} << 20;  // the document
};

class Value {
 public:
  enum class Type : uint8_t { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

  Value() = default;
  static Value null() { return Value(); }
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value array(std::vector<Value> items = {});
  static Value object(std::vector<std::pair<std::string, Value>> members = {});

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_number() const { return type_ == Type::kInt || type_ == Type::kDouble; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // The accessors throw std::logic_error on the wrong type (a caller bug: check first).
  bool as_bool() const;
  int64_t as_int() const;
  double as_double() const;  // ints convert
  const std::string& as_string() const;
  const std::vector<Value>& items() const;                            // array elements
  const std::vector<std::pair<std::string, Value>>& members() const;  // object members, in order
  // The member named `key`, or null when absent (or when this is not an object).
  const Value* find(std::string_view key) const;

  // Compact JSON text (no spaces), members in document order; doubles written with the
  // shortest representation that reads back exactly.
  std::string dump() const;

 private:
  void dump_to(std::string* out) const;

  Type type_ = Type::kNull;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0.0;
  std::string s_;
  std::vector<Value> items_;
  std::vector<std::pair<std::string, Value>> members_;
};

// Parses `text` as one JSON document; throws ParseError.
Value parse(std::string_view text, const Limits& limits = Limits());

// `s` as a JSON string literal (quotes included).
std::string quote(std::string_view s);

}  // namespace xnor::json

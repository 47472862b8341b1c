#include "runtime/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

namespace xnor::json {

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::kInt;
  v.i_ = i;
  return v;
}
Value Value::number(double d) {
  Value v;
  v.type_ = Type::kDouble;
  v.d_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.s_ = std::move(s);
  return v;
}
Value Value::array(std::vector<Value> items) {
  Value v;
  v.type_ = Type::kArray;
  v.items_ = std::move(items);
  return v;
}
Value Value::object(std::vector<std::pair<std::string, Value>> members) {
  Value v;
  v.type_ = Type::kObject;
  v.members_ = std::move(members);
  return v;
}

namespace {
[[noreturn]] void wrong_type(const char* want) { throw std::logic_error(std::string("json value is not ") + want); }
}  // namespace

bool Value::as_bool() const {
  if (type_ != Type::kBool) wrong_type("a boolean");
  return b_;
}
int64_t Value::as_int() const {
  if (type_ != Type::kInt) wrong_type("an integer");
  return i_;
}
double Value::as_double() const {
  if (type_ == Type::kInt) return static_cast<double>(i_);
  if (type_ != Type::kDouble) wrong_type("a number");
  return d_;
}
const std::string& Value::as_string() const {
  if (type_ != Type::kString) wrong_type("a string");
  return s_;
}
const std::vector<Value>& Value::items() const {
  if (type_ != Type::kArray) wrong_type("an array");
  return items_;
}
const std::vector<std::pair<std::string, Value>>& Value::members() const {
  if (type_ != Type::kObject) wrong_type("an object");
  return members_;
}
const Value* Value::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& [k, v] : members_) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          constexpr char kHex[] = "0123456789abcdef";
          out += {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

void Value::dump_to(std::string* out) const {
  switch (type_) {
    case Type::kNull: *out += "null"; break;
    case Type::kBool: *out += b_ ? "true" : "false"; break;
    case Type::kInt: *out += std::to_string(i_); break;
    case Type::kDouble: {
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, d_);
      std::string text(buf, r.ptr);
      // Keep it a double when read back: "1e+20" and "0.5" are, "3" is not.
      if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
      *out += text;
      break;
    }
    case Type::kString: *out += quote(s_); break;
    case Type::kArray:
      *out += '[';
      for (size_t i = 0; i < items_.size(); ++i) {
        if (i) *out += ',';
        items_[i].dump_to(out);
      }
      *out += ']';
      break;
    case Type::kObject:
      *out += '{';
      for (size_t i = 0; i < members_.size(); ++i) {
        if (i) *out += ',';
        *out += quote(members_[i].first);
        *out += ':';
        members_[i].second.dump_to(out);
      }
      *out += '}';
      break;
  }
}

std::string Value::dump() const {
  std::string out;
  dump_to(&out);
  return out;
}

namespace {

class Parser {
 public:
  Parser(std::string_view text, const Limits& limits) : t_(text), limits_(limits) {}

  Value document() {
    if (t_.size() > limits_.max_bytes) {
      throw ParseError("document of " + std::to_string(t_.size()) + " bytes is larger than the limit of " +
                       std::to_string(limits_.max_bytes));
    }
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (pos_ != t_.size()) fail("extra data after the document");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw ParseError(what + " at byte " + std::to_string(pos_)); }
  bool at_end() const { return pos_ >= t_.size(); }
  unsigned char peek() const { return at_end() ? 0 : static_cast<unsigned char>(t_[pos_]); }
  void skip_ws() {
    while (!at_end() && (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r')) ++pos_;
  }
  void expect_word(std::string_view word) {
    if (t_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
  }
  void count_value() {
    if (++values_ > limits_.max_values) {
      fail("more than " + std::to_string(limits_.max_values) + " values");
    }
  }

  Value value(size_t depth) {
    count_value();
    switch (peek()) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': return Value::string(string());
      case 't': expect_word("true"); return Value::boolean(true);
      case 'f': expect_word("false"); return Value::boolean(false);
      case 'n': expect_word("null"); return Value::null();
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return number();
        if (at_end()) fail("unexpected end of the document");
        fail("unexpected character");
    }
  }

  void check_depth(size_t depth) const {
    if (depth > limits_.max_depth) fail("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
  }

  Value array(size_t depth) {
    check_depth(depth);
    ++pos_;  // '['
    std::vector<Value> items;
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return Value::array(std::move(items));
    }
    for (;;) {
      skip_ws();
      items.push_back(value(depth));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return Value::array(std::move(items));
      }
      fail("expected ',' or ']'");
    }
  }

  Value object(size_t depth) {
    check_depth(depth);
    ++pos_;  // '{'
    std::vector<std::pair<std::string, Value>> members;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return Value::object(std::move(members));
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key");
      std::string key = string();
      skip_ws();
      if (peek() != ':') fail("expected ':'");
      ++pos_;
      skip_ws();
      Value v = value(depth);
      members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        check_unique(members);
        return Value::object(std::move(members));
      }
      fail("expected ',' or '}'");
    }
  }

  // Small objects (most of a graph) compare pairs; large ones sort, so that an object with many
  // keys costs n log n, not n^2.
  void check_unique(const std::vector<std::pair<std::string, Value>>& members) {
    if (members.size() <= 16) {
      for (size_t i = 1; i < members.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
          if (members[i].first == members[j].first) {
            fail("duplicate key " + quote(members[i].first) + " in the object ending");
          }
        }
      }
      return;
    }
    std::vector<std::string_view> keys;
    keys.reserve(members.size());
    for (const auto& m : members) keys.emplace_back(m.first);
    std::sort(keys.begin(), keys.end());
    for (size_t i = 1; i < keys.size(); ++i) {
      if (keys[i] == keys[i - 1]) fail("duplicate key " + quote(keys[i]) + " in the object ending");
    }
  }

  unsigned hex4() {
    if (t_.size() - pos_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = t_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail("invalid \\u escape");
    }
    return v;
  }

  static void append_utf8(std::string* out, unsigned cp) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One UTF-8 sequence starting at pos_ (a lead byte >= 0x80), copied to out.
  void utf8_sequence(std::string* out) {
    const unsigned char c = peek();
    size_t n;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
      cp = c & 0x1F;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      cp = c & 0x0F;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      cp = c & 0x07;
      min = 0x10000;
    } else
      fail("invalid UTF-8");
    if (t_.size() - pos_ < n) fail("truncated UTF-8");
    for (size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(t_[pos_ + k]);
      if ((cc & 0xC0) != 0x80) fail("invalid UTF-8");
      cp = cp << 6 | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8");
    out->append(t_.substr(pos_, n));
    pos_ += n;
  }

  std::string string() {
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (at_end()) fail("unterminated string");
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c >= 0x80) {
        utf8_sequence(&out);
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) fail("unterminated string");
      const char e = t_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (t_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in a \\u escape");
            pos_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(&out, cp);
          break;
        }
        default: --pos_; fail("invalid escape");
      }
    }
  }

  Value number() {
    const size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail("leading zero in a number");
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("invalid number");
    }
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: digits must follow '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: digits must follow the exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    const char* first = t_.data() + start;
    const char* last = t_.data() + pos_;
    if (integral) {
      int64_t i = 0;
      const auto r = std::from_chars(first, last, i);
      if (r.ec != std::errc() || r.ptr != last) {
        pos_ = start;
        fail("integer " + std::string(first, last) + " is outside the 64-bit range");
      }
      return Value::integer(i);
    }
    double d = 0.0;
    const auto r = std::from_chars(first, last, d);
    // from_chars reports out of range for overflow and for underflow; an underflow is
    // a tiny number (read as such by strtod and Python), an overflow has no finite value.
    if (r.ptr != last || (r.ec != std::errc() && r.ec != std::errc::result_out_of_range)) {
      pos_ = start;
      fail("invalid number");
    }
    if (r.ec == std::errc::result_out_of_range) {
      // Decide by the decimal exponent's sign whether it overflowed (no finite double) or underflowed.
      const std::string text(first, last);
      const size_t e = text.find_first_of("eE");
      const bool negative_exponent = e != std::string::npos && e + 1 < text.size() && text[e + 1] == '-';
      if (!negative_exponent) {
        pos_ = start;
        fail("number " + text + " is outside the double range");
      }
      d = text[0] == '-' ? -0.0 : 0.0;
    }
    if (!std::isfinite(d)) {
      pos_ = start;
      fail("number is outside the double range");
    }
    return Value::number(d);
  }

  std::string_view t_;
  const Limits& limits_;
  size_t pos_ = 0;
  size_t values_ = 0;
};

}  // namespace

Value parse(std::string_view text, const Limits& limits) { return Parser(text, limits).document(); }

}  // namespace xnor::json

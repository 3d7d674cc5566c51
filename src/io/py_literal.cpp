// src/io/py_literal.cpp: the recursive-descent parser of the Python literals in .npy headers.
#include "io/py_literal.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <tuple>
#include <utility>

namespace hyperattn::io::detail {
namespace {

class PyLiteralParser {
 public:
  explicit PyLiteralParser(std::string_view text) : s_(text) {}

  bool parse_top(PyValue* out) {
    skip_space();
    if (!parse_value(out, 0)) return false;
    skip_space();
    if (pos_ != s_.size()) return fail("unexpected text after the closing brace");
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string why) {
    if (error_.empty()) error_ = std::move(why) + " at offset " + std::to_string(pos_);
    return false;
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool parse_value(PyValue* out, int depth) {
    if (depth > 32) return fail("nesting too deep");
    skip_space();
    if (pos_ >= s_.size()) return fail("unexpected end of header");
    const char c = s_[pos_];
    if (c == '\'' || c == '"') return parse_string(out);
    if (c == '(') return parse_sequence(out, ')', PyValue::Kind::tuple, depth);
    if (c == '[') return parse_sequence(out, ']', PyValue::Kind::list, depth);
    if (c == '{') return parse_dict(out, depth);
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return parse_integer(out);
    for (auto [word, kind, value] :
         {std::tuple{"True", PyValue::Kind::boolean, true}, std::tuple{"False", PyValue::Kind::boolean, false},
          std::tuple{"None", PyValue::Kind::none, false}}) {
      const std::string_view w(word);
      if (s_.substr(pos_, w.size()) == w) {
        pos_ += w.size();
        out->kind = kind;
        out->boolean = value;
        return true;
      }
    }
    return fail(std::string("unexpected character '") + c + "'");
  }
  bool parse_string(PyValue* out) {
    const char quote = s_[pos_++];
    out->kind = PyValue::Kind::string;
    out->text.clear();
    while (pos_ < s_.size() && s_[pos_] != quote) {
      char c = s_[pos_++];
      if (c == '\\') {
        if (pos_ >= s_.size()) break;
        c = s_[pos_++];
      }
      out->text += c;
    }
    if (pos_ >= s_.size()) return fail("unterminated string");
    ++pos_;
    return true;
  }
  bool parse_integer(PyValue* out) {
    const std::size_t start = pos_;
    bool negative = false;
    if (s_[pos_] == '-' || s_[pos_] == '+') negative = s_[pos_++] == '-';
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') return fail("malformed number");
    std::uint64_t magnitude = 0;
    constexpr std::uint64_t kLimit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const auto digit = static_cast<std::uint64_t>(s_[pos_] - '0');
      if (magnitude > (kLimit - digit) / 10) {
        pos_ = start;
        return fail("integer does not fit in int64");
      }
      magnitude = magnitude * 10 + digit;
      ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E' || s_[pos_] == 'j')) {
      return fail("non-integer number");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'L' || s_[pos_] == 'l')) ++pos_;  // Python 2 long
    out->kind = PyValue::Kind::integer;
    out->integer = negative ? -static_cast<std::int64_t>(magnitude) : static_cast<std::int64_t>(magnitude);
    return true;
  }
  bool parse_sequence(PyValue* out, char close, PyValue::Kind kind, int depth) {
    ++pos_;
    out->kind = kind;
    out->items.clear();
    bool had_comma = false;
    while (true) {
      if (consume(close)) break;
      if (!out->items.empty() && !had_comma) return fail(std::string("expected ',' or '") + close + "'");
      PyValue item;
      if (!parse_value(&item, depth + 1)) return false;
      out->items.push_back(std::move(item));
      had_comma = consume(',');
    }
    // (3) is the integer 3 in Python, not a tuple: numpy always writes (3,).
    if (kind == PyValue::Kind::tuple && out->items.size() == 1 && !had_comma) {
      return fail("a one-element tuple needs a trailing comma");
    }
    return true;
  }
  bool parse_dict(PyValue* out, int depth) {
    ++pos_;
    out->kind = PyValue::Kind::dict;
    out->items.clear();
    out->keys.clear();
    bool had_comma = true;
    while (true) {
      if (consume('}')) return true;
      if (!had_comma) return fail("expected ',' or '}'");
      skip_space();
      if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) return fail("expected a string key");
      PyValue key;
      if (!parse_string(&key)) return false;
      if (std::find(out->keys.begin(), out->keys.end(), key.text) != out->keys.end()) {
        return fail("duplicate key '" + key.text + "'");
      }
      if (!consume(':')) return fail("expected ':' after key '" + key.text + "'");
      PyValue value;
      if (!parse_value(&value, depth + 1)) return false;
      out->keys.push_back(std::move(key.text));
      out->items.push_back(std::move(value));
      had_comma = consume(',');
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::string error_;
};

}  // namespace

bool parse_py_literal(std::string_view text, PyValue* out, std::string* error) {
  PyLiteralParser parser(text);
  if (parser.parse_top(out)) return true;
  *error = parser.error();
  return false;
}

const PyValue* dict_get(const PyValue& dict, std::string_view key) {
  for (std::size_t i = 0; i < dict.keys.size(); ++i) {
    if (dict.keys[i] == key) return &dict.items[i];
  }
  return nullptr;
}

}  // namespace hyperattn::io::detail

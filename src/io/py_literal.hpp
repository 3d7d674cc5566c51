// src/io/py_literal.hpp: the parser of the Python dict literal in a .npy header (internal to src/io).
//
// The .npy header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// parsed by a small recursive-descent parser for the literal subset numpy writes (strings,
// integers, True/False/None, tuples, lists, dicts), so that unknown keys are skipped safely.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hyperattn::io::detail {

struct PyValue {
  enum class Kind { string, integer, boolean, none, tuple, list, dict } kind = Kind::none;
  std::string text;               // string
  std::int64_t integer = 0;       // integer (fits int64)
  bool boolean = false;           // boolean
  std::vector<PyValue> items;     // tuple, list; dict values (keys in `keys`)
  std::vector<std::string> keys;  // dict keys (strings only)
};

// Parses `text`, one literal and nothing after it but whitespace (nested at most 32 deep). False on
// malformed text, with *error saying what was wrong and at which offset.
bool parse_py_literal(std::string_view text, PyValue* out, std::string* error);

// The value of `key` in a dict, or null when it has none.
const PyValue* dict_get(const PyValue& dict, std::string_view key);

}  // namespace hyperattn::io::detail

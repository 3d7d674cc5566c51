// src/io/json_keys.hpp: the keys that appear twice in one JSON object, found while parsing (internal).
//
// nlohmann::json keeps the last of two equal keys silently; parse_json and the .safetensors reader
// refuse them instead, each with its own message, from what DuplicateKeyFinder records.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace hyperattn::io::detail {

// A key seen a second time in one object, and where.
struct DuplicateKey {
  std::string key;
  int depth = 0;              // the parser's depth at the key
  std::size_t nesting = 0;    // how many objects were open: 1 is the top-level object
  std::string top_level_key;  // the top-level key whose value holds it (itself when nesting is 1)
};

class DuplicateKeyFinder {
 public:
  // The callback to pass to nlohmann::json::parse (it keeps every value); valid while *this lives.
  nlohmann::json::parser_callback_t callback();

  // Every repeated key, in the order the parser met them.
  const std::vector<DuplicateKey>& duplicates() const { return duplicates_; }

 private:
  std::vector<std::set<std::string>> open_objects_;  // the keys seen so far in each object being parsed
  std::string current_top_level_key_;                // the top-level key being parsed
  std::vector<DuplicateKey> duplicates_;
};

}  // namespace hyperattn::io::detail

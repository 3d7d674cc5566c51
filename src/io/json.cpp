// src/io/json.cpp: parse_json (JSON refusing a key twice in one object) and DuplicateKeyFinder.
#include "io/array_io.hpp"

#include <algorithm>
#include <string>

#include "io/json_keys.hpp"

namespace hyperattn::io {
namespace detail {

nlohmann::json::parser_callback_t DuplicateKeyFinder::callback() {
  return [this](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects_.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects_.empty()) open_objects_.pop_back();
    } else if (event == E::key && !open_objects_.empty() && parsed.is_string()) {
      const std::string key = parsed.get<std::string>();
      if (open_objects_.size() == 1) current_top_level_key_ = key;
      if (!open_objects_.back().insert(key).second)
        duplicates_.push_back({key, depth, open_objects_.size(), current_top_level_key_});
    }
    return true;
  };
}

}  // namespace detail

Status parse_json(const std::string& text, const std::string& path, nlohmann::json* out) {
  detail::DuplicateKeyFinder duplicates;
  try {
    *out = nlohmann::json::parse(text, duplicates.callback());
  } catch (const nlohmann::json::exception& e) {
    return Status::IoError(path + ": not valid JSON: " + e.what());
  }
  // The first repeated key that is not empty (an empty key twice passes, as it always has).
  const auto& found = duplicates.duplicates();
  const auto first =
      std::find_if(found.begin(), found.end(), [](const detail::DuplicateKey& d) { return !d.key.empty(); });
  if (first != found.end()) {
    const std::string where = first->depth <= 1 ? "at the top level" : "at depth " + std::to_string(first->depth);
    return Status::IoError(path + ": key '" + first->key + "' appears twice in one object (" + where +
                           "); expected each key once");
  }
  return Status::Ok();
}

}  // namespace hyperattn::io

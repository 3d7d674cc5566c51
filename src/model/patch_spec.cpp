// src/model/patch_spec.cpp: see patch_spec.hpp.
#include "model/patch_spec.hpp"

#include <charconv>

namespace hyperattn::model {
namespace {

Status parse_index(const std::string& spec, const std::string& digits, std::int64_t* out) {
  std::int64_t value = 0;
  const char* end = digits.data() + digits.size();
  auto [ptr, ec] = std::from_chars(digits.data(), end, value);
  if (digits.empty() || ec != std::errc() || ptr != end || value < 0) {
    return Status::InvalidArgument("--patch \"" + spec + "\": expected a non-negative integer, found \"" + digits +
                                   "\"");
  }
  *out = value;
  return Status::Ok();
}

Status bad_spec(const std::string& spec) {
  return Status::InvalidArgument("--patch \"" + spec +
                                 "\": expected all, last:K, first:K or layers:i+j+... (0-based layer indices)");
}

}  // namespace

std::int64_t PatchSpec::patched_layers() const {
  std::int64_t k = 0;
  for (auto a : layer_attention) k += a == LayerAttention::hyper ? 1 : 0;
  return k;
}

std::string PatchSpec::layer_list() const {
  std::string s;
  for (std::size_t i = 0; i < layer_attention.size(); ++i) {
    if (layer_attention[i] != LayerAttention::hyper) continue;
    if (!s.empty()) s += ",";
    s += std::to_string(i);
  }
  return s;
}

Status parse_patch_spec(const std::string& spec, std::int64_t num_layers, PatchSpec* out) {
  PatchSpec p;
  p.text = spec;
  p.layer_attention.assign(static_cast<std::size_t>(num_layers), LayerAttention::exact);
  const std::string layers_str = std::to_string(num_layers);
  if (spec == "all") {
    p.layer_attention.assign(static_cast<std::size_t>(num_layers), LayerAttention::hyper);
  } else if (spec.rfind("last:", 0) == 0 || spec.rfind("first:", 0) == 0) {
    const bool last = spec[0] == 'l';
    std::int64_t k = 0;
    HYPERATTN_RETURN_IF_ERROR(parse_index(spec, spec.substr(last ? 5 : 6), &k));
    if (k < 1 || k > num_layers) {
      return Status::InvalidArgument("--patch \"" + spec + "\": K: expected 1.." + layers_str + " (the model has " +
                                     layers_str + " layers), found " + std::to_string(k));
    }
    for (std::int64_t i = 0; i < k; ++i) {
      p.layer_attention[static_cast<std::size_t>(last ? num_layers - 1 - i : i)] = LayerAttention::hyper;
    }
  } else if (spec.rfind("layers:", 0) == 0) {
    const std::string list = spec.substr(7);
    std::size_t pos = 0;
    while (true) {
      const std::size_t plus = list.find('+', pos);
      const std::string item = list.substr(pos, plus == std::string::npos ? std::string::npos : plus - pos);
      std::int64_t layer = 0;
      HYPERATTN_RETURN_IF_ERROR(parse_index(spec, item, &layer));
      if (layer >= num_layers) {
        return Status::InvalidArgument("--patch \"" + spec + "\": layer index: expected 0.." +
                                       std::to_string(num_layers - 1) + " (0-based, the model has " + layers_str +
                                       " layers), found " + std::to_string(layer));
      }
      if (p.layer_attention[static_cast<std::size_t>(layer)] == LayerAttention::hyper) {
        return Status::InvalidArgument("--patch \"" + spec + "\": layer " + std::to_string(layer) + " listed twice");
      }
      p.layer_attention[static_cast<std::size_t>(layer)] = LayerAttention::hyper;
      if (plus == std::string::npos) break;
      pos = plus + 1;
    }
  } else {
    return bad_spec(spec);
  }
  *out = std::move(p);
  return Status::Ok();
}

}  // namespace hyperattn::model

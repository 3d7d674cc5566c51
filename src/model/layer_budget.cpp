// src/model/layer_budget.cpp: see layer_budget.hpp.
#include "model/layer_budget.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace hyperattn::model {

Status allocate_layer_keys(const std::vector<double>& sensitivity, std::int64_t mean_keys, std::int64_t min_keys,
                           std::vector<std::int64_t>* keys) {
  const auto layers = static_cast<std::int64_t>(sensitivity.size());
  if (layers == 0) return Status::InvalidArgument("allocate_layer_keys: sensitivity: expected one entry per layer, found none");
  if (mean_keys < 1 || min_keys < 1 || min_keys > mean_keys)
    return Status::InvalidArgument("allocate_layer_keys: expected 1 <= min_keys (" + std::to_string(min_keys) +
                                   ") <= mean_keys (" + std::to_string(mean_keys) + ")");
  for (std::int64_t l = 0; l < layers; ++l) {
    const double s = sensitivity[static_cast<std::size_t>(l)];
    if (!std::isfinite(s) || s < 0.0)
      return Status::InvalidArgument("allocate_layer_keys: sensitivity[" + std::to_string(l) +
                                     "]: expected a finite value >= 0, found " + std::to_string(s));
  }
  const std::int64_t total = mean_keys * layers;
  std::vector<double> weight(sensitivity.size());  // [layers] sqrt(KL_l)
  for (std::size_t l = 0; l < weight.size(); ++l) weight[l] = std::sqrt(sensitivity[l]);
  // Layers whose share falls below min_keys get min_keys; the rest share what is left in
  // proportion to their weights (repeated until no share falls below the floor).
  std::vector<bool> floored(weight.size(), false);
  std::vector<double> share(weight.size(), 0.0);
  for (bool changed = true; changed;) {
    changed = false;
    double free_keys = static_cast<double>(total), free_weight = 0.0;
    for (std::size_t l = 0; l < weight.size(); ++l) {
      if (floored[l]) free_keys -= static_cast<double>(min_keys);
      else free_weight += weight[l];
    }
    for (std::size_t l = 0; l < weight.size(); ++l) {
      if (floored[l]) continue;
      share[l] = free_weight > 0.0 ? free_keys * weight[l] / free_weight
                                   : free_keys / static_cast<double>(std::count(floored.begin(), floored.end(), false));
      if (share[l] < static_cast<double>(min_keys)) {
        floored[l] = true;
        changed = true;
      }
    }
  }
  keys->assign(weight.size(), min_keys);
  for (std::size_t l = 0; l < weight.size(); ++l)
    if (!floored[l]) (*keys)[l] = std::max<std::int64_t>(min_keys, static_cast<std::int64_t>(std::floor(share[l])));
  return Status::Ok();
}

Status parse_layer_keys(const std::string& text, std::int64_t num_layers, std::vector<std::int64_t>* keys,
                        bool* automatic) {
  keys->clear();
  *automatic = false;
  if (text == "auto") {
    *automatic = true;
    return Status::Ok();
  }
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    char* end = nullptr;
    const long long v = item.empty() ? 0 : std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || end == nullptr || *end != '\0' || v < 1 || v > (1LL << 30))
      return Status::InvalidArgument("--layer-keys \"" + text + "\": entry " + std::to_string(keys->size()) + " is \"" +
                                     item + "\"; expected \"auto\" or one positive key count per layer, comma-separated");
    keys->push_back(v);
    at = comma + 1;
  }
  if (static_cast<std::int64_t>(keys->size()) != num_layers)
    return Status::InvalidArgument("--layer-keys \"" + text + "\": expected " + std::to_string(num_layers) +
                                   " entries (one per layer), found " + std::to_string(keys->size()));
  return Status::Ok();
}

}  // namespace hyperattn::model

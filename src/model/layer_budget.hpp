// src/model/layer_budget.hpp: per-layer budgets of HyperAttention ("--layer-keys").
//
// The layers of a model are not equally sensitive to HyperAttention's error: in the bundled model
// the first layer's attention is diffuse and causes most of the KL divergence of an all-layers
// patch. At a fixed mean number of keys per query, moving keys from insensitive layers to
// sensitive ones lowers the total error. With each layer's error from sampling falling as 1/keys,
// KL_l(k) ~ KL_l(k0) k0 / k, minimising sum_l KL_l(k_l) under sum_l k_l = L k0 gives
// k_l proportional to sqrt(KL_l(k0)) (Lagrange): the square-root allocation below.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hyperattn/status.hpp"

namespace hyperattn::model {

// Keys per query of each layer, proportional to sqrt(sensitivity[l]) (each layer's KL with only
// that layer patched at mean_keys), at least min_keys each, summing to at most
// mean_keys * layers (the same mean cost as mean_keys everywhere). sensitivity: [layers], >= 0.
Status allocate_layer_keys(const std::vector<double>& sensitivity, std::int64_t mean_keys, std::int64_t min_keys,
                           std::vector<std::int64_t>* keys);

// Parses "--layer-keys": a comma-separated list of one positive count per layer, or "auto"
// (*automatic = true, keys cleared).
Status parse_layer_keys(const std::string& text, std::int64_t num_layers, std::vector<std::int64_t>* keys,
                        bool* automatic);

}  // namespace hyperattn::model

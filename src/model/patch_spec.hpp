// src/model/patch_spec.hpp: which layers run HyperAttention ("patched" layers), from a --patch SPEC:
//   all          every layer
//   last:K       the last K layers (1 <= K <= layers)
//   first:K      the first K layers
//   layers:i+j   the listed layers (0-based, distinct, each in [0, layers))
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hyperattn/status.hpp"
#include "model/llama_model.hpp"

namespace hyperattn::model {

struct PatchSpec {
  std::string text;                             // as given
  std::vector<LayerAttention> layer_attention;  // [layers]
  std::int64_t patched_layers() const;
  std::string layer_list() const;  // e.g. "4,5"
};

Status parse_patch_spec(const std::string& spec, std::int64_t num_layers, PatchSpec* out);

}  // namespace hyperattn::model

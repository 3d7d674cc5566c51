// src/model/llama_weights.hpp: the weights of a Llama decoder in fp32, loaded from a Hugging Face
// checkpoint (model.safetensors, or shards listed by model.safetensors.index.json).
//
// Stored dtypes F32, BF16 and F16 are converted to fp32 at load. Every tensor the architecture
// needs must be present with exactly its shape; a missing, misshapen, wrongly typed or unexpected
// tensor (a bias, say) is refused with a message naming the file, the tensor, the expected and the
// found shape. q/k/v and gate/up projections are stored fused (one GEMM each).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hyperattn/status.hpp"
#include "model/llama_config.hpp"

namespace hyperattn::model {

struct LlamaLayerWeights {
  std::vector<float> input_norm;    // [hidden]
  std::vector<float> qkv_proj;      // [q_width + 2 * kv_width, hidden]: q_proj, k_proj, v_proj rows
  std::vector<float> o_proj;        // [hidden, q_width]
  std::vector<float> post_norm;     // [hidden]
  std::vector<float> gate_up_proj;  // [2 * intermediate, hidden]: gate_proj rows, then up_proj rows
  std::vector<float> down_proj;     // [hidden, intermediate]
};

struct LlamaWeights {
  std::vector<float> embed_tokens;  // [vocab, hidden]
  std::vector<LlamaLayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab, hidden]; empty when tied to embed_tokens

  const float* output_embedding() const { return lm_head.empty() ? embed_tokens.data() : lm_head.data(); }
};

// Parses the text of model.safetensors.index.json (`index` names it in messages): the weight_map's
// (tensor name, shard file name) pairs, each shard a plain file name in the model folder (no '/',
// '\\', "." or ".."). IoError naming the index, the entry and what was found.
Status parse_shard_index(const std::string& json_text, const std::string& index,
                         std::vector<std::pair<std::string, std::string>>* weight_map);

// Loads `dir`'s checkpoint for the architecture `config`.
Status load_llama_weights(const std::string& dir, const LlamaConfig& config, LlamaWeights* out);

}  // namespace hyperattn::model

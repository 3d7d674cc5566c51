// src/model/llama_config.hpp: the hyper-parameters of a Llama-family decoder, read from a Hugging
// Face config.json and refused unless the runner implements exactly that architecture.
//
// Accepted: architectures ["LlamaForCausalLM"] (or absent) with model_type "llama", hidden_act
// "silu", no rope_scaling (absent or null), attention_bias false (or absent), mlp_bias false (or
// absent), hidden_size = num_attention_heads * head_dim, num_attention_heads a multiple of
// num_key_value_heads. Anything else is an error naming the file, the field, what was expected and
// what was found.
#pragma once

#include <cstdint>
#include <string>

#include "hyperattn/status.hpp"

namespace hyperattn::model {

struct LlamaConfig {
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;        // d_model
  std::int64_t intermediate_size = 0;  // SwiGLU width
  std::int64_t num_layers = 0;
  std::int64_t heads_q = 0;   // num_attention_heads
  std::int64_t heads_kv = 0;  // num_key_value_heads (grouped-query attention)
  std::int64_t head_dim = 0;
  std::int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;

  std::int64_t q_width() const { return heads_q * head_dim; }    // q_proj rows
  std::int64_t kv_width() const { return heads_kv * head_dim; }  // k_proj / v_proj rows
};

// Parses `json_text` (the contents of `path`, which is only used in messages).
Status parse_llama_config(const std::string& json_text, const std::string& path, LlamaConfig* out);

// Reads and parses `<dir>/config.json`.
Status load_llama_config(const std::string& dir, LlamaConfig* out);

}  // namespace hyperattn::model

// src/model/llama_config.cpp: config.json parsing and the architecture checks.
#include "model/llama_config.hpp"

#include "io/array_io.hpp"
#include <nlohmann/json.hpp>

namespace hyperattn::model {
namespace {

using nlohmann::json;

Status field_error(const std::string& path, const std::string& field, const std::string& expected,
                   const std::string& found) {
  return Status::InvalidArgument(path + ": field \"" + field + "\": expected " + expected + ", found " + found);
}

std::string dump(const json& value) { return value.dump(); }

// The largest size any field may claim (the checkpoint's tensors are checked against the config
// before anything is allocated, and these caps keep every product of two sizes inside int64).
constexpr std::int64_t kMaxSize = std::int64_t{1} << 31;

// A required positive integer field, at most kMaxSize.
Status read_positive_int(const json& root, const std::string& path, const std::string& field, std::int64_t* out) {
  auto it = root.find(field);
  if (it == root.end()) return field_error(path, field, "a positive integer", "nothing (missing)");
  if (!it->is_number_integer() || it->get<std::int64_t>() <= 0) {
    return field_error(path, field, "a positive integer", dump(*it));
  }
  if (it->get<std::int64_t>() >= kMaxSize) {
    return field_error(path, field, "a positive integer at most " + std::to_string(kMaxSize - 1), dump(*it));
  }
  *out = it->get<std::int64_t>();
  return Status::Ok();
}

// An optional positive number field (default kept when absent).
Status read_positive_number(const json& root, const std::string& path, const std::string& field, double* out) {
  auto it = root.find(field);
  if (it == root.end()) return Status::Ok();
  if (!it->is_number() || !(it->get<double>() > 0.0)) {
    return field_error(path, field, "a positive number", dump(*it));
  }
  *out = it->get<double>();
  return Status::Ok();
}

// An optional boolean that must be false when present.
Status require_false_or_absent(const json& root, const std::string& path, const std::string& field,
                               const std::string& why) {
  auto it = root.find(field);
  if (it == root.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean() || it->get<bool>()) {
    return field_error(path, field, "false or absent (" + why + ")", dump(*it));
  }
  return Status::Ok();
}

}  // namespace

Status parse_llama_config(const std::string& json_text, const std::string& path, LlamaConfig* out) {
  json root;
  HYPERATTN_RETURN_IF_ERROR(io::parse_json(json_text, path, &root));
  if (!root.is_object()) return Status::IoError(path + ": expected a JSON object at the top level");

  // Architecture: only the Llama decoder is implemented.
  if (auto it = root.find("architectures"); it != root.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != 1 || !(*it)[0].is_string() ||
        (*it)[0].get<std::string>() != "LlamaForCausalLM") {
      return field_error(path, "architectures", "[\"LlamaForCausalLM\"]", dump(*it));
    }
  }
  {
    auto it = root.find("model_type");
    if (it == root.end()) return field_error(path, "model_type", "\"llama\"", "nothing (missing)");
    if (!it->is_string() || it->get<std::string>() != "llama") {
      return field_error(path, "model_type", "\"llama\"", dump(*it));
    }
  }
  if (auto it = root.find("hidden_act"); it != root.end()) {
    if (!it->is_string() || it->get<std::string>() != "silu") {
      return field_error(path, "hidden_act", "\"silu\" (SwiGLU)", dump(*it));
    }
  }
  if (auto it = root.find("rope_scaling"); it != root.end() && !it->is_null()) {
    return field_error(path, "rope_scaling", "null or absent (scaled RoPE is not implemented)", dump(*it));
  }
  HYPERATTN_RETURN_IF_ERROR(
      require_false_or_absent(root, path, "attention_bias", "q/k/v/o biases are not implemented"));
  HYPERATTN_RETURN_IF_ERROR(require_false_or_absent(root, path, "mlp_bias", "MLP biases are not implemented"));

  LlamaConfig c;
  HYPERATTN_RETURN_IF_ERROR(read_positive_int(root, path, "vocab_size", &c.vocab_size));
  HYPERATTN_RETURN_IF_ERROR(read_positive_int(root, path, "hidden_size", &c.hidden_size));
  HYPERATTN_RETURN_IF_ERROR(read_positive_int(root, path, "intermediate_size", &c.intermediate_size));
  HYPERATTN_RETURN_IF_ERROR(read_positive_int(root, path, "num_hidden_layers", &c.num_layers));
  HYPERATTN_RETURN_IF_ERROR(read_positive_int(root, path, "num_attention_heads", &c.heads_q));
  c.heads_kv = c.heads_q;
  if (root.contains("num_key_value_heads") && !root["num_key_value_heads"].is_null()) {
    HYPERATTN_RETURN_IF_ERROR(read_positive_int(root, path, "num_key_value_heads", &c.heads_kv));
  }
  HYPERATTN_RETURN_IF_ERROR(read_positive_int(root, path, "max_position_embeddings", &c.max_position_embeddings));
  HYPERATTN_RETURN_IF_ERROR(read_positive_number(root, path, "rms_norm_eps", &c.rms_norm_eps));
  HYPERATTN_RETURN_IF_ERROR(read_positive_number(root, path, "rope_theta", &c.rope_theta));
  if (auto it = root.find("tie_word_embeddings"); it != root.end() && !it->is_null()) {
    if (!it->is_boolean()) return field_error(path, "tie_word_embeddings", "a boolean", dump(*it));
    c.tie_word_embeddings = it->get<bool>();
  }

  if (c.heads_q % c.heads_kv != 0) {
    return field_error(path, "num_key_value_heads", "a divisor of num_attention_heads = " + std::to_string(c.heads_q),
                       std::to_string(c.heads_kv));
  }
  if (c.hidden_size % c.heads_q != 0) {
    return field_error(path, "hidden_size", "a multiple of num_attention_heads = " + std::to_string(c.heads_q),
                       std::to_string(c.hidden_size));
  }
  c.head_dim = c.hidden_size / c.heads_q;
  if (auto it = root.find("head_dim"); it != root.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() != c.head_dim) {
      return field_error(path, "head_dim", "hidden_size / num_attention_heads = " + std::to_string(c.head_dim),
                         dump(*it));
    }
  }
  if (c.head_dim % 2 != 0) {
    return field_error(path, "hidden_size / num_attention_heads", "an even head_dim (RoPE pairs)",
                       std::to_string(c.head_dim));
  }
  *out = c;
  return Status::Ok();
}

Status load_llama_config(const std::string& dir, LlamaConfig* out) {
  const std::string path = dir + "/config.json";
  std::string text;
  // A config.json is a few KiB; 16 MiB leaves room and refuses /dev/zero and the like.
  if (Status s = io::read_regular_file(path, &text, std::uint64_t{16} << 20); !s.ok()) {
    return Status::IoError(s.message() + " (is --model a Hugging Face model folder?)");
  }
  return parse_llama_config(text, path, out);
}

}  // namespace hyperattn::model

// src/model/llama_weights.cpp: checkpoint discovery, shape checks and fp32 conversion.
#include "model/llama_weights.hpp"

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "io/array_io.hpp"

namespace hyperattn::model {
namespace {

using nlohmann::json;

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Where every tensor of the checkpoint lives: tensor name -> shard file (full path).
struct Checkpoint {
  std::map<std::string, std::unique_ptr<io::SafetensorsFile>> shards;  // path -> open file
  std::map<std::string, std::string> tensor_file;                      // tensor -> path
};

Status read_text(const std::string& path, std::string* out) {
  // An index is a few hundred KiB at most; 64 MiB refuses /dev/zero and the like.
  return io::read_regular_file(path, out, std::uint64_t{64} << 20);
}

Status open_shard(const std::string& path, Checkpoint* ckpt) {
  if (ckpt->shards.count(path)) return Status::Ok();
  auto file = std::make_unique<io::SafetensorsFile>();
  HYPERATTN_RETURN_IF_ERROR(io::SafetensorsFile::open(path, file.get()));
  ckpt->shards.emplace(path, std::move(file));
  return Status::Ok();
}

Status open_checkpoint(const std::string& dir, Checkpoint* ckpt) {
  namespace fs = std::filesystem;
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  if (fs::exists(index)) {
    std::string text;
    HYPERATTN_RETURN_IF_ERROR(read_text(index, &text));
    std::vector<std::pair<std::string, std::string>> weight_map;
    HYPERATTN_RETURN_IF_ERROR(parse_shard_index(text, index, &weight_map));
    for (const auto& [name, shard] : weight_map) {
      const std::string path = dir + "/" + shard;
      HYPERATTN_RETURN_IF_ERROR(open_shard(path, ckpt));
      if (ckpt->shards.at(path)->find(name) == nullptr) {
        return Status::IoError(path + ": tensor \"" + name + "\" is listed in " + index +
                               " but not stored in this shard");
      }
      ckpt->tensor_file[name] = path;
    }
    // Tensors stored in a shard but not listed in the index are still part of the checkpoint.
    for (const auto& [path, shard] : ckpt->shards) {
      for (const auto& [name, tensor] : shard->tensors()) {
        if (!ckpt->tensor_file.count(name)) ckpt->tensor_file[name] = path;
      }
    }
    return Status::Ok();
  }
  if (fs::exists(single)) {
    HYPERATTN_RETURN_IF_ERROR(open_shard(single, ckpt));
    for (const auto& [name, tensor] : ckpt->shards.at(single)->tensors()) ckpt->tensor_file[name] = single;
    return Status::Ok();
  }
  return Status::IoError(dir + ": no model.safetensors and no model.safetensors.index.json");
}

// Loads tensor `name` with shape `expected` as fp32 into `dst` (which must hold its numel).
Status load_tensor(const Checkpoint& ckpt, const std::string& dir, const std::string& name,
                   const std::vector<std::int64_t>& expected, float* dst, std::set<std::string>* used) {
  auto where = ckpt.tensor_file.find(name);
  if (where == ckpt.tensor_file.end()) {
    return Status::IoError(dir + ": tensor \"" + name + "\" missing (expected shape " + shape_string(expected) + ")");
  }
  const io::SafetensorsTensor* t = ckpt.shards.at(where->second)->find(name);
  if (t->shape != expected) {
    return Status::IoError(where->second + ": tensor \"" + name + "\": expected shape " + shape_string(expected) +
                           ", found " + shape_string(t->shape));
  }
  const std::int64_t n = t->numel();
  switch (t->type) {
    case io::ElemType::f32:
      std::memcpy(dst, t->data, static_cast<std::size_t>(n) * sizeof(float));
      break;
    case io::ElemType::bf16:
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, t->data + 2 * i, 2);
        dst[i] = io::bf16_to_f32(bits);
      }
      break;
    case io::ElemType::f16:
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, t->data + 2 * i, 2);
        dst[i] = io::f16_to_f32(bits);
      }
      break;
    default:
      return Status::IoError(where->second + ": tensor \"" + name + "\": expected dtype F32, BF16 or F16, found " +
                             io::to_string(t->type));
  }
  used->insert(name);
  return Status::Ok();
}

// Checks tensor `name` from the safetensors header alone (present, shape `expected`, a float dtype):
// nothing is allocated, so a config.json that lies about the sizes costs only this message.
Status check_tensor(const Checkpoint& ckpt, const std::string& dir, const std::string& name,
                    const std::vector<std::int64_t>& expected) {
  auto where = ckpt.tensor_file.find(name);
  if (where == ckpt.tensor_file.end()) {
    return Status::IoError(dir + ": tensor \"" + name + "\" missing (expected shape " + shape_string(expected) +
                           " from config.json)");
  }
  const io::SafetensorsTensor* t = ckpt.shards.at(where->second)->find(name);
  if (t->shape != expected) {
    return Status::IoError(where->second + ": tensor \"" + name + "\": expected shape " + shape_string(expected) +
                           " (from config.json), found " + shape_string(t->shape));
  }
  if (t->type != io::ElemType::f32 && t->type != io::ElemType::bf16 && t->type != io::ElemType::f16) {
    return Status::IoError(where->second + ": tensor \"" + name + "\": expected dtype F32, BF16 or F16, found " +
                           io::to_string(t->type));
  }
  return Status::Ok();
}

std::size_t numel(const std::vector<std::int64_t>& shape) {
  std::size_t n = 1;
  for (auto s : shape) n *= static_cast<std::size_t>(s);
  return n;
}

}  // namespace

Status parse_shard_index(const std::string& json_text, const std::string& index,
                         std::vector<std::pair<std::string, std::string>>* weight_map) {
  json root;
  HYPERATTN_RETURN_IF_ERROR(io::parse_json(json_text, index, &root));
  if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
    return Status::IoError(index + ": expected an object with a \"weight_map\" object");
  }
  weight_map->clear();
  for (const auto& [name, file] : root["weight_map"].items()) {
    if (!file.is_string()) {
      return Status::IoError(index + ": weight_map[\"" + name + "\"]: expected a file name, found " + file.dump());
    }
    const std::string shard = file.get<std::string>();
    // Shards live next to the index: refuse paths that leave the folder.
    if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
        shard == "." || shard == "..") {
      return Status::IoError(index + ": weight_map[\"" + name +
                             "\"]: expected a file name in the model folder, found \"" + shard + "\"");
    }
    weight_map->emplace_back(name, shard);
  }
  return Status::Ok();
}

Status load_llama_weights(const std::string& dir, const LlamaConfig& c, LlamaWeights* out) {
  Checkpoint ckpt;
  HYPERATTN_RETURN_IF_ERROR(open_checkpoint(dir, &ckpt));
  const std::int64_t h = c.hidden_size, qw = c.q_width(), kvw = c.kv_width(), inter = c.intermediate_size;
  // Every tensor checked from the headers first: shapes, dtypes, and the layer count (the loop stops
  // at the first missing layer, so num_hidden_layers = 2^31 costs one lookup).
  HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, "model.embed_tokens.weight", {c.vocab_size, h}));
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "input_layernorm.weight", {h}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "self_attn.q_proj.weight", {qw, h}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "self_attn.k_proj.weight", {kvw, h}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "self_attn.v_proj.weight", {kvw, h}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "self_attn.o_proj.weight", {h, qw}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "post_attention_layernorm.weight", {h}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "mlp.gate_proj.weight", {inter, h}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "mlp.up_proj.weight", {inter, h}));
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, p + "mlp.down_proj.weight", {h, inter}));
  }
  HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, "model.norm.weight", {h}));
  if (!c.tie_word_embeddings || ckpt.tensor_file.count("lm_head.weight")) {
    HYPERATTN_RETURN_IF_ERROR(check_tensor(ckpt, dir, "lm_head.weight", {c.vocab_size, h}));
  }

  std::set<std::string> used;
  LlamaWeights w;
  auto load = [&](const std::string& name, std::vector<std::int64_t> shape, std::vector<float>* dst,
                  std::size_t offset) -> Status {
    if (dst->size() < offset + numel(shape)) dst->resize(offset + numel(shape));
    return load_tensor(ckpt, dir, name, shape, dst->data() + offset, &used);
  };

  HYPERATTN_RETURN_IF_ERROR(load("model.embed_tokens.weight", {c.vocab_size, h}, &w.embed_tokens, 0));
  w.layers.resize(static_cast<std::size_t>(c.num_layers));
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LlamaLayerWeights& lw = w.layers[static_cast<std::size_t>(l)];
    HYPERATTN_RETURN_IF_ERROR(load(p + "input_layernorm.weight", {h}, &lw.input_norm, 0));
    lw.qkv_proj.resize(static_cast<std::size_t>((qw + 2 * kvw) * h));
    HYPERATTN_RETURN_IF_ERROR(load(p + "self_attn.q_proj.weight", {qw, h}, &lw.qkv_proj, 0));
    HYPERATTN_RETURN_IF_ERROR(
        load(p + "self_attn.k_proj.weight", {kvw, h}, &lw.qkv_proj, static_cast<std::size_t>(qw * h)));
    HYPERATTN_RETURN_IF_ERROR(
        load(p + "self_attn.v_proj.weight", {kvw, h}, &lw.qkv_proj, static_cast<std::size_t>((qw + kvw) * h)));
    HYPERATTN_RETURN_IF_ERROR(load(p + "self_attn.o_proj.weight", {h, qw}, &lw.o_proj, 0));
    HYPERATTN_RETURN_IF_ERROR(load(p + "post_attention_layernorm.weight", {h}, &lw.post_norm, 0));
    lw.gate_up_proj.resize(static_cast<std::size_t>(2 * inter * h));
    HYPERATTN_RETURN_IF_ERROR(load(p + "mlp.gate_proj.weight", {inter, h}, &lw.gate_up_proj, 0));
    HYPERATTN_RETURN_IF_ERROR(
        load(p + "mlp.up_proj.weight", {inter, h}, &lw.gate_up_proj, static_cast<std::size_t>(inter * h)));
    HYPERATTN_RETURN_IF_ERROR(load(p + "mlp.down_proj.weight", {h, inter}, &lw.down_proj, 0));
  }
  HYPERATTN_RETURN_IF_ERROR(load("model.norm.weight", {h}, &w.final_norm, 0));
  if (!c.tie_word_embeddings) {
    HYPERATTN_RETURN_IF_ERROR(load("lm_head.weight", {c.vocab_size, h}, &w.lm_head, 0));
  } else if (ckpt.tensor_file.count("lm_head.weight")) {
    // Tied: a stored copy must at least have the embedding's shape; the embedding is used.
    std::vector<float> ignored;
    HYPERATTN_RETURN_IF_ERROR(load("lm_head.weight", {c.vocab_size, h}, &ignored, 0));
  }

  // Anything else (biases, extra layers, other architectures' tensors) means the checkpoint is not
  // the architecture we run. Precomputed rotary tables of old exports are harmless.
  for (const auto& [name, path] : ckpt.tensor_file) {
    if (used.count(name)) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    return Status::IoError(path + ": unexpected tensor \"" + name +
                           "\" (not part of a Llama decoder with this config.json: biases and extra "
                           "layers are not supported)");
  }
  *out = std::move(w);
  return Status::Ok();
}

}  // namespace hyperattn::model

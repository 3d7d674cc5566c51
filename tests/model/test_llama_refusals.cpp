// tests/model/test_llama_refusals.cpp: checkpoints the runner does not implement are refused with a
// message naming the file, the field or tensor, and what was expected and found.
#include <gtest/gtest.h>

#include "model/llama_model.hpp"
#include "model/llama_weights.hpp"
#include "tiny_llama.hpp"

namespace hyperattn::model {
namespace {

using namespace hyperattn::model::testing;

// Writes a tiny checkpoint, lets `mutate` change its config and tensors, and loads it.
Status load_mutated(const std::function<void(nlohmann::json&, TensorMap&)>& mutate, std::string* dir_out = nullptr) {
  TinyShape shape;
  static int counter = 0;
  TempDir dir("refuse" + std::to_string(counter++));
  TensorMap w = make_tiny_weights(shape, true, 1);
  nlohmann::json config = tiny_config(shape, true);
  mutate(config, w);
  write_json(dir.str() + "/config.json", config);
  EXPECT_TRUE(io::write_safetensors(dir.str() + "/model.safetensors", to_arrays(&w, io::ElemType::bf16)).ok());
  if (dir_out) *dir_out = dir.str();
  LlamaModel model;
  return LlamaModel::load(dir.str(), &model);
}

void expect_refused(const Status& s, const std::vector<std::string>& fragments) {
  ASSERT_FALSE(s.ok());
  for (const auto& f : fragments)
    EXPECT_NE(s.message().find(f), std::string::npos) << "\"" << f << "\" not in: " << s.message();
}

TEST(LlamaRefusals, UnmodifiedTinyCheckpointLoads) {
  Status s = load_mutated([](nlohmann::json&, TensorMap&) {});
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(LlamaRefusals, WrongArchitecture) {
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) { c["architectures"] = {"MistralForCausalLM"}; }),
                 {"config.json", "architectures", "LlamaForCausalLM", "MistralForCausalLM"});
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) { c["model_type"] = "gemma"; }),
                 {"model_type", "\"llama\"", "gemma"});
}

TEST(LlamaRefusals, WrongActivation) {
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) { c["hidden_act"] = "gelu"; }),
                 {"hidden_act", "silu", "gelu"});
}

TEST(LlamaRefusals, RopeScaling) {
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) {
                   c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
                 }),
                 {"rope_scaling", "null", "linear"});
}

TEST(LlamaRefusals, AttentionBias) {
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) { c["attention_bias"] = true; }),
                 {"attention_bias", "false", "true"});
}

TEST(LlamaRefusals, InconsistentHeads) {
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) { c["num_key_value_heads"] = 3; }),
                 {"num_key_value_heads", "divisor", "3"});
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) { c.erase("vocab_size"); }), {"vocab_size", "missing"});
}

TEST(LlamaRefusals, MissingTensor) {
  expect_refused(load_mutated([](nlohmann::json&, TensorMap& w) { w.erase("model.layers.1.mlp.up_proj.weight"); }),
                 {"model.layers.1.mlp.up_proj.weight", "missing", "[96, 64]"});
}

TEST(LlamaRefusals, MisshapenTensor) {
  expect_refused(
      load_mutated([](nlohmann::json&, TensorMap& w) {
        w["model.layers.0.self_attn.k_proj.weight"] = {{64, 64}, std::vector<float>(64 * 64, 0.0f)};
      }),
      {"model.safetensors", "model.layers.0.self_attn.k_proj.weight", "expected shape [32, 64]", "found [64, 64]"});
}

TEST(LlamaRefusals, UntiedWithoutLmHead) {
  expect_refused(load_mutated([](nlohmann::json& c, TensorMap&) { c["tie_word_embeddings"] = false; }),
                 {"lm_head.weight", "missing"});
}

TEST(LlamaRefusals, UnexpectedBiasTensor) {
  expect_refused(load_mutated([](nlohmann::json&, TensorMap& w) {
                   w["model.layers.0.self_attn.q_proj.bias"] = {{64}, std::vector<float>(64, 0.0f)};
                 }),
                 {"unexpected tensor", "model.layers.0.self_attn.q_proj.bias"});
}

TEST(LlamaRefusals, MissingFolder) {
  LlamaModel model;
  Status s = LlamaModel::load("/nonexistent/hyperattn/model", &model);
  expect_refused(s, {"/nonexistent/hyperattn/model/config.json", "cannot open"});
}

TEST(LlamaRefusals, IndexPointingOutsideTheFolder) {
  TinyShape shape;
  TempDir dir("index");
  TensorMap w = make_tiny_weights(shape, true, 1);
  write_json(dir.str() + "/config.json", tiny_config(shape, true));
  write_json(dir.str() + "/model.safetensors.index.json",
             {{"weight_map", {{"model.embed_tokens.weight", "../elsewhere.safetensors"}}}});
  LlamaModel model;
  expect_refused(LlamaModel::load(dir.str(), &model), {"model.safetensors.index.json", "../elsewhere.safetensors"});
}


// Issue 15: a key given twice in config.json or in the shard index is refused (nlohmann::json keeps
// the last one, so `"vocab_size": 8, "vocab_size": 4096` would silently read as 4096).
TEST(LlamaRefusals, DuplicateKeysInConfigAndIndex) {
  LlamaConfig c;
  expect_refused(parse_llama_config(R"({"model_type":"llama","vocab_size":8,"vocab_size":4096})", "/m/config.json", &c),
                 {"/m/config.json", "key 'vocab_size' appears twice", "expected each key once"});
  std::vector<std::pair<std::string, std::string>> map;
  expect_refused(parse_shard_index(R"({"weight_map":{"a":"x.safetensors","a":"y.safetensors"}})", "/m/index.json", &map),
                 {"/m/index.json", "key 'a' appears twice"});
  EXPECT_TRUE(parse_shard_index(R"({"weight_map":{"a":"x.safetensors","b":"x.safetensors"}})", "/m/index.json", &map).ok());
  EXPECT_EQ(map.size(), 2u);
}

}  // namespace
}  // namespace hyperattn::model

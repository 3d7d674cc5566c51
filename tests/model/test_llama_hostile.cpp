// tests/model/test_llama_hostile.cpp: a config.json that lies about the checkpoint's sizes is refused
// from the safetensors headers alone, before anything of the claimed size is allocated (a size of
// 2^40 would otherwise throw std::bad_alloc or exhaust memory).
#include <gtest/gtest.h>

#include "model/llama_config.hpp"
#include "model/llama_model.hpp"
#include "tiny_llama.hpp"

namespace hyperattn::model {
namespace {

using namespace hyperattn::model::testing;

Status load_with_config(const std::function<void(nlohmann::json&)>& mutate) {
  TinyShape shape;
  static int counter = 0;
  TempDir dir("hostile" + std::to_string(counter++));
  TensorMap w = make_tiny_weights(shape, true, 1);
  nlohmann::json config = tiny_config(shape, true);
  mutate(config);
  write_json(dir.str() + "/config.json", config);
  EXPECT_TRUE(io::write_safetensors(dir.str() + "/model.safetensors", to_arrays(&w, io::ElemType::bf16)).ok());
  LlamaModel model;
  try {
    return LlamaModel::load(dir.str(), &model);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("threw: ") + e.what());
  }
}

void expect_refused(const Status& s, const std::vector<std::string>& fragments) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().find("threw"), std::string::npos) << s.message();
  for (const auto& f : fragments)
    EXPECT_NE(s.message().find(f), std::string::npos) << "\"" << f << "\" not in: " << s.message();
}

TEST(LlamaHostile, HugeVocabSizeRefusedBeforeAllocation) {
  expect_refused(load_with_config([](nlohmann::json& c) { c["vocab_size"] = std::int64_t{1} << 40; }),
                 {"vocab_size", "1099511627776"});
  // Within the config's own limits, the embedding's header decides.
  expect_refused(load_with_config([](nlohmann::json& c) { c["vocab_size"] = std::int64_t{1} << 30; }),
                 {"model.embed_tokens.weight", "1073741824", "[40, 64]"});
}

TEST(LlamaHostile, HugeIntermediateSizeRefusedBeforeAllocation) {
  expect_refused(load_with_config([](nlohmann::json& c) { c["intermediate_size"] = std::int64_t{1} << 40; }),
                 {"intermediate_size", "1099511627776"});
  expect_refused(load_with_config([](nlohmann::json& c) { c["intermediate_size"] = std::int64_t{1} << 21; }),
                 {"mlp.gate_proj.weight", "2097152", "[96, 64]"});
}

TEST(LlamaHostile, HugeLayerCountRefusedBeforeAllocation) {
  expect_refused(load_with_config([](nlohmann::json& c) { c["num_hidden_layers"] = std::int64_t{1} << 31; }),
                 {"num_hidden_layers", "2147483648"});
  expect_refused(load_with_config([](nlohmann::json& c) { c["num_hidden_layers"] = 1000; }),
                 {"model.layers.2.", "missing"});
}

TEST(LlamaHostile, HugeHiddenAndHeadsRefused) {
  expect_refused(load_with_config([](nlohmann::json& c) {
                   c["hidden_size"] = std::int64_t{1} << 40;
                   c["num_attention_heads"] = std::int64_t{1} << 20;
                 }),
                 {"hidden_size"});
  expect_refused(load_with_config([](nlohmann::json& c) { c["max_position_embeddings"] = std::int64_t{1} << 40; }),
                 {"max_position_embeddings"});
}

TEST(LlamaHostile, ConfigSizesAreBounded) {
  LlamaConfig c;
  nlohmann::json j = tiny_config(TinyShape{}, true);
  j["vocab_size"] = std::int64_t{1} << 40;
  const Status s = parse_llama_config(j.dump(), "config.json", &c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("at most"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace hyperattn::model

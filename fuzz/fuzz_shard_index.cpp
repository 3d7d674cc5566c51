// fuzz/fuzz_shard_index.cpp: model::parse_shard_index (model.safetensors.index.json) on arbitrary
// text. Every accepted shard is a plain file name in the model folder: no path traversal.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_util.hpp"
#include "model/llama_weights.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hyperattn;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::pair<std::string, std::string>> map;
  const Status s = model::parse_shard_index(text, "model.safetensors.index.json", &map);
  if (!s.ok()) {
    HYPERATTN_FUZZ_CHECK(s.message().find("model.safetensors.index.json") != std::string::npos);
    return 0;
  }
  for (const auto& [name, shard] : map) {
    HYPERATTN_FUZZ_CHECK(!shard.empty());
    HYPERATTN_FUZZ_CHECK(shard.find('/') == std::string::npos && shard.find('\\') == std::string::npos);
    HYPERATTN_FUZZ_CHECK(shard != "." && shard != "..");
  }
  return 0;
}

// fuzz/fuzz_config_json.cpp: model::parse_llama_config on arbitrary text. Accepted configs satisfy
// the architecture's invariants (positive sizes within the caps, heads dividing evenly).
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "model/llama_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hyperattn;
  const std::string text(reinterpret_cast<const char*>(data), size);
  model::LlamaConfig c;
  const Status s = model::parse_llama_config(text, "config.json", &c);
  if (!s.ok()) {
    HYPERATTN_FUZZ_CHECK(s.message().find("config.json") != std::string::npos);
    return 0;
  }
  for (std::int64_t x : {c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers, c.heads_q, c.heads_kv,
                         c.head_dim, c.max_position_embeddings}) {
    HYPERATTN_FUZZ_CHECK(x > 0);
    HYPERATTN_FUZZ_CHECK(x <= (std::int64_t{1} << 31));
  }
  HYPERATTN_FUZZ_CHECK(c.heads_q % c.heads_kv == 0);
  HYPERATTN_FUZZ_CHECK(c.hidden_size == c.heads_q * c.head_dim);
  return 0;
}

// fuzz/fuzz_text.cpp: the --text reader (model::read_text_file) and the bundled model's tokenizer on
// arbitrary bytes (invalid UTF-8, NULs, long runs). Token ids stay inside the vocabulary.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "model/tokenizer.hpp"

namespace {
const hyperattn::model::Tokenizer& tokenizer() {
  static hyperattn::model::Tokenizer* t = [] {
    auto* tok = new hyperattn::model::Tokenizer();
    const char* dir = std::getenv("HYPERATTN_FUZZ_MODEL");
    const hyperattn::Status s =
        hyperattn::model::Tokenizer::load(dir != nullptr ? dir : HYPERATTN_SOURCE_DIR "/models/llama-11m-32k", tok);
    if (!s.ok()) {
      std::fprintf(stderr, "fuzz_text: %s\n", s.message().c_str());
      std::abort();
    }
    return tok;
  }();
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hyperattn;
  fuzz::MemFile file(data, size);
  std::string text;
  const Status s = model::read_text_file(file.path(), &text);
  HYPERATTN_FUZZ_CHECK(s.ok());  // any regular file is a text
  HYPERATTN_FUZZ_CHECK(text.size() == size);
  std::vector<std::int32_t> ids;
  const Status e = tokenizer().encode(text, &ids);
  if (!e.ok()) return 0;
  for (std::int32_t id : ids) HYPERATTN_FUZZ_CHECK(id >= 0 && id < tokenizer().vocab_size());
  return 0;
}

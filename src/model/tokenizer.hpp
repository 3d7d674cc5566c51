// src/model/tokenizer.hpp: the model's sentencepiece tokenizer (<dir>/tokenizer.model).
// A document is tokenized whole with the plain `encode` (no BOS/EOS added), as the reference does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hyperattn/status.hpp"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace hyperattn::model {

class Tokenizer {
 public:
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Loads `<dir>/tokenizer.model`.
  static Status load(const std::string& dir, Tokenizer* out);

  Status encode(const std::string& text, std::vector<std::int32_t>* ids) const;
  std::int64_t vocab_size() const;
  std::string piece(std::int32_t id) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

// Reads a whole text file.
Status read_text_file(const std::string& path, std::string* out);

}  // namespace hyperattn::model

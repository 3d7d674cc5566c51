// src/model/tokenizer.cpp: see tokenizer.hpp.
#include "model/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

namespace hyperattn::model {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Status Tokenizer::load(const std::string& dir, Tokenizer* out) {
  const std::string path = dir + "/tokenizer.model";
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = processor->Load(path);
  if (!status.ok()) return Status::IoError(path + ": cannot load the sentencepiece model: " + status.ToString());
  out->processor_ = std::move(processor);
  return Status::Ok();
}

Status Tokenizer::encode(const std::string& text, std::vector<std::int32_t>* ids) const {
  if (!processor_) return Status::InvalidArgument("Tokenizer::encode: no tokenizer loaded");
  std::vector<int> pieces;
  const auto status = processor_->Encode(text, &pieces);
  if (!status.ok()) return Status::InvalidArgument("sentencepiece encode failed: " + status.ToString());
  ids->assign(pieces.begin(), pieces.end());
  return Status::Ok();
}

std::int64_t Tokenizer::vocab_size() const { return processor_ ? processor_->GetPieceSize() : 0; }

std::string Tokenizer::piece(std::int32_t id) const {
  if (!processor_ || id < 0 || id >= processor_->GetPieceSize()) return "";
  return processor_->IdToPiece(id);
}

Status read_text_file(const std::string& path, std::string* out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::IoError(path + ": cannot open");
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return Status::IoError(path + ": read failed");
  *out = text.str();
  return Status::Ok();
}

}  // namespace hyperattn::model

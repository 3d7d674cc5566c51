// src/model/tokenizer.cpp: see tokenizer.hpp.
#include "model/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include "io/array_io.hpp"

namespace hyperattn::model {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Status Tokenizer::load(const std::string& dir, Tokenizer* out) {
  const std::string path = dir + "/tokenizer.model";
  // Read here (a regular file of at most 256 MiB), so that a FIFO or /dev/zero is refused, not read.
  std::string bytes;
  HYPERATTN_RETURN_IF_ERROR(io::read_regular_file(path, &bytes, std::uint64_t{256} << 20));
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = processor->LoadFromSerializedProto(bytes);
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
  // A regular file of at most 4 GiB: /dev/zero, a FIFO or a folder is refused without reading.
  return io::read_regular_file(path, out, std::uint64_t{4} << 30);
}

}  // namespace hyperattn::model

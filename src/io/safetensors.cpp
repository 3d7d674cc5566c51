// src/io/safetensors.cpp: the .safetensors reader (memory-mapped) and writer.
//
// Invariant of the reader: the sizes a header claims are checked (without overflow) against the
// file's real size before anything of that size is mapped, so a lying header costs nothing but an
// error message.
#include "io/array_io.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/array_detail.hpp"
#include "io/file_io.hpp"
#include "io/json_keys.hpp"

namespace hyperattn::io {
namespace {

using detail::checked_byte_count;
using detail::check_array_consistent;
using detail::errno_text;
using detail::FileDescriptor;
using detail::open_regular_file;
using detail::read_exact;
using detail::shape_numel;
using detail::shape_text;
using detail::write_file;

constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100u << 20;  // the reference implementation's cap

// safetensors dtype names.
struct SafetensorsDtype {
  const char* name;
  ElemType type;
};
constexpr SafetensorsDtype kSafetensorsDtypes[] = {
    {"F32", ElemType::f32}, {"F16", ElemType::f16}, {"BF16", ElemType::bf16}, {"F64", ElemType::f64},
    {"I32", ElemType::i32}, {"I64", ElemType::i64}, {"U8", ElemType::u8}};

const char* safetensors_dtype_name(ElemType type) {
  for (const auto& d : kSafetensorsDtypes) {
    if (d.type == type) return d.name;
  }
  return "?";
}

// A JSON value that is an integer in [0, int64 max].
bool json_nonnegative_int(const nlohmann::json& j, std::int64_t* out) {
  if (j.is_number_unsigned()) {
    const auto u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
    *out = static_cast<std::int64_t>(u);
    return true;
  }
  if (j.is_number_integer()) {
    const auto i = j.get<std::int64_t>();
    if (i < 0) return false;
    *out = i;
    return true;
  }
  return false;
}

// The bytes of one tensor inside the data section, for the overlap and coverage checks.
struct TensorRange {
  std::uint64_t begin, end;
  const std::string* name;
};

// Reads the 8-byte little-endian header length of an open .safetensors file, checked against the file.
Status read_header_length(const std::string& path, const FileDescriptor& fd, std::uint64_t file_size,
                          std::uint64_t* header_len_out) {
  if (file_size < 8) {
    return Status::IoError(path + ": not a .safetensors file (" + std::to_string(file_size) +
                           " bytes, shorter than the 8-byte header length)");
  }
  unsigned char len_bytes[8];
  HYPERATTN_RETURN_IF_ERROR(read_exact(path, fd.get(), 0, len_bytes, 8));
  std::uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<std::uint64_t>(len_bytes[i]) << (8 * i);
  if (header_len > file_size - 8) {
    return Status::IoError(path + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                           std::to_string(file_size - 8) + " bytes after the length field)");
  }
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Status::IoError(path + ": header length " + std::to_string(header_len) + " exceeds the " +
                           std::to_string(kMaxSafetensorsHeaderBytes) + "-byte limit");
  }
  *header_len_out = header_len;
  return Status::Ok();
}

// Parses the JSON header, refusing duplicate keys in any object (which a JSON object would silently
// collapse, the last one winning): a tensor name twice, or a field twice inside one tensor's entry
// ({"dtype":"F16","dtype":"F32"}) or inside __metadata__.
Status parse_header(const std::string& path, const char* header_begin, std::uint64_t header_len,
                    nlohmann::json* header_out) {
  detail::DuplicateKeyFinder duplicates;
  nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_len, duplicates.callback(),
                                                /*allow_exceptions=*/false);
  if (header.is_discarded()) return Status::IoError(path + ": the header is not valid JSON");
  if (!header.is_object()) return Status::IoError(path + ": the header must be a JSON object");
  if (!duplicates.duplicates().empty()) {
    const detail::DuplicateKey& d = duplicates.duplicates().front();
    const std::string what = d.nesting == 1 ? "tensor '" + d.key + "' appears twice in the header"
                             : d.nesting == 2
                                 ? "key '" + d.key + "' appears twice in the entry of '" + d.top_level_key + "'"
                                 : "key '" + d.key + "' appears twice inside the entry of '" + d.top_level_key + "'";
    return Status::IoError(path + ": " + what + "; expected each key once");
  }
  *header_out = std::move(header);
  return Status::Ok();
}

// The "__metadata__" entry: an object of strings.
Status parse_metadata(const std::string& path, const nlohmann::json& entry,
                      std::map<std::string, std::string>* metadata) {
  if (!entry.is_object()) return Status::IoError(path + ": '__metadata__' must be an object of strings");
  for (const auto& [key, value] : entry.items()) {
    if (!value.is_string()) {
      return Status::IoError(path + ": '__metadata__' entry '" + key + "' must be a string");
    }
    (*metadata)[key] = value.get<std::string>();
  }
  return Status::Ok();
}

// The entry of tensor `name`: its dtype, shape and data_offsets, checked against the data section
// (data_size bytes from data_section). *begin_out is the tensor's first byte in the section.
Status parse_tensor_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                          const std::byte* data_section, std::uint64_t data_size, SafetensorsTensor* tensor_out,
                          std::uint64_t* begin_out) {
  const std::string where = path + ": tensor '" + name + "'";
  if (!entry.is_object()) return Status::IoError(where + " must be a JSON object");
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || shape_it == entry.end() || offsets_it == entry.end()) {
    return Status::IoError(where + " needs 'dtype', 'shape' and 'data_offsets'");
  }
  if (!dtype_it->is_string()) return Status::IoError(where + ": 'dtype' must be a string");
  const std::string dtype = dtype_it->get<std::string>();
  const SafetensorsDtype* known = nullptr;
  for (const auto& d : kSafetensorsDtypes) {
    if (dtype == d.name) known = &d;
  }
  if (known == nullptr) {
    return Status::IoError(where + ": unsupported dtype '" + dtype +
                           "' (expected F32, F16, BF16, F64, I32, I64 or U8)");
  }
  if (!shape_it->is_array()) return Status::IoError(where + ": 'shape' must be an array of integers");
  SafetensorsTensor tensor;
  tensor.name = name;
  tensor.type = known->type;
  for (const auto& d : *shape_it) {
    std::int64_t dim = 0;
    if (!json_nonnegative_int(d, &dim)) {
      return Status::IoError(where + ": 'shape' must hold non-negative integers, got " + d.dump());
    }
    tensor.shape.push_back(dim);
  }
  std::int64_t begin = 0;
  std::int64_t end = 0;
  if (!offsets_it->is_array() || offsets_it->size() != 2 || !json_nonnegative_int((*offsets_it)[0], &begin) ||
      !json_nonnegative_int((*offsets_it)[1], &end)) {
    return Status::IoError(where + ": 'data_offsets' must be [begin, end] with non-negative integers, got " +
                           offsets_it->dump());
  }
  if (begin > end) {
    return Status::IoError(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                           "] has begin > end");
  }
  const auto ubegin = static_cast<std::uint64_t>(begin);
  const auto uend = static_cast<std::uint64_t>(end);
  if (uend > data_size) {
    return Status::IoError(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                           "] run past the end of the data section (" + std::to_string(data_size) + " bytes)");
  }
  std::uint64_t numel = 0;
  std::uint64_t nbytes = 0;
  if (!checked_byte_count(tensor.shape, size_of(tensor.type), &numel, &nbytes)) {
    return Status::IoError(where + ": shape " + shape_text(tensor.shape) + " overflows a 64-bit byte count");
  }
  if (nbytes != uend - ubegin) {
    return Status::IoError(where + ": shape " + shape_text(tensor.shape) + " " + dtype + " = " +
                           std::to_string(nbytes) + " bytes, but data_offsets [" + std::to_string(begin) + ", " +
                           std::to_string(end) + "] span " + std::to_string(uend - ubegin) + " bytes");
  }
  tensor.data = data_section + ubegin;
  tensor.nbytes = nbytes;
  *tensor_out = std::move(tensor);
  *begin_out = ubegin;
  return Status::Ok();
}

// Refuses overlapping tensors and bytes of the data section that no tensor covers.
Status check_tensor_ranges(const std::string& path, std::vector<TensorRange> ranges, std::uint64_t data_size) {
  std::sort(ranges.begin(), ranges.end(),
            [](const TensorRange& a, const TensorRange& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return Status::IoError(path + ": tensors '" + *ranges[i - 1].name + "' [" + std::to_string(ranges[i - 1].begin) +
                             ", " + std::to_string(ranges[i - 1].end) + ") and '" + *ranges[i].name + "' [" +
                             std::to_string(ranges[i].begin) + ", " + std::to_string(ranges[i].end) + ") overlap");
    }
  }
  // The tensors must cover the data section exactly, as the format requires: bytes no tensor
  // references (a gap, or trailing bytes) mean a lying or damaged header.
  std::uint64_t covered = 0;
  for (const TensorRange& r : ranges) {
    if (r.begin != covered) {
      return Status::IoError(path + ": bytes [" + std::to_string(covered) + ", " + std::to_string(r.begin) +
                             ") of the data section belong to no tensor (the next one, '" + *r.name +
                             "', starts at " + std::to_string(r.begin) +
                             "); expected the tensors to cover the data section without gaps");
    }
    covered = r.end;
  }
  if (covered != data_size) {
    return Status::IoError(path + ": the tensors cover " + std::to_string(covered) + " bytes but the data section has " +
                           std::to_string(data_size) + " (bytes [" + std::to_string(covered) + ", " +
                           std::to_string(data_size) + ") belong to no tensor); expected them to cover it exactly");
  }
  return Status::Ok();
}

}  // namespace

std::int64_t SafetensorsTensor::numel() const { return shape_numel(shape); }

Array SafetensorsTensor::to_array() const {
  Array a;
  a.type = type;
  a.shape = shape;
  a.bytes.resize(static_cast<std::size_t>(nbytes));
  if (nbytes > 0) std::memcpy(a.bytes.data(), data, static_cast<std::size_t>(nbytes));
  return a;
}

SafetensorsFile::~SafetensorsFile() { release(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      tensors_(std::move(other.tensors_)),
      metadata_(std::move(other.metadata_)) {
  other.tensors_.clear();
  other.metadata_.clear();
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
    other.tensors_.clear();
    other.metadata_.clear();
  }
  return *this;
}

void SafetensorsFile::release() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
  tensors_.clear();
  metadata_.clear();
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Status SafetensorsFile::open(const std::string& path, SafetensorsFile* out) {
  if (out == nullptr) return Status::InvalidArgument("SafetensorsFile::open: `out` is null");
  int raw_fd = -1;
  std::uint64_t file_size = 0;
  HYPERATTN_RETURN_IF_ERROR(open_regular_file(path, &raw_fd, &file_size));
  const FileDescriptor fd(raw_fd);
  std::uint64_t header_len = 0;
  HYPERATTN_RETURN_IF_ERROR(read_header_length(path, fd, file_size, &header_len));

  SafetensorsFile file;
  file.path_ = path;
  void* map = ::mmap(nullptr, static_cast<std::size_t>(file_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map == MAP_FAILED) return Status::IoError(path + ": mmap failed: " + errno_text());
  file.map_ = map;
  file.map_size_ = static_cast<std::size_t>(file_size);
  const auto* base = static_cast<const std::byte*>(map);
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  const std::byte* data_section = base + 8 + header_len;
  const std::uint64_t data_size = file_size - 8 - header_len;

  nlohmann::json header;
  HYPERATTN_RETURN_IF_ERROR(parse_header(path, header_begin, header_len, &header));
  std::vector<TensorRange> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      HYPERATTN_RETURN_IF_ERROR(parse_metadata(path, entry, &file.metadata_));
      continue;
    }
    SafetensorsTensor tensor;
    std::uint64_t begin = 0;
    HYPERATTN_RETURN_IF_ERROR(parse_tensor_entry(path, name, entry, data_section, data_size, &tensor, &begin));
    const std::uint64_t nbytes = tensor.nbytes;
    const auto [it, inserted] = file.tensors_.emplace(name, std::move(tensor));
    if (nbytes > 0) ranges.push_back({begin, begin + nbytes, &it->first});
  }
  HYPERATTN_RETURN_IF_ERROR(check_tensor_ranges(path, std::move(ranges), data_size));
  *out = std::move(file);
  return Status::Ok();
}

Status write_safetensors(const std::string& path, const std::map<std::string, Array>& tensors) {
  return write_safetensors(path, tensors, {});
}

Status write_safetensors(const std::string& path, const std::map<std::string, Array>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  // Tensors are laid out back to back (readers such as the Python package refuse holes), widest
  // element type first: the data section starts 8-byte aligned, so every tensor is then aligned
  // to its element size inside the mapping.
  std::vector<std::pair<const std::string*, const Array*>> order;
  for (const auto& [name, array] : tensors) {
    if (name == "__metadata__") {
      return Status::InvalidArgument(path + ": '__metadata__' is reserved and cannot name a tensor");
    }
    HYPERATTN_RETURN_IF_ERROR(check_array_consistent(path + ": tensor '" + name + "'", array));
    order.emplace_back(&name, &array);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return size_of(a.second->type) > size_of(b.second->type); });
  nlohmann::json header = nlohmann::json::object();
  std::vector<const Array*> bodies;
  std::uint64_t offset = 0;
  for (const auto& [name_ptr, array_ptr] : order) {
    const std::string& name = *name_ptr;
    const Array& array = *array_ptr;
    const std::uint64_t end = offset + array.bytes.size();
    header[name] = {
        {"dtype", safetensors_dtype_name(array.type)}, {"shape", array.shape}, {"data_offsets", {offset, end}}};
    offset = end;
    bodies.push_back(&array);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(path + ": a tensor name or metadata entry is not valid UTF-8 (" + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  std::string head(8, '\0');
  for (int i = 0; i < 8; ++i) head[static_cast<std::size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  head += text;
  return write_file(path, head, bodies);
}

}  // namespace hyperattn::io

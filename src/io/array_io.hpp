// src/io/array_io.hpp: reading and writing .npy and .safetensors files, refusing malformed ones.
//
// Every reader validates the header against the file's real size before allocating anything:
// a truncated, lying or malformed file (bad magic, bad header, unknown dtype, Fortran order,
// shapes whose byte count overflows or exceeds the file, offsets past the end, overlapping
// tensors, duplicate keys in a .safetensors header, data bytes no tensor covers) yields
// Status::IoError naming the file, what was expected and what arrived.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "hyperattn/status.hpp"

namespace hyperattn::io {

enum class ElemType : std::uint8_t { f32, f16, bf16, f64, i32, i64, u8 };

const char* to_string(ElemType type);
std::size_t size_of(ElemType type);

// An owned, C-ordered array.
struct Array {
  ElemType type = ElemType::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;  // numel * size_of(type) bytes, little-endian

  std::int64_t numel() const;
  // The elements converted to fp32 (f32, f16, bf16, f64, i32, i64, u8).
  std::vector<float> to_f32() const;
  static Array from_f32(std::vector<std::int64_t> shape, const float* data);
  static Array from_i32(std::vector<std::int64_t> shape, const std::int32_t* data);
};

// .npy, format versions 1.0, 2.0 and 3.0; little-endian <f4 <f2 <f8 <i4 <i8 |u1 and
// big-endian refused; C order only. `max_bytes` caps the data size (default 16 GiB).
Status read_npy(const std::string& path, Array* out, std::uint64_t max_bytes = (1ull << 34));
Status write_npy(const std::string& path, const Array& array);

// A .safetensors file, memory-mapped; the tensors point into the mapping.
struct SafetensorsTensor {
  std::string name;
  ElemType type = ElemType::f32;       // F32, F16, BF16, F64, I32, I64, U8
  std::vector<std::int64_t> shape;
  const std::byte* data = nullptr;     // numel * size_of(type) bytes inside the mapping
  std::uint64_t nbytes = 0;

  std::int64_t numel() const;
  Array to_array() const;              // a copy
};

class SafetensorsFile {
 public:
  SafetensorsFile() = default;
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;

  static Status open(const std::string& path, SafetensorsFile* out);

  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  void release();
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::map<std::string, SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (name -> array) as a .safetensors file.
Status write_safetensors(const std::string& path, const std::map<std::string, Array>& tensors);
// The same, with a "__metadata__" string map (e.g. what wrote the file).
Status write_safetensors(const std::string& path, const std::map<std::string, Array>& tensors,
                         const std::map<std::string, std::string>& metadata);

// Reads the whole of `path` into `out`, refusing (without blocking) what is not a regular file
// (a directory, a FIFO, /dev/zero) and files over `max_bytes`: IoError naming the path.
Status read_regular_file(const std::string& path, std::string* out, std::uint64_t max_bytes);

// Parses JSON text read from `path` (named in messages), refusing a key that appears twice in one
// object (nlohmann::json would keep the last one silently): IoError "<path>: not valid JSON: ..." or
// "<path>: key 'k' appears twice in one object (...); expected each key once".
Status parse_json(const std::string& text, const std::string& path, nlohmann::json* out);

// bf16/f16 <-> f32 conversions (round to nearest even), shared by the readers and the tools.
float bf16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_bf16(float value);
float f16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_f16(float value);

}  // namespace hyperattn::io

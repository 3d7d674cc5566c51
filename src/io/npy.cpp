// src/io/npy.cpp: the .npy reader and writer (format versions 1.0, 2.0 and 3.0).
//
// Invariant of the reader: the sizes a header claims are checked (without overflow) against the
// file's real size before anything of that size is allocated, so a lying header costs nothing but
// an error message.
#include "io/array_io.hpp"

#include <bit>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "io/array_detail.hpp"
#include "io/file_io.hpp"
#include "io/py_literal.hpp"

namespace hyperattn::io {
namespace {

using detail::checked_byte_count;
using detail::check_array_consistent;
using detail::dict_get;
using detail::FileDescriptor;
using detail::open_regular_file;
using detail::parse_py_literal;
using detail::PyValue;
using detail::read_exact;
using detail::shape_text;
using detail::write_file;

constexpr std::uint64_t kMaxNpyHeaderBytes = 1u << 20;  // numpy itself writes < 1 KiB

// numpy descr -> element type. Little-endian or byte-order-free only.
Status parse_descr(const std::string& path, const std::string& descr, ElemType* out) {
  if (descr.size() < 2) return Status::IoError(path + ": unsupported dtype '" + descr + "'");
  const char order = descr[0];
  const std::string code = descr.substr(1);
  if (order == '>' || (order == '=' && std::endian::native == std::endian::big)) {
    return Status::IoError(path + ": big-endian dtype '" + descr + "' is not supported (convert with array.astype('<" +
                           code + "'))");
  }
  if (order != '<' && order != '|' && order != '=') {
    return Status::IoError(path + ": unsupported dtype '" + descr + "'");
  }
  struct Entry {
    const char* code;
    ElemType type;
  };
  static constexpr Entry kTable[] = {{"f4", ElemType::f32}, {"f2", ElemType::f16}, {"f8", ElemType::f64},
                                     {"i4", ElemType::i32}, {"i8", ElemType::i64}, {"u1", ElemType::u8}};
  for (const Entry& e : kTable) {
    if (code == e.code) {
      *out = e.type;
      return Status::Ok();
    }
  }
  return Status::IoError(path + ": unsupported dtype '" + descr + "' (expected one of <f4 <f2 <f8 <i4 <i8 |u1)");
}

const char* npy_descr(ElemType type) {
  switch (type) {
    case ElemType::f32:
      return "<f4";
    case ElemType::f16:
      return "<f2";
    case ElemType::f64:
      return "<f8";
    case ElemType::i32:
      return "<i4";
    case ElemType::i64:
      return "<i8";
    case ElemType::u8:
      return "|u1";
    case ElemType::bf16:
      return nullptr;  // numpy has no bfloat16
  }
  return nullptr;
}

// Reads the preamble and the header text of an open .npy file; *data_start is the data's offset.
Status read_npy_header(const std::string& path, const FileDescriptor& fd, std::uint64_t file_size,
                       std::string* header_out, std::uint64_t* data_start) {
  // Preamble: "\x93NUMPY", major, minor, then a 2-byte (v1) or 4-byte (v2, v3) header length.
  unsigned char pre[12] = {};
  if (file_size < 10) {
    return Status::IoError(path + ": not a .npy file (" + std::to_string(file_size) +
                           " bytes, shorter than the 10-byte preamble)");
  }
  HYPERATTN_RETURN_IF_ERROR(read_exact(path, fd.get(), 0, pre, 10));
  if (std::memcmp(pre, "\x93NUMPY", 6) != 0) {
    return Status::IoError(path + ": not a .npy file (the magic string \\x93NUMPY is missing)");
  }
  const int major = pre[6];
  const int minor = pre[7];
  if (major < 1 || major > 3 || minor != 0) {
    return Status::IoError(path + ": unsupported .npy format version " + std::to_string(major) + "." +
                           std::to_string(minor) + " (expected 1.0, 2.0 or 3.0)");
  }
  std::uint64_t header_len = 0;
  std::uint64_t header_start = 10;
  if (major == 1) {
    header_len = static_cast<std::uint64_t>(pre[8]) | (static_cast<std::uint64_t>(pre[9]) << 8);
  } else {
    if (file_size < 12)
      return Status::IoError(path + ": truncated .npy preamble (" + std::to_string(file_size) + " bytes)");
    HYPERATTN_RETURN_IF_ERROR(read_exact(path, fd.get(), 10, pre + 10, 2));
    header_start = 12;
    header_len = static_cast<std::uint64_t>(pre[8]) | (static_cast<std::uint64_t>(pre[9]) << 8) |
                 (static_cast<std::uint64_t>(pre[10]) << 16) | (static_cast<std::uint64_t>(pre[11]) << 24);
  }
  if (header_len > file_size - header_start) {
    return Status::IoError(path + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                           std::to_string(file_size - header_start) + " bytes after the preamble)");
  }
  if (header_len > kMaxNpyHeaderBytes) {
    return Status::IoError(path + ": header length " + std::to_string(header_len) + " exceeds the " +
                           std::to_string(kMaxNpyHeaderBytes) + "-byte limit");
  }
  std::string header(static_cast<std::size_t>(header_len), '\0');
  HYPERATTN_RETURN_IF_ERROR(read_exact(path, fd.get(), header_start, header.data(), header.size()));
  *data_start = header_start + header_len;
  *header_out = std::move(header);
  return Status::Ok();
}

// The element type and the shape that a .npy header dict describes.
Status parse_npy_header(const std::string& path, const std::string& header, ElemType* type_out,
                        std::vector<std::int64_t>* shape_out) {
  PyValue dict;
  std::string parse_error;
  if (!parse_py_literal(header, &dict, &parse_error)) {
    return Status::IoError(path + ": malformed header dict (" + parse_error + ")");
  }
  if (dict.kind != PyValue::Kind::dict) return Status::IoError(path + ": malformed header: expected a dict");
  const PyValue* descr = dict_get(dict, "descr");
  const PyValue* fortran = dict_get(dict, "fortran_order");
  const PyValue* shape_value = dict_get(dict, "shape");
  if (descr == nullptr || fortran == nullptr || shape_value == nullptr) {
    return Status::IoError(path + ": malformed header: it needs the keys 'descr', 'fortran_order' and 'shape'");
  }
  if (descr->kind != PyValue::Kind::string) {
    return Status::IoError(path + ": structured or non-string dtype descriptions are not supported");
  }
  HYPERATTN_RETURN_IF_ERROR(parse_descr(path, descr->text, type_out));
  if (fortran->kind != PyValue::Kind::boolean) {
    return Status::IoError(path + ": malformed header: 'fortran_order' must be True or False");
  }
  if (fortran->boolean) {
    return Status::IoError(path + ": Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
  }
  if (shape_value->kind != PyValue::Kind::tuple) {
    return Status::IoError(path + ": malformed header: 'shape' must be a tuple of integers");
  }
  std::vector<std::int64_t> shape;  // [rank]
  for (const PyValue& d : shape_value->items) {
    if (d.kind != PyValue::Kind::integer) {
      return Status::IoError(path + ": malformed header: 'shape' must be a tuple of integers");
    }
    if (d.integer < 0) {
      return Status::IoError(path + ": malformed header: negative dimension " + std::to_string(d.integer) +
                             " in 'shape'");
    }
    shape.push_back(d.integer);
  }
  *shape_out = std::move(shape);
  return Status::Ok();
}

}  // namespace

Status read_npy(const std::string& path, Array* out, std::uint64_t max_bytes) {
  if (out == nullptr) return Status::InvalidArgument("read_npy: `out` is null");
  int raw_fd = -1;
  std::uint64_t file_size = 0;
  HYPERATTN_RETURN_IF_ERROR(open_regular_file(path, &raw_fd, &file_size));
  const FileDescriptor fd(raw_fd);

  std::string header;
  std::uint64_t data_start = 0;
  HYPERATTN_RETURN_IF_ERROR(read_npy_header(path, fd, file_size, &header, &data_start));
  ElemType type = ElemType::f32;
  std::vector<std::int64_t> shape;
  HYPERATTN_RETURN_IF_ERROR(parse_npy_header(path, header, &type, &shape));
  std::uint64_t numel = 0;
  std::uint64_t nbytes = 0;
  if (!checked_byte_count(shape, size_of(type), &numel, &nbytes)) {
    return Status::IoError(path + ": header says shape " + shape_text(shape) + " " + to_string(type) +
                           ", whose byte count overflows a 64-bit integer");
  }
  const std::uint64_t available = file_size - data_start;
  if (nbytes != available) {
    return Status::IoError(path + ": header says shape " + shape_text(shape) + " " + to_string(type) + " = " +
                           std::to_string(nbytes) + " bytes of data, but the file has " + std::to_string(available) +
                           " bytes after the header");
  }
  if (nbytes > max_bytes) {
    return Status::IoError(path + ": " + std::to_string(nbytes) + " bytes of data exceed the limit of " +
                           std::to_string(max_bytes) + " bytes");
  }
  if (nbytes > std::numeric_limits<std::size_t>::max()) {
    return Status::IoError(path + ": too large for this platform");
  }

  Array result;
  result.type = type;
  result.shape = std::move(shape);
  try {
    result.bytes.resize(static_cast<std::size_t>(nbytes));
  } catch (const std::bad_alloc&) {
    return Status::OutOfMemory(path + ": cannot allocate " + std::to_string(nbytes) + " bytes");
  }
  HYPERATTN_RETURN_IF_ERROR(read_exact(path, fd.get(), data_start, result.bytes.data(), result.bytes.size()));
  *out = std::move(result);
  return Status::Ok();
}

Status write_npy(const std::string& path, const Array& array) {
  const char* descr = npy_descr(array.type);
  if (descr == nullptr) {
    return Status::InvalidArgument(path + ": numpy has no " + std::string(to_string(array.type)) +
                                   " dtype; write it as .safetensors or convert to float32");
  }
  HYPERATTN_RETURN_IF_ERROR(check_array_consistent(path, array));
  std::string dict =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape_text(array.shape) + ", }";
  // Pad with spaces and end with '\n' so that the data starts at a multiple of 64 bytes.
  auto padded_header = [&](std::size_t preamble) {
    std::string h = dict;
    const std::size_t total = preamble + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h += '\n';
    return h;
  };
  std::string head;
  std::string h = padded_header(10);
  if (h.size() <= 0xffff) {
    head = std::string("\x93NUMPY\x01\x00", 8);
    head += static_cast<char>(h.size() & 0xff);
    head += static_cast<char>((h.size() >> 8) & 0xff);
  } else {
    h = padded_header(12);
    head = std::string("\x93NUMPY\x02\x00", 8);
    for (int i = 0; i < 4; ++i) head += static_cast<char>((h.size() >> (8 * i)) & 0xff);
  }
  head += h;
  return write_file(path, head, {&array});
}

}  // namespace hyperattn::io

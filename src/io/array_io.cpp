// src/io/array_io.cpp: .npy and .safetensors readers and writers.
//
// Invariant of every reader: the sizes a header claims are checked (without overflow) against
// the file's real size before anything of that size is allocated or mapped, so a lying header
// costs nothing but an error message.
#include "io/array_io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>

#include "core/bfloat16.hpp"

namespace hyperattn::io {
namespace {

constexpr std::uint64_t kMaxNpyHeaderBytes = 1u << 20;            // numpy itself writes < 1 KiB
constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100u << 20;  // the reference implementation's cap

std::string errno_text() { return std::strerror(errno); }

// "(4, 1024, 64)", the way numpy prints shapes.
std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// The product of the dimensions: 0 when any is 0 (even if the others would overflow: a (0, 2^62,
// 2^62) array is valid and empty; found by fuzzing), saturating at INT64_MAX otherwise (the readers
// refuse such shapes before any array exists).
std::int64_t shape_numel(const std::vector<std::int64_t>& shape) {
  for (std::int64_t d : shape)
    if (d == 0) return 0;
  std::int64_t n = 1;
  for (std::int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return std::numeric_limits<std::int64_t>::max();
  return n;
}

// numel * elem_size, or false when a dimension is negative or the product overflows int64.
bool checked_byte_count(const std::vector<std::int64_t>& shape, std::size_t elem_size, std::uint64_t* numel_out,
                        std::uint64_t* bytes_out) {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t numel = 1;
  bool zero = false;
  for (std::int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) zero = true;
  }
  if (zero) {
    *numel_out = 0;
    *bytes_out = 0;
    return true;
  }
  for (std::int64_t d : shape) {
    const auto ud = static_cast<std::uint64_t>(d);
    if (numel > kMax / ud) return false;
    numel *= ud;
  }
  if (numel > kMax / elem_size) return false;
  *numel_out = numel;
  *bytes_out = numel * elem_size;
  return true;
}

// An open file descriptor, closed on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status open_regular_file(const std::string& path, int* fd_out, std::uint64_t* size_out) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Status::IoError(path + ": cannot open for reading: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    return Status::IoError(path + ": cannot stat: " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    const char* what = S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device" : S_ISSOCK(st.st_mode) ? "a socket" : "not a plain file";
    return Status::IoError(path + ": not a regular file (it is " + std::string(what) + "); expected a regular file");
  }
  *fd_out = fd;
  *size_out = static_cast<std::uint64_t>(st.st_size);
  return Status::Ok();
}

// Reads exactly `size` bytes at `offset`; a short read is an error.
Status read_exact(const std::string& path, int fd, std::uint64_t offset, void* dst, std::size_t size) {
  auto* p = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(path + ": read failed: " + errno_text());
    }
    if (n == 0) {
      return Status::IoError(path + ": file shrank while reading (expected " + std::to_string(size) +
                             " bytes at offset " + std::to_string(offset) + ")");
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

// Writes a whole file; on failure the partial file is removed.
Status write_file(const std::string& path, const std::string& head, const std::vector<const Array*>& bodies) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return Status::IoError(path + ": cannot open for writing: " + errno_text());
  bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
  for (const Array* a : bodies) {
    if (!ok) break;
    if (!a->bytes.empty()) ok = std::fwrite(a->bytes.data(), 1, a->bytes.size(), f) == a->bytes.size();
  }
  const std::string why = ok ? std::string() : errno_text();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(path.c_str());
    return Status::IoError(path + ": write failed: " + (ok ? errno_text() : why));
  }
  return Status::Ok();
}

Status check_array_consistent(const std::string& path, const Array& array) {
  std::uint64_t numel = 0;
  std::uint64_t nbytes = 0;
  if (!checked_byte_count(array.shape, size_of(array.type), &numel, &nbytes)) {
    return Status::InvalidArgument(path + ": array shape " + shape_text(array.shape) +
                                   " has a negative dimension or too many elements");
  }
  if (nbytes != array.bytes.size()) {
    return Status::InvalidArgument(path + ": array shape " + shape_text(array.shape) + " " + to_string(array.type) +
                                   " needs " + std::to_string(nbytes) + " bytes, but the array holds " +
                                   std::to_string(array.bytes.size()));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// The .npy header: a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// parsed by a small recursive-descent parser for the literal subset numpy writes (strings,
// integers, True/False/None, tuples, lists, dicts), so that unknown keys are skipped safely.

struct PyValue {
  enum class Kind { string, integer, boolean, none, tuple, list, dict } kind = Kind::none;
  std::string text;               // string
  std::int64_t integer = 0;       // integer (fits int64)
  bool boolean = false;           // boolean
  std::vector<PyValue> items;     // tuple, list; dict values (keys in `keys`)
  std::vector<std::string> keys;  // dict keys (strings only)
};

class PyLiteralParser {
 public:
  explicit PyLiteralParser(std::string_view text) : s_(text) {}

  bool parse_top(PyValue* out) {
    skip_space();
    if (!parse_value(out, 0)) return false;
    skip_space();
    if (pos_ != s_.size()) return fail("unexpected text after the closing brace");
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string why) {
    if (error_.empty()) error_ = std::move(why) + " at offset " + std::to_string(pos_);
    return false;
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool parse_value(PyValue* out, int depth) {
    if (depth > 32) return fail("nesting too deep");
    skip_space();
    if (pos_ >= s_.size()) return fail("unexpected end of header");
    const char c = s_[pos_];
    if (c == '\'' || c == '"') return parse_string(out);
    if (c == '(') return parse_sequence(out, ')', PyValue::Kind::tuple, depth);
    if (c == '[') return parse_sequence(out, ']', PyValue::Kind::list, depth);
    if (c == '{') return parse_dict(out, depth);
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return parse_integer(out);
    for (auto [word, kind, value] :
         {std::tuple{"True", PyValue::Kind::boolean, true}, std::tuple{"False", PyValue::Kind::boolean, false},
          std::tuple{"None", PyValue::Kind::none, false}}) {
      const std::string_view w(word);
      if (s_.substr(pos_, w.size()) == w) {
        pos_ += w.size();
        out->kind = kind;
        out->boolean = value;
        return true;
      }
    }
    return fail(std::string("unexpected character '") + c + "'");
  }
  bool parse_string(PyValue* out) {
    const char quote = s_[pos_++];
    out->kind = PyValue::Kind::string;
    out->text.clear();
    while (pos_ < s_.size() && s_[pos_] != quote) {
      char c = s_[pos_++];
      if (c == '\\') {
        if (pos_ >= s_.size()) break;
        c = s_[pos_++];
      }
      out->text += c;
    }
    if (pos_ >= s_.size()) return fail("unterminated string");
    ++pos_;
    return true;
  }
  bool parse_integer(PyValue* out) {
    const std::size_t start = pos_;
    bool negative = false;
    if (s_[pos_] == '-' || s_[pos_] == '+') negative = s_[pos_++] == '-';
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') return fail("malformed number");
    std::uint64_t magnitude = 0;
    constexpr std::uint64_t kLimit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const auto digit = static_cast<std::uint64_t>(s_[pos_] - '0');
      if (magnitude > (kLimit - digit) / 10) {
        pos_ = start;
        return fail("integer does not fit in int64");
      }
      magnitude = magnitude * 10 + digit;
      ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E' || s_[pos_] == 'j')) {
      return fail("non-integer number");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'L' || s_[pos_] == 'l')) ++pos_;  // Python 2 long
    out->kind = PyValue::Kind::integer;
    out->integer = negative ? -static_cast<std::int64_t>(magnitude) : static_cast<std::int64_t>(magnitude);
    return true;
  }
  bool parse_sequence(PyValue* out, char close, PyValue::Kind kind, int depth) {
    ++pos_;
    out->kind = kind;
    out->items.clear();
    bool had_comma = false;
    while (true) {
      if (consume(close)) break;
      if (!out->items.empty() && !had_comma) return fail(std::string("expected ',' or '") + close + "'");
      PyValue item;
      if (!parse_value(&item, depth + 1)) return false;
      out->items.push_back(std::move(item));
      had_comma = consume(',');
    }
    // (3) is the integer 3 in Python, not a tuple: numpy always writes (3,).
    if (kind == PyValue::Kind::tuple && out->items.size() == 1 && !had_comma) {
      return fail("a one-element tuple needs a trailing comma");
    }
    return true;
  }
  bool parse_dict(PyValue* out, int depth) {
    ++pos_;
    out->kind = PyValue::Kind::dict;
    out->items.clear();
    out->keys.clear();
    bool had_comma = true;
    while (true) {
      if (consume('}')) return true;
      if (!had_comma) return fail("expected ',' or '}'");
      skip_space();
      if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) return fail("expected a string key");
      PyValue key;
      if (!parse_string(&key)) return false;
      if (std::find(out->keys.begin(), out->keys.end(), key.text) != out->keys.end()) {
        return fail("duplicate key '" + key.text + "'");
      }
      if (!consume(':')) return fail("expected ':' after key '" + key.text + "'");
      PyValue value;
      if (!parse_value(&value, depth + 1)) return false;
      out->keys.push_back(std::move(key.text));
      out->items.push_back(std::move(value));
      had_comma = consume(',');
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::string error_;
};

const PyValue* dict_get(const PyValue& dict, std::string_view key) {
  for (std::size_t i = 0; i < dict.keys.size(); ++i) {
    if (dict.keys[i] == key) return &dict.items[i];
  }
  return nullptr;
}

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

// ---------------------------------------------------------------------------------------------
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

}  // namespace

Status read_regular_file(const std::string& path, std::string* out, std::uint64_t max_bytes) {
  int raw_fd = -1;
  std::uint64_t size = 0;
  HYPERATTN_RETURN_IF_ERROR(open_regular_file(path, &raw_fd, &size));
  const FileDescriptor fd(raw_fd);
  if (size > max_bytes) {
    return Status::IoError(path + ": " + std::to_string(size) + " bytes; expected at most " + std::to_string(max_bytes));
  }
  std::string text(static_cast<std::size_t>(size), '\0');
  HYPERATTN_RETURN_IF_ERROR(read_exact(path, fd.get(), 0, text.data(), text.size()));
  *out = std::move(text);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Element types and conversions.

Status parse_json(const std::string& text, const std::string& path, nlohmann::json* out) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate, where;
  const nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty() && parsed.is_string()) {
      const std::string key = parsed.get<std::string>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) {
        duplicate = key;
        where = depth <= 1 ? "at the top level" : "at depth " + std::to_string(depth);
      }
    }
    return true;
  };
  try {
    *out = nlohmann::json::parse(text, cb);
  } catch (const nlohmann::json::exception& e) {
    return Status::IoError(path + ": not valid JSON: " + e.what());
  }
  if (!duplicate.empty())
    return Status::IoError(path + ": key '" + duplicate + "' appears twice in one object (" + where +
                           "); expected each key once");
  return Status::Ok();
}

const char* to_string(ElemType type) {
  switch (type) {
    case ElemType::f32:
      return "float32";
    case ElemType::f16:
      return "float16";
    case ElemType::bf16:
      return "bfloat16";
    case ElemType::f64:
      return "float64";
    case ElemType::i32:
      return "int32";
    case ElemType::i64:
      return "int64";
    case ElemType::u8:
      return "uint8";
  }
  return "unknown";
}

std::size_t size_of(ElemType type) {
  switch (type) {
    case ElemType::f32:
      return 4;
    case ElemType::f16:
      return 2;
    case ElemType::bf16:
      return 2;
    case ElemType::f64:
      return 8;
    case ElemType::i32:
      return 4;
    case ElemType::i64:
      return 8;
    case ElemType::u8:
      return 1;
  }
  return 1;
}

float bf16_to_f32(std::uint16_t bits) { return bf16_bits_to_f32(bits); }
std::uint16_t f32_to_bf16(float value) { return f32_to_bf16_bits(value); }

float f16_to_f32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t u;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    std::memcpy(&u, &magnitude, sizeof u);
    u |= sign;
  } else if (exponent == 31) {
    u = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
  } else {
    u = sign | ((exponent + 112) << 23) | (mantissa << 13);  // rebias 15 -> 127
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::uint16_t f32_to_f16(float value) {
  std::uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a >= 0x38800000u) {
    // Normal half: drop 13 mantissa bits with round to nearest even, then rebias 127 -> 15.
    const std::uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
  }
  // Subnormal half (or zero): result = round(value * 2^24) = round(m * 2^(e - 126)).
  const std::uint32_t e = a >> 23;
  if (e < 102) return sign;  // below 2^-25: rounds to zero
  const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126 - e;  // 14..24
  const std::uint32_t truncated = m >> shift;
  const std::uint32_t remainder = m & ((1u << shift) - 1);
  const std::uint32_t half = 1u << (shift - 1);
  const std::uint32_t result = truncated + ((remainder > half || (remainder == half && (truncated & 1u))) ? 1u : 0u);
  return static_cast<std::uint16_t>(sign | result);
}

// ---------------------------------------------------------------------------------------------
// Array.

std::int64_t Array::numel() const { return shape_numel(shape); }

std::vector<float> Array::to_f32() const {
  const auto n = static_cast<std::size_t>(numel());
  std::vector<float> out(n);  // [numel]
  const std::byte* src = bytes.data();
  for (std::size_t i = 0; i < n; ++i) {
    switch (type) {
      case ElemType::f32:
        std::memcpy(&out[i], src + 4 * i, 4);
        break;
      case ElemType::f16: {
        std::uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        out[i] = f16_to_f32(b);
        break;
      }
      case ElemType::bf16: {
        std::uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        out[i] = bf16_to_f32(b);
        break;
      }
      case ElemType::f64: {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        out[i] = static_cast<float>(d);
        break;
      }
      case ElemType::i32: {
        std::int32_t v;
        std::memcpy(&v, src + 4 * i, 4);
        out[i] = static_cast<float>(v);
        break;
      }
      case ElemType::i64: {
        std::int64_t v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = static_cast<float>(v);
        break;
      }
      case ElemType::u8:
        out[i] = static_cast<float>(std::to_integer<std::uint8_t>(src[i]));
        break;
    }
  }
  return out;
}

Array Array::from_f32(std::vector<std::int64_t> shape, const float* data) {
  Array a;
  a.type = ElemType::f32;
  a.shape = std::move(shape);
  a.bytes.resize(static_cast<std::size_t>(a.numel()) * 4);
  if (!a.bytes.empty()) std::memcpy(a.bytes.data(), data, a.bytes.size());
  return a;
}

Array Array::from_i32(std::vector<std::int64_t> shape, const std::int32_t* data) {
  Array a;
  a.type = ElemType::i32;
  a.shape = std::move(shape);
  a.bytes.resize(static_cast<std::size_t>(a.numel()) * 4);
  if (!a.bytes.empty()) std::memcpy(a.bytes.data(), data, a.bytes.size());
  return a;
}

// ---------------------------------------------------------------------------------------------
// .npy

Status read_npy(const std::string& path, Array* out, std::uint64_t max_bytes) {
  if (out == nullptr) return Status::InvalidArgument("read_npy: `out` is null");
  int raw_fd = -1;
  std::uint64_t file_size = 0;
  HYPERATTN_RETURN_IF_ERROR(open_regular_file(path, &raw_fd, &file_size));
  const FileDescriptor fd(raw_fd);

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
  const std::uint64_t data_start = header_start + header_len;

  PyValue dict;
  PyLiteralParser parser(header);
  if (!parser.parse_top(&dict)) {
    return Status::IoError(path + ": malformed header dict (" + parser.error() + ")");
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
  ElemType type = ElemType::f32;
  HYPERATTN_RETURN_IF_ERROR(parse_descr(path, descr->text, &type));
  if (fortran->kind != PyValue::Kind::boolean) {
    return Status::IoError(path + ": malformed header: 'fortran_order' must be True or False");
  }
  if (fortran->boolean) {
    return Status::IoError(path + ": Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
  }
  if (shape_value->kind != PyValue::Kind::tuple) {
    return Status::IoError(path + ": malformed header: 'shape' must be a tuple of integers");
  }
  std::vector<std::int64_t> shape;
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

// ---------------------------------------------------------------------------------------------
// .safetensors

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

  // Parse, refusing duplicate keys in any object (which a JSON object would silently collapse, the
  // last one winning): a tensor name twice, or a field twice inside one tensor's entry
  // ({"dtype":"F16","dtype":"F32"}) or inside __metadata__.
  std::vector<std::set<std::string>> open_objects;  // the keys seen so far in each object being parsed
  std::string current_name;                         // the top-level key being parsed
  std::string duplicate;                            // the first duplicate, described
  const nlohmann::json::parser_callback_t reject_duplicates = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                                                                  nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty() && parsed.is_string()) {
      const std::string key = parsed.get<std::string>();
      if (open_objects.size() == 1) current_name = key;
      if (!open_objects.back().insert(key).second && duplicate.empty()) {
        duplicate = open_objects.size() == 1 ? "tensor '" + key + "' appears twice in the header"
                    : open_objects.size() == 2
                        ? "key '" + key + "' appears twice in the entry of '" + current_name + "'"
                        : "key '" + key + "' appears twice inside the entry of '" + current_name + "'";
      }
    }
    return true;
  };
  const nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_len, reject_duplicates,
                                                      /*allow_exceptions=*/false);
  if (header.is_discarded()) return Status::IoError(path + ": the header is not valid JSON");
  if (!header.is_object()) return Status::IoError(path + ": the header must be a JSON object");
  if (!duplicate.empty()) return Status::IoError(path + ": " + duplicate + "; expected each key once");

  struct Range {
    std::uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Status::IoError(path + ": '__metadata__' must be an object of strings");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return Status::IoError(path + ": '__metadata__' entry '" + key + "' must be a string");
        }
        file.metadata_[key] = value.get<std::string>();
      }
      continue;
    }
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
    const auto [it, inserted] = file.tensors_.emplace(name, std::move(tensor));
    if (nbytes > 0) ranges.push_back({ubegin, uend, &it->first});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
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
  for (const Range& r : ranges) {
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

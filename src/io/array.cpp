// src/io/array.cpp: Array, element types, bf16/f16 <-> f32 conversions, the checks of array_detail.hpp.
#include "io/array_io.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/bfloat16.hpp"
#include "io/array_detail.hpp"

namespace hyperattn::io {
namespace detail {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

std::int64_t shape_numel(const std::vector<std::int64_t>& shape) {
  for (std::int64_t d : shape)
    if (d == 0) return 0;
  std::int64_t n = 1;
  for (std::int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return std::numeric_limits<std::int64_t>::max();
  return n;
}

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

}  // namespace detail

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

std::int64_t Array::numel() const { return detail::shape_numel(shape); }

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

}  // namespace hyperattn::io

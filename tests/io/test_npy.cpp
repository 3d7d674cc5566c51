// tests/io/test_npy.cpp: .npy round trips, files byte-identical to numpy's, every malformed case,
// and the f16/bf16 conversions.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "io/array_io.hpp"
#include "io/io_test_util.hpp"

namespace hyperattn::io {
namespace {

using hyperattn::testing::ScratchDirTest;
using namespace std::string_literals;

// Byte strings exactly as numpy 1.24 writes them (np.save / np.lib.format.write_array), checked
// once with /usr/bin/python3 while writing this test.
const std::string kNumpyF32Vec = "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"s +
                                 std::string(60, ' ') + "\n" + "\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@"s;
const std::string kNumpyI32Mat = "\x93NUMPY\x01\x00v\x00{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }"s +
                                 std::string(58, ' ') + "\n" +
                                 "\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00"s;
const std::string kNumpyF16Scalar = "\x93NUMPY\x01\x00v\x00{'descr': '<f2', 'fortran_order': False, 'shape': (), }"s +
                                    std::string(62, ' ') + "\n" + "\x00>"s;
const std::string kNumpyF64Empty =
    "\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (0, 2), }"s + std::string(58, ' ') + "\n";
const std::string kNumpyU8 = "\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }"s +
                             std::string(60, ' ') + "\n" + "\x01\xff"s;
const std::string kNumpyV2I64 =
    "\x93NUMPY\x02\x00t\x00\x00\x00{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }"s + std::string(58, ' ') +
    "\n" + "\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"s;
const std::string kNumpyV3F32 =
    "\x93NUMPY\x03\x00t\x00\x00\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"s + std::string(58, ' ') +
    "\n" + "\x00\x00\x00\x00\x00\x00\x80?"s;

// A version-1 file with the given header dict (padded as numpy does) followed by `data`.
std::string npy_v1(const std::string& dict, const std::string& data) {
  std::string header = dict;
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY\x01\x00"s;
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

std::string f32_header(const std::string& shape) {
  return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
}

class NpyTest : public ScratchDirTest {
 protected:
  // Reads `bytes` as a file and expects an IoError whose message contains `expected`.
  void expect_rejected(const std::string& bytes, const std::string& expected, std::uint64_t max_bytes = 1ull << 34) {
    const std::string p = write_bytes("bad.npy", bytes);
    Array a;
    const Status s = read_npy(p, &a, max_bytes);
    ASSERT_FALSE(s.ok()) << "accepted a malformed file; expected an error containing: " << expected;
    EXPECT_EQ(s.code(), StatusCode::io_error) << s.message();
    EXPECT_NE(s.message().find(expected), std::string::npos) << "message: " << s.message();
    EXPECT_NE(s.message().find(p), std::string::npos) << "the message must name the file: " << s.message();
  }
};

// ---- round trips -------------------------------------------------------------------------------

TEST_F(NpyTest, RoundTripF32OneToFourDims) {
  const std::vector<std::vector<std::int64_t>> shapes = {{7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 5}, {}, {0, 3}};
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (const auto& shape : shapes) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> values(static_cast<std::size_t>(n));  // [numel]
    for (float& v : values) v = normal(rng);
    const Array written = Array::from_f32(shape, values.data());
    const std::string p = path("a.npy");
    ASSERT_TRUE(write_npy(p, written).ok());
    Array read;
    const Status s = read_npy(p, &read);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(read.type, ElemType::f32);
    EXPECT_EQ(read.shape, shape);
    EXPECT_EQ(read.to_f32(), values);
    // numpy pads the header so that the data starts at a multiple of 64.
    EXPECT_EQ((read_bytes(p).size() - values.size() * 4) % 64, 0u);
  }
}

TEST_F(NpyTest, RoundTripF16I32F64I64U8) {
  {
    std::vector<std::uint16_t> bits = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0x8000};  // [2, 3]
    Array a;
    a.type = ElemType::f16;
    a.shape = {2, 3};
    a.bytes.resize(bits.size() * 2);
    std::memcpy(a.bytes.data(), bits.data(), a.bytes.size());
    ASSERT_TRUE(write_npy(path("h.npy"), a).ok());
    Array b;
    ASSERT_TRUE(read_npy(path("h.npy"), &b).ok());
    EXPECT_EQ(b.type, ElemType::f16);
    EXPECT_EQ(b.shape, a.shape);
    EXPECT_EQ(b.bytes, a.bytes);
    const std::vector<float> f = b.to_f32();
    EXPECT_EQ(f[0], 1.0f);
    EXPECT_EQ(f[1], -2.0f);
    EXPECT_EQ(f[2], std::ldexp(1.0f, -24));
    EXPECT_EQ(f[3], 65504.0f);
    EXPECT_TRUE(std::isinf(f[4]));
    EXPECT_TRUE(std::signbit(f[5]));
  }
  {
    const std::vector<std::int32_t> v = {1, -2, 3, std::numeric_limits<std::int32_t>::min(), 5, 6, 7, 8};  // [2, 2, 2]
    const Array a = Array::from_i32({2, 2, 2}, v.data());
    ASSERT_TRUE(write_npy(path("i.npy"), a).ok());
    Array b;
    ASSERT_TRUE(read_npy(path("i.npy"), &b).ok());
    EXPECT_EQ(b.type, ElemType::i32);
    EXPECT_EQ(b.shape, a.shape);
    EXPECT_EQ(b.bytes, a.bytes);
    EXPECT_EQ(b.to_f32()[3], -2147483648.0f);
  }
  for (ElemType type : {ElemType::f64, ElemType::i64, ElemType::u8}) {
    Array a;
    a.type = type;
    a.shape = {4};
    a.bytes.resize(4 * size_of(type));
    for (std::size_t i = 0; i < a.bytes.size(); ++i) a.bytes[i] = static_cast<std::byte>(i * 37 + 1);
    ASSERT_TRUE(write_npy(path("t.npy"), a).ok());
    Array b;
    ASSERT_TRUE(read_npy(path("t.npy"), &b).ok()) << to_string(type);
    EXPECT_EQ(b.type, type);
    EXPECT_EQ(b.bytes, a.bytes);
  }
}

TEST_F(NpyTest, WriteRefusesBf16AndInconsistentArrays) {
  Array a;
  a.type = ElemType::bf16;
  a.shape = {2};
  a.bytes.resize(4);
  Status s = write_npy(path("b.npy"), a);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("bfloat16"), std::string::npos) << s.message();

  Array wrong;
  wrong.shape = {3};
  wrong.bytes.resize(8);  // 2 floats for a shape of 3
  s = write_npy(path("w.npy"), wrong);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("needs 12 bytes"), std::string::npos) << s.message();
}

// ---- files as numpy writes them ----------------------------------------------------------------

TEST_F(NpyTest, ReadsNumpyWrittenFiles) {
  Array a;
  ASSERT_TRUE(read_npy(write_bytes("f.npy", kNumpyF32Vec), &a).ok());
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(a.to_f32(), (std::vector<float>{0, 1, 2}));

  ASSERT_TRUE(read_npy(write_bytes("i.npy", kNumpyI32Mat), &a).ok());
  EXPECT_EQ(a.type, ElemType::i32);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(a.to_f32(), (std::vector<float>{1, 2, 3, 4}));

  ASSERT_TRUE(read_npy(write_bytes("h.npy", kNumpyF16Scalar), &a).ok());
  EXPECT_EQ(a.type, ElemType::f16);
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.to_f32(), (std::vector<float>{1.5f}));

  ASSERT_TRUE(read_npy(write_bytes("e.npy", kNumpyF64Empty), &a).ok());
  EXPECT_EQ(a.type, ElemType::f64);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{0, 2}));
  EXPECT_EQ(a.numel(), 0);

  ASSERT_TRUE(read_npy(write_bytes("u.npy", kNumpyU8), &a).ok());
  EXPECT_EQ(a.to_f32(), (std::vector<float>{1, 255}));

  ASSERT_TRUE(read_npy(write_bytes("v2.npy", kNumpyV2I64), &a).ok());
  EXPECT_EQ(a.type, ElemType::i64);
  EXPECT_EQ(a.to_f32(), (std::vector<float>{0, 1}));

  ASSERT_TRUE(read_npy(write_bytes("v3.npy", kNumpyV3F32), &a).ok());
  EXPECT_EQ(a.to_f32(), (std::vector<float>{0, 1}));
}

TEST_F(NpyTest, WritesBytesIdenticalToNumpy) {
  const std::vector<float> f = {0, 1, 2};
  ASSERT_TRUE(write_npy(path("f.npy"), Array::from_f32({3}, f.data())).ok());
  EXPECT_EQ(read_bytes(path("f.npy")), kNumpyF32Vec);
  const std::vector<std::int32_t> i = {1, 2, 3, 4};
  ASSERT_TRUE(write_npy(path("i.npy"), Array::from_i32({2, 2}, i.data())).ok());
  EXPECT_EQ(read_bytes(path("i.npy")), kNumpyI32Mat);
}

TEST_F(NpyTest, AcceptsUnknownKeysAndLiberalSpacing) {
  const std::string dict =
      "{ \"shape\" : ( 2 , ) , 'extra': [1, (2, 3), {'a': None}], 'descr':'<f4',"
      "'fortran_order':False}";
  Array a;
  const Status s = read_npy(write_bytes("x.npy", npy_v1(dict, std::string(8, '\0'))), &a);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2}));
}

// ---- malformed files: one test per case ---------------------------------------------------------

TEST_F(NpyTest, RejectsBadMagic) {
  std::string bytes = kNumpyF32Vec;
  bytes[1] = 'M';
  expect_rejected(bytes, "magic");
}

TEST_F(NpyTest, RejectsTruncatedPreamble) {
  expect_rejected(kNumpyF32Vec.substr(0, 7), "shorter than the 10-byte preamble");
}

TEST_F(NpyTest, RejectsUnsupportedVersion) {
  std::string bytes = kNumpyF32Vec;
  bytes[6] = 4;
  expect_rejected(bytes, "version 4.0");
}

TEST_F(NpyTest, RejectsTruncatedHeader) {
  // The file ends inside the header dict.
  expect_rejected(kNumpyF32Vec.substr(0, 40), "header length 118 runs past the end of the file (30 bytes");
}

TEST_F(NpyTest, RejectsHeaderLengthPastEof) {
  std::string bytes = kNumpyV2I64;
  bytes[10] = '\x7f';  // header length 0x007f0074
  expect_rejected(bytes, "runs past the end of the file");
}

TEST_F(NpyTest, RejectsMalformedDicts) {
  const std::string data(12, '\0');
  const struct {
    std::string dict, expected;
  } cases[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), ", "malformed header dict"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (3,), }", "malformed header dict"},
      {"['descr', '<f4']", "expected a dict"},
      {"{'descr': '<f4', 'fortran_order': False}", "needs the keys"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'shape': (3,)}", "duplicate key"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3)}", "trailing comma"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", "'shape' must be a tuple"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", "True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} junk", "unexpected text"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}", "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2 1)}", "expected ',' or ')'"},
      {"", "unexpected end of header"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dict);
    expect_rejected(npy_v1(c.dict, data), c.expected);
  }
}

TEST_F(NpyTest, RejectsBigEndian) {
  expect_rejected(npy_v1("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", std::string(8, '\0')),
                  "big-endian dtype '>f4'");
}

TEST_F(NpyTest, RejectsFortranOrder) {
  expect_rejected(npy_v1("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, '\0')),
                  "Fortran-ordered");
}

TEST_F(NpyTest, RejectsObjectAndStructuredDtypes) {
  expect_rejected(npy_v1("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", std::string(16, '\0')),
                  "unsupported dtype '|O'");
  expect_rejected(npy_v1("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", std::string(8, '\0')),
                  "structured");
  expect_rejected(npy_v1("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')),
                  "unsupported dtype '<c8'");
}

TEST_F(NpyTest, RejectsNegativeAndNonIntegerDims) {
  expect_rejected(npy_v1(f32_header("(-1, 2)"), ""), "negative dimension -1");
  expect_rejected(npy_v1(f32_header("(2.5,)"), std::string(8, '\0')), "non-integer number");
  expect_rejected(npy_v1(f32_header("('2',)"), std::string(8, '\0')), "tuple of integers");
  expect_rejected(npy_v1(f32_header("(99999999999999999999,)"), ""), "does not fit in int64");
}

TEST_F(NpyTest, RejectsShapeProductOverflow) {
  // 2^32 * 2^32 elements overflows int64 before the element size is even applied.
  expect_rejected(npy_v1(f32_header("(4294967296, 4294967296)"), std::string(16, '\0')), "overflows a 64-bit integer");
  // 2^61 elements fit, 2^61 * 4 bytes do not.
  expect_rejected(npy_v1(f32_header("(2305843009213693952,)"), std::string(16, '\0')), "overflows a 64-bit integer");
}

TEST_F(NpyTest, RejectsHugeDimsWithTinyFileWithoutAllocating) {
  // 4 TB claimed, 8 bytes present: must fail on the size check, not on an allocation.
  const auto start = std::chrono::steady_clock::now();
  expect_rejected(npy_v1(f32_header("(1000000000000,)"), std::string(8, '\0')),
                  "= 4000000000000 bytes of data, but the file has 8 bytes after the header");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST_F(NpyTest, RejectsTooFewDataBytes) {
  expect_rejected(npy_v1(f32_header("(4, 1024, 64)"), std::string(1000, '\0')),
                  "header says shape (4, 1024, 64) float32 = 1048576 bytes of data, but the file has 1000 bytes after "
                  "the header");
}

TEST_F(NpyTest, RejectsTooManyDataBytes) {
  expect_rejected(kNumpyF32Vec + "x", "= 12 bytes of data, but the file has 13 bytes after the header");
}

TEST_F(NpyTest, RejectsDataAboveMaxBytes) { expect_rejected(kNumpyF32Vec, "exceed the limit of 8 bytes", 8); }

TEST_F(NpyTest, MissingFileIsAnIoError) {
  Array a;
  const Status s = read_npy(path("does_not_exist.npy"), &a);
  EXPECT_EQ(s.code(), StatusCode::io_error);
  EXPECT_NE(s.message().find("does_not_exist.npy: cannot open"), std::string::npos) << s.message();
}

// ---- conversions ---------------------------------------------------------------------------------

TEST(HalfConversion, EveryHalfRoundTripsThroughF32) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float f = f16_to_f32(bits);
    if ((bits & 0x7c00) == 0x7c00 && (bits & 0x3ff) != 0) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << b;
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << std::hex << b;
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), bits) << std::hex << b << " -> " << f;
  }
}

TEST(HalfConversion, DecodesByTheDefinition) {
  // value = (-1)^s * 2^(e-15) * (1 + m/1024) for normals, 2^-14 * m/1024 for subnormals.
  for (std::uint32_t b = 0; b < 0x7c00; ++b) {
    const std::uint32_t e = b >> 10;
    const std::uint32_t m = b & 0x3ff;
    const double expected =
        e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15);
    ASSERT_EQ(static_cast<double>(f16_to_f32(static_cast<std::uint16_t>(b))), expected) << b;
    ASSERT_EQ(static_cast<double>(f16_to_f32(static_cast<std::uint16_t>(b | 0x8000))), -expected) << b;
  }
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
  EXPECT_TRUE(std::isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
}

TEST(HalfConversion, RoundsToNearestEvenLikeNumpy) {
  // (value, numpy's float16 bits), from np.float32(v).astype(np.float16).
  const struct {
    float value;
    std::uint16_t bits;
  } cases[] = {{1.0f, 0x3c00},
               {65504.0f, 0x7bff},
               {65519.0f, 0x7bff},
               {65520.0f, 0x7c00},
               {1e10f, 0x7c00},
               {std::ldexp(1.0f, -24), 0x0001},
               {std::ldexp(1.0f, -25), 0x0000},  // a tie with 0 and 2^-24: even is 0
               {std::ldexp(1.5f, -25), 0x0001},
               {std::ldexp(1.0f, -14), 0x0400},  // smallest normal
               {std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25), 0x0400},
               {0.1f, 0x2e66},
               {1.0f / 3.0f, 0x3555},
               {-2.5e-6f, 0x802a},
               {3.0517578125e-05f, 0x0200},
               {-0.0f, 0x8000},
               {std::ldexp(1.0f, -30), 0x0000},
               {-std::numeric_limits<float>::infinity(), 0xfc00}};
  for (const auto& c : cases) EXPECT_EQ(f32_to_f16(c.value), c.bits) << c.value;
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

// The compiler's IEEE half type: _Float16 where C++ has it (x86-64 g++ 12, clang); g++ 12 on aarch64
// defines __FLT16_MAX__ but only accepts _Float16 in C, so there the ARM __fp16 (IEEE format, the
// same fcvt conversion with round to nearest even) serves.
#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ARM_FP16_FORMAT_IEEE)
#define HYPERATTN_TEST_COMPILER_HALF __fp16
#elif defined(__FLT16_MAX__)
#define HYPERATTN_TEST_COMPILER_HALF _Float16
#endif

#ifdef HYPERATTN_TEST_COMPILER_HALF
TEST(HalfConversion, MatchesCompilerFloat16OnRandomFloats) {
  // The compiler's _Float16 conversion (IEEE round to nearest even) as an independent reference.
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  for (int i = 0; i < 200000; ++i) {
    std::uint32_t u = any_bits(rng);
    // Bias half of the draws to the half-precision range, where rounding matters.
    if (i % 2 == 0) u = (u & 0x807fffffu) | ((100u + (u >> 23) % 45u) << 23);
    float f;
    std::memcpy(&f, &u, sizeof f);
    if (std::isnan(f)) continue;
    const HYPERATTN_TEST_COMPILER_HALF h = static_cast<HYPERATTN_TEST_COMPILER_HALF>(f);
    std::uint16_t expected;
    std::memcpy(&expected, &h, sizeof expected);
    ASSERT_EQ(f32_to_f16(f), expected) << std::hexfloat << f;
  }
}
#endif

TEST(Bfloat16Conversion, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    if ((bits & 0x7f80) == 0x7f80 && (bits & 0x7f) != 0) continue;  // NaNs get quieted
    ASSERT_EQ(f32_to_bf16(bf16_to_f32(bits)), bits) << b;
  }
}


// Found by fuzzing (fuzz/regressions/npy/): an empty array whose other dimensions multiply past
// int64 is valid; numel() is 0 without overflowing on the way (UBSan: signed overflow).
TEST_F(NpyTest, EmptyArrayWithHugeDimensions) {
  Array a;
  const Status s = read_npy(
      write_bytes("e.npy", npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (9999, 9940, 999999999999880, 0, 23, 9), }", "")),
      &a);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(a.numel(), 0);
  EXPECT_TRUE(a.bytes.empty());
  EXPECT_TRUE(a.to_f32().empty());
}

}  // namespace
}  // namespace hyperattn::io

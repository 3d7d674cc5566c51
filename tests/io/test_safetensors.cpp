// tests/io/test_safetensors.cpp: .safetensors round trips (bf16 included) and every malformed case.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/array_io.hpp"
#include "io/io_test_util.hpp"

namespace hyperattn::io {
namespace {

using hyperattn::testing::ScratchDirTest;

// 8-byte little-endian length, the header text, the data section.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

class SafetensorsTest : public ScratchDirTest {
 protected:
  void expect_rejected(const std::string& bytes, const std::string& expected) {
    const std::string p = write_bytes("bad.safetensors", bytes);
    SafetensorsFile file;
    const Status s = SafetensorsFile::open(p, &file);
    ASSERT_FALSE(s.ok()) << "accepted a malformed file; expected an error containing: " << expected;
    EXPECT_EQ(s.code(), StatusCode::io_error) << s.message();
    EXPECT_NE(s.message().find(expected), std::string::npos) << "message: " << s.message();
    EXPECT_NE(s.message().find(p), std::string::npos) << "the message must name the file: " << s.message();
    EXPECT_TRUE(file.tensors().empty());
  }
  void expect_header_rejected(const std::string& header, std::size_t data_bytes, const std::string& expected) {
    expect_rejected(safetensors_bytes(header, std::string(data_bytes, '\0')), expected);
  }
};

TEST_F(SafetensorsTest, RoundTripsEveryTypeWithMetadata) {
  std::map<std::string, Array> tensors;
  const std::vector<float> q = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1.0f};  // [1, 2, 3]
  tensors["q"] = Array::from_f32({1, 2, 3}, q.data());
  const std::vector<std::int32_t> ids = {4, -5, 6};  // [3]
  tensors["ids"] = Array::from_i32({3}, ids.data());
  // bf16 and f16 with values exact in both formats; a 0-d and a 4-D tensor; an empty tensor.
  const std::vector<float> small = {0.5f, -0.25f, 8.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f};  // [2, 1, 2, 2]
  for (auto [name, type] : {std::pair{"w_bf16", ElemType::bf16}, std::pair{"w_f16", ElemType::f16}}) {
    Array a;
    a.type = type;
    a.shape = {2, 1, 2, 2};
    for (float v : small) {
      const std::uint16_t bits = type == ElemType::bf16 ? f32_to_bf16(v) : f32_to_f16(v);
      a.bytes.push_back(static_cast<std::byte>(bits & 0xff));
      a.bytes.push_back(static_cast<std::byte>(bits >> 8));
    }
    tensors[name] = std::move(a);
  }
  const float scalar = 42.0f;
  tensors["scalar"] = Array::from_f32({}, &scalar);
  tensors["empty"] = Array::from_f32({0, 4}, nullptr);
  Array u8;
  u8.type = ElemType::u8;
  u8.shape = {3};
  u8.bytes = {std::byte{1}, std::byte{2}, std::byte{255}};
  tensors["bytes"] = u8;

  const std::string p = path("t.safetensors");
  ASSERT_TRUE(write_safetensors(p, tensors, {{"format", "pt"}, {"writer", "hyperattn \"test\""}}).ok());

  // The header length is a multiple of 8 and the header is JSON.
  const std::string raw = read_bytes(p);
  std::uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_FALSE(nlohmann::json::parse(raw.substr(8, n), nullptr, false).is_discarded());

  SafetensorsFile file;
  const Status s = SafetensorsFile::open(p, &file);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(file.path(), p);
  EXPECT_EQ(file.tensors().size(), tensors.size());
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("writer"), "hyperattn \"test\"");
  std::uint64_t data_bytes = 0;
  for (const auto& [name, expected] : tensors) {
    SCOPED_TRACE(name);
    const SafetensorsTensor* t = file.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type, expected.type);
    EXPECT_EQ(t->shape, expected.shape);
    EXPECT_EQ(t->nbytes, expected.bytes.size());
    const Array copy = t->to_array();
    EXPECT_EQ(copy.bytes, expected.bytes);
    // Aligned to the element size inside the mapping, so callers may read it in place.
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t->data) % size_of(t->type), 0u);
    data_bytes += t->nbytes;
  }
  // Back to back, no holes: the Python package refuses files whose tensors leave gaps.
  EXPECT_EQ(8 + n + data_bytes, raw.size());
  EXPECT_EQ(file.find("w_bf16")->to_array().to_f32(), small);
  EXPECT_EQ(file.find("w_f16")->to_array().to_f32(), small);
  EXPECT_EQ(file.find("q")->to_array().to_f32(), q);
  EXPECT_EQ(file.find("scalar")->numel(), 1);
  EXPECT_EQ(file.find("nope"), nullptr);

  // Moving keeps the tensors' pointers valid (they point into the mapping, which moves along).
  SafetensorsFile moved = std::move(file);
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(moved.find("q")->to_array().to_f32(), q);
  SafetensorsFile assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.find("ids")->to_array().bytes, tensors["ids"].bytes);
}

TEST_F(SafetensorsTest, ReadsAHandWrittenFile) {
  // As the Python safetensors package lays it out: tensors in offset order, no padding required.
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1,1],"data_offsets":[8,16]},)"
      R"("__metadata__":{"format":"pt"}})";
  std::string data(16, '\0');
  const float a[2] = {1.0f, -3.0f};
  std::memcpy(data.data(), a, 8);
  data[8] = 9;
  SafetensorsFile file;
  const Status s = SafetensorsFile::open(write_bytes("h.safetensors", safetensors_bytes(header, data)), &file);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(file.find("a")->to_array().to_f32(), (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(file.find("b")->to_array().to_f32(), (std::vector<float>{9.0f}));
  EXPECT_EQ(file.metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, WriteRefusesReservedNameAndInconsistentArrays) {
  std::map<std::string, Array> tensors;
  const float v = 1.0f;
  tensors["__metadata__"] = Array::from_f32({1}, &v);
  EXPECT_EQ(write_safetensors(path("r.safetensors"), tensors).code(), StatusCode::invalid_argument);
  tensors.clear();
  Array bad = Array::from_f32({1}, &v);
  bad.shape = {2};
  tensors["bad"] = bad;
  const Status s = write_safetensors(path("b.safetensors"), tensors);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("'bad'"), std::string::npos) << s.message();
}

TEST_F(SafetensorsTest, RejectsFileShorterThanLengthField) {
  expect_rejected("abc", "shorter than the 8-byte header length");
}

TEST_F(SafetensorsTest, RejectsHeaderLengthLargerThanFile) {
  std::string bytes = safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd");
  bytes[0] = static_cast<char>(bytes[0] + 10);
  expect_rejected(bytes, "runs past the end of the file");
  bytes[7] = '\x7f';  // ~9e18 bytes: must not overflow the comparison
  expect_rejected(bytes, "runs past the end of the file");
}

TEST_F(SafetensorsTest, RejectsBadJson) {
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 4, "not valid JSON");
  expect_header_rejected(R"([1, 2])", 0, "must be a JSON object");
  expect_header_rejected(R"({"a": 5})", 0, "must be a JSON object");
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[1]}})", 4, "needs 'dtype', 'shape' and 'data_offsets'");
  expect_header_rejected(R"({"__metadata__":{"n":1}})", 0, "must be a string");
}

TEST_F(SafetensorsTest, RejectsDuplicateNames) {
  expect_header_rejected(
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
      8, "appears twice");
}

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
  expect_header_rejected(R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4,
                         "unsupported dtype 'F8_E4M3'");
  expect_header_rejected(R"({"a":{"dtype":7,"shape":[4],"data_offsets":[0,4]}})", 4, "'dtype' must be a string");
}

TEST_F(SafetensorsTest, RejectsOffsetsPastEnd) {
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4,
                         "run past the end of the data section (4 bytes)");
  expect_header_rejected(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]}})", 4,
      "'data_offsets' must be [begin, end]");
}

TEST_F(SafetensorsTest, RejectsBeginAfterEnd) {
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8, "has begin > end");
}

TEST_F(SafetensorsTest, RejectsSizeMismatch) {
  expect_header_rejected(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8,
                         "shape (3,) BF16 = 6 bytes, but data_offsets [0, 8] span 8 bytes");
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8,
                         "overflows a 64-bit byte count");
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  expect_header_rejected(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      12, "overlap");
}

TEST_F(SafetensorsTest, AcceptsEmptyTensorsAtAnyOffset) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}})";
  SafetensorsFile file;
  const Status s =
      SafetensorsFile::open(write_bytes("e.safetensors", safetensors_bytes(header, std::string(8, '\0'))), &file);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(file.find("e")->numel(), 0);
}

TEST_F(SafetensorsTest, RejectsNegativeDim) {
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]}})", 8,
                         "'shape' must hold non-negative integers, got -1");
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8, "non-negative integers");
}

// Issue 15: a key repeated inside one tensor's entry is refused (JSON would keep the last one, so
// {"dtype":"F16","dtype":"F32"} read as F32 while another reader may take F16), and so is a key
// repeated inside __metadata__.
TEST_F(SafetensorsTest, RejectsDuplicateKeysInsideAnEntry) {
  expect_header_rejected(R"({"a":{"dtype":"F16","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4,
                         "key 'dtype' appears twice in the entry of 'a'");
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}})", 4,
                         "key 'shape' appears twice in the entry of 'a'");
  expect_header_rejected(
      R"({"__metadata__":{"format":"pt","format":"np"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4,
      "key 'format' appears twice in the entry of '__metadata__'");
}

// Issue 15 (decided: refuse, docs/reliability.md): data-section bytes that no tensor references, a
// gap between tensors or bytes after the last one, mean a lying header; the format requires the
// tensors to cover the data section exactly.
TEST_F(SafetensorsTest, RejectsDataBytesNoTensorReferences) {
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12,
                         "the tensors cover 4 bytes but the data section has 12");
  expect_header_rejected(
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
      12, "bytes [4, 8) of the data section belong to no tensor");
  expect_header_rejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
                         "bytes [0, 4) of the data section belong to no tensor");
  expect_header_rejected(R"({"__metadata__":{"format":"pt"}})", 16, "the tensors cover 0 bytes but the data section has 16");
}


// The same for a .safetensors tensor (an empty tensor with huge other dimensions).
TEST_F(SafetensorsTest, EmptyTensorWithHugeDimensions) {
  const std::string header = R"({"e":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})";
  SafetensorsFile file;
  const Status s = SafetensorsFile::open(write_bytes("e.safetensors", safetensors_bytes(header, "")), &file);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(file.find("e")->numel(), 0);
  EXPECT_TRUE(file.find("e")->to_array().bytes.empty());
}

}  // namespace
}  // namespace hyperattn::io

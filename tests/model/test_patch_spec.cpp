// tests/model/test_patch_spec.cpp: --patch SPEC parsing and its errors.
#include <gtest/gtest.h>

#include "model/patch_spec.hpp"

namespace hyperattn::model {
namespace {

std::string layers_of(const std::string& spec, std::int64_t layers = 6) {
  PatchSpec p;
  Status s = parse_patch_spec(spec, layers, &p);
  return s.ok() ? p.layer_list() : "error: " + s.message();
}

TEST(PatchSpec, Forms) {
  EXPECT_EQ(layers_of("all"), "0,1,2,3,4,5");
  EXPECT_EQ(layers_of("last:2"), "4,5");
  EXPECT_EQ(layers_of("last:6"), "0,1,2,3,4,5");
  EXPECT_EQ(layers_of("first:1"), "0");
  EXPECT_EQ(layers_of("layers:3"), "3");
  EXPECT_EQ(layers_of("layers:5+0+2"), "0,2,5");
  PatchSpec p;
  ASSERT_TRUE(parse_patch_spec("first:3", 6, &p).ok());
  EXPECT_EQ(p.patched_layers(), 3);
  EXPECT_EQ(p.text, "first:3");
}

TEST(PatchSpec, Errors) {
  EXPECT_NE(layers_of("last:0").find("expected 1..6"), std::string::npos) << layers_of("last:0");
  EXPECT_NE(layers_of("first:7").find("found 7"), std::string::npos);
  EXPECT_NE(layers_of("layers:6").find("expected 0..5"), std::string::npos) << layers_of("layers:6");
  EXPECT_NE(layers_of("layers:1+1").find("twice"), std::string::npos);
  EXPECT_NE(layers_of("layers:1+").find("non-negative integer"), std::string::npos);
  EXPECT_NE(layers_of("layers:-1").find("non-negative integer"), std::string::npos);
  EXPECT_NE(layers_of("last:x").find("non-negative integer"), std::string::npos);
  EXPECT_NE(layers_of("middle").find("expected all, last:K"), std::string::npos);
  EXPECT_NE(layers_of("").find("expected all, last:K"), std::string::npos);
}

}  // namespace
}  // namespace hyperattn::model

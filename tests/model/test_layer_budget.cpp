// tests/model/test_layer_budget.cpp: the square-root allocation of per-layer budgets and the
// parsing of --layer-keys.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "model/layer_budget.hpp"

namespace hyperattn::model {
namespace {

std::int64_t sum(const std::vector<std::int64_t>& v) { return std::accumulate(v.begin(), v.end(), std::int64_t{0}); }

TEST(LayerBudget, SharesFollowTheSquareRootOfTheSensitivity) {
  // sqrt: 4, 2, 1, 1 of 8 -> shares 1/2, 1/4, 1/8, 1/8 of 4 * 128 = 512 keys.
  std::vector<std::int64_t> keys;
  ASSERT_TRUE(allocate_layer_keys({16.0, 4.0, 1.0, 1.0}, 128, 16, &keys).ok());
  EXPECT_EQ(keys, (std::vector<std::int64_t>{256, 128, 64, 64}));
}

TEST(LayerBudget, EqualSensitivityKeepsTheBudget) {
  std::vector<std::int64_t> keys;
  ASSERT_TRUE(allocate_layer_keys({0.3, 0.3, 0.3}, 100, 10, &keys).ok());
  EXPECT_EQ(keys, (std::vector<std::int64_t>{100, 100, 100}));
}

TEST(LayerBudget, FloorIsKeptAndTheMeanNeverExceeded) {
  // One layer dominates: the others get the floor, the first what is left.
  std::vector<std::int64_t> keys;
  ASSERT_TRUE(allocate_layer_keys({1.0, 1e-8, 0.0, 1e-6}, 128, 32, &keys).ok());
  EXPECT_EQ(keys, (std::vector<std::int64_t>{512 - 3 * 32, 32, 32, 32}));
  for (const std::vector<double>& s : {std::vector<double>{0.023, 0.0016, 0.0015, 0.001, 0.0015, 0.002},
                                       std::vector<double>{1, 2, 3, 4, 5, 6, 7}, std::vector<double>{0, 0}}) {
    ASSERT_TRUE(allocate_layer_keys(s, 96, 24, &keys).ok());
    EXPECT_LE(sum(keys), 96 * static_cast<std::int64_t>(s.size()));
    EXPECT_GE(sum(keys), 96 * static_cast<std::int64_t>(s.size()) - static_cast<std::int64_t>(s.size()));  // floors
    for (std::int64_t k : keys) EXPECT_GE(k, 24);
  }
}

TEST(LayerBudget, RefusesBadInput) {
  std::vector<std::int64_t> keys;
  EXPECT_FALSE(allocate_layer_keys({}, 128, 16, &keys).ok());
  EXPECT_FALSE(allocate_layer_keys({1.0, -1.0}, 128, 16, &keys).ok());
  EXPECT_FALSE(allocate_layer_keys({1.0, NAN}, 128, 16, &keys).ok());
  EXPECT_FALSE(allocate_layer_keys({1.0}, 128, 0, &keys).ok());
  EXPECT_FALSE(allocate_layer_keys({1.0}, 16, 32, &keys).ok());
}

TEST(LayerBudget, ParsesListsAndAuto) {
  std::vector<std::int64_t> keys;
  bool automatic = true;
  ASSERT_TRUE(parse_layer_keys("256,102,102", 3, &keys, &automatic).ok());
  EXPECT_FALSE(automatic);
  EXPECT_EQ(keys, (std::vector<std::int64_t>{256, 102, 102}));
  ASSERT_TRUE(parse_layer_keys("auto", 3, &keys, &automatic).ok());
  EXPECT_TRUE(automatic);
  EXPECT_TRUE(keys.empty());
  for (const char* bad : {"", "1,2", "1,2,3,4", "1,,3", "1,0,3", "1,-2,3", "a,b,c", "1,2,3,", "1.5,2,3"}) {
    Status s = parse_layer_keys(bad, 3, &keys, &automatic);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("--layer-keys"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace hyperattn::model

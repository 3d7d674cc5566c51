// tests/core/test_key_selection.cpp: the key-selection rules of core/key_selection.hpp (shared by
// the CPU executor and the CUDA tiles) against the specification's statements, by enumeration.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/key_selection.hpp"

namespace hyperattn {
namespace {

namespace ks = key_selection;

TEST(KeySelection, StrataPartitionTheItemsIntoNearlyEqualRuns) {
  for (std::int64_t n = 0; n <= 70; ++n)
    for (std::int64_t m = 1; m <= 75; ++m) {
      std::int64_t next = 0;
      for (std::int64_t i = 0; i < m; ++i) {
        const ks::Stratum s = ks::stratum(i, n, m);
        ASSERT_EQ(s.lo, next) << "n " << n << " m " << m << " i " << i;
        // floor(n/m) or one more (equal strata, specification's stratified sampling)
        ASSERT_TRUE(s.size == n / m || s.size == n / m + 1) << "n " << n << " m " << m << " i " << i << " size " << s.size;
        next += s.size;
      }
      ASSERT_EQ(next, n) << "n " << n << " m " << m;
    }
}

TEST(KeySelection, StratumWalkStepsThroughTheSameStrata) {
  for (std::int64_t n : {0, 1, 2, 5, 63, 64, 65, 255, 256, 257, 1000, 130816, 131071})
    for (std::int64_t m : {1, 2, 3, 7, 64, 255, 256, 257, 1024}) {
      ks::StratumWalk walk(n, m);
      EXPECT_EQ(walk.small(), n / m);
      for (std::int64_t i = 0; i < m; ++i) {
        const ks::Stratum a = walk.next(), b = ks::stratum(i, n, m);
        ASSERT_EQ(a.lo, b.lo) << "n " << n << " m " << m << " i " << i;
        ASSERT_EQ(a.size, b.size) << "n " << n << " m " << m << " i " << i;
      }
    }
}

TEST(KeySelection, BlocksCoverTheHashedKeysOnceAndOnlyTheLastIsShort) {
  for (std::int64_t hashed : {1, 63, 64, 65, 1000, 4096})
    for (std::int64_t b : {1, 64, 256}) {
      const std::int64_t blocks = ks::block_count(hashed, b);
      std::vector<int> seen(static_cast<std::size_t>(hashed), 0);
      for (std::int64_t beta = 0; beta < blocks; ++beta) {
        const ks::BlockRange r = ks::block_range(hashed, b, beta);
        EXPECT_EQ(r.start, beta * b);
        EXPECT_EQ(r.size, beta + 1 < blocks ? b : hashed - (blocks - 1) * b);
        EXPECT_GT(r.size, 0);
        EXPECT_EQ(r.outside, hashed - r.size);
        for (std::int64_t i = r.start; i < r.start + r.size; ++i) ++seen[static_cast<std::size_t>(i)];
      }
      for (int s : seen) ASSERT_EQ(s, 1) << "hashed " << hashed << " block " << b;
    }
}

TEST(KeySelection, OutsidePositionsListTheOtherBlocksInSortedOrder) {
  const std::int64_t hashed = 1000, b = 256;
  for (std::int64_t beta = 0; beta < ks::block_count(hashed, b); ++beta) {
    const ks::BlockRange r = ks::block_range(hashed, b, beta);
    std::int64_t expected = 0;
    for (std::int64_t u = 0; u < r.outside; ++u, ++expected) {
      if (expected == r.start) expected += r.size;  // skip the block itself
      ASSERT_EQ(ks::outside_position(u, r), expected) << "block " << beta << " u " << u;
    }
    EXPECT_EQ(expected, hashed - (r.start + r.size == hashed ? r.size : 0));
  }
}

TEST(KeySelection, SampleCountFollowsTheBudgetRules) {
  const ks::BlockRange whole = ks::block_range(100, 256, 0);  // one block holds every hashed key
  EXPECT_EQ(whole.outside, 0);
  for (Sampling s : {Sampling::uniform, Sampling::stratified, Sampling::position_stratified, Sampling::value_norm})
    EXPECT_EQ(ks::sample_count(s, 64, 0, 100, whole), 0) << "nothing outside the block: no samples";
  const ks::BlockRange r = ks::block_range(1000, 256, 1);  // 744 keys outside
  EXPECT_EQ(ks::sample_count(Sampling::uniform, 256, 0, 1000, r), 256);
  EXPECT_EQ(ks::sample_count(Sampling::uniform, 256, 16, 1000, r), 240) << "the sinks come out of the budget";
  EXPECT_EQ(ks::sample_count(Sampling::uniform, 8, 16, 1000, r), 0) << "sinks beyond the budget leave no samples";
  EXPECT_EQ(ks::sample_count(Sampling::uniform, 2000, 0, 1000, r), 2000) << "uniform draws with replacement";
  EXPECT_EQ(ks::sample_count(Sampling::stratified, 2000, 0, 1000, r), 744) << "at most one stratum per outside key";
  EXPECT_EQ(ks::sample_count(Sampling::position_stratified, 2000, 0, 1000, r), 1000) << "at most one per hashed key";
  EXPECT_EQ(ks::sample_count(Sampling::value_norm, 2000, 0, 1000, r), 2000);
}

}  // namespace
}  // namespace hyperattn

// tests/core/test_lsh.cpp: the integer stages of sortLSH and the random streams.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <random>
#include <set>

#include "core/bfloat16.hpp"
#include "core/lsh.hpp"
#include "core/random.hpp"

namespace hyperattn {
namespace {

// The SIMD copies (core/simd.hpp) whose instructions this CPU has.
std::vector<SimdLevel> supported_simd_levels() {
  std::vector<SimdLevel> levels{SimdLevel::baseline};
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) levels.push_back(SimdLevel::avx2);
  if (__builtin_cpu_supports("avx512f")) levels.push_back(SimdLevel::avx512);
#endif
  return levels;
}

TEST(Lsh, GrayRankIsABijectionWhoseNeighboursDifferInOneBit) {
  for (int r : {1, 3, 7, 10}) {
    const std::uint32_t n = 1u << r;
    std::vector<std::uint32_t> pattern_of_rank(n, ~0u);
    for (std::uint32_t g = 0; g < n; ++g) {
      const std::uint32_t rank = lsh::gray_rank(g);
      ASSERT_LT(rank, n);
      ASSERT_EQ(pattern_of_rank[rank], ~0u) << "rank " << rank << " taken twice";
      pattern_of_rank[rank] = g;
    }
    for (std::uint32_t k = 0; k + 1 < n; ++k)
      EXPECT_EQ(std::popcount(pattern_of_rank[k] ^ pattern_of_rank[k + 1]), 1) << "ranks " << k << ", " << k + 1;
  }
}

TEST(Lsh, ReferenceOrderHasNeighboursDifferingInSeveralBits) {
  // The flaw the specification describes: with 7 bits, 31 of the 127 adjacent pairs of gray(bits)
  // order differ in 2-4 bits.
  std::vector<std::uint32_t> pattern_of_bucket(128);
  for (std::uint32_t g = 0; g < 128; ++g) pattern_of_bucket[lsh::gray_code(g)] = g;
  int multi = 0;
  for (int k = 0; k + 1 < 128; ++k) multi += std::popcount(pattern_of_bucket[k] ^ pattern_of_bucket[k + 1]) > 1;
  EXPECT_EQ(multi, 31);
}

TEST(Lsh, SignBitsAreInvariantToPositiveScaling) {
  std::mt19937 gen(1);
  std::normal_distribution<float> nd;
  const int d = 64, r = 7;
  std::vector<float> proj(d * r), x(d), y(d);
  for (float& p : proj) p = nd(gen);
  for (int trial = 0; trial < 200; ++trial) {
    for (float& v : x) v = nd(gen);
    const std::uint32_t bits = lsh::sign_bits_f32(x.data(), proj.data(), d, r);
    for (float s : {0.25f, 2.0f, 1024.0f}) {  // powers of two scale every product exactly
      for (int c = 0; c < d; ++c) y[c] = x[c] * s;
      EXPECT_EQ(lsh::sign_bits_f32(y.data(), proj.data(), d, r), bits);
    }
  }
}

TEST(Lsh, SignBitsAreTheSignsOfTheProjections) {
  const int d = 16, r = 3;
  std::vector<float> proj(d * r, 0.0f), x(d, 0.0f);
  proj[0 * r + 0] = 1.0f;   // bit 0 = [x0 > 0]
  proj[1 * r + 1] = -1.0f;  // bit 1 = [x1 < 0]
  proj[2 * r + 2] = 1.0f;   // bit 2 = [x2 > 0]
  x[0] = 1.0f, x[1] = -2.0f, x[2] = -3.0f;
  EXPECT_EQ(lsh::sign_bits_f32(x.data(), proj.data(), d, r), 0b011u);
}

TEST(Lsh, BatchedSignBitsEqualThePerRowDefinition) {
  // Rows near the hyperplanes too: scaled copies of projection columns plus tiny noise.
  std::mt19937 gen(3);
  std::normal_distribution<float> nd;
  for (int r : {1, 7, 8, 9, 16}) {
    for (int d : {16, 64, 128}) {
      std::vector<float> proj(static_cast<std::size_t>(d * r));
      for (float& p : proj) p = nd(gen);
      const std::int64_t rows = 37, stride = d + 3;
      std::vector<float> x(static_cast<std::size_t>(rows * stride));
      std::vector<std::uint16_t> xb(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        x[i] = nd(gen) * (i % 5 == 0 ? 1e-6f : 1.0f);
        xb[i] = f32_to_bf16_bits(x[i]);
      }
      const std::vector<double> padded = lsh::pad_projections(proj.data(), d, r);
      for (SimdLevel level : supported_simd_levels()) {  // every copy this CPU can run
        std::vector<std::uint32_t> got(static_cast<std::size_t>(rows)), got_b(got.size());
        lsh::sign_bits_rows(level, x.data(), false, stride, rows, padded.data(), d, r, got.data());
        lsh::sign_bits_rows(level, xb.data(), true, stride, rows, padded.data(), d, r, got_b.data());
        const int l = static_cast<int>(level);
        for (std::int64_t i = 0; i < rows; ++i) {
          EXPECT_EQ(got[static_cast<std::size_t>(i)], lsh::sign_bits_f32(x.data() + i * stride, proj.data(), d, r)) << l << " " << r << " " << d << " " << i;
          EXPECT_EQ(got_b[static_cast<std::size_t>(i)], lsh::sign_bits_bf16(xb.data() + i * stride, proj.data(), d, r)) << l << " " << r << " " << d << " " << i;
        }
      }
    }
  }
}

TEST(Lsh, CountingSortIsStableByBucket) {
  std::mt19937 gen(2);
  const int r = 5;
  std::vector<std::uint32_t> bucket(1000);
  for (auto& b : bucket) b = gen() % (1u << r);
  std::vector<std::int32_t> perm(1000);
  std::vector<std::int64_t> counts((1u << r) + 1);
  lsh::counting_sort(bucket.data(), 1000, r, 100, perm.data(), counts.data());
  std::vector<std::int32_t> expect(1000);
  for (int i = 0; i < 1000; ++i) expect[i] = i;
  std::stable_sort(expect.begin(), expect.end(), [&](int a, int b) { return bucket[a] < bucket[b]; });
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(perm[i], expect[i] + 100);
}

TEST(Random, StreamsAreDeterministicAndDistinct) {
  EXPECT_EQ(rng::bits(1, rng::Stream::sample, 0, 1, 2, 3, 4), rng::bits(1, rng::Stream::sample, 0, 1, 2, 3, 4));
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(rng::bits(1, rng::Stream::sample, 0, 0, 0, 0, static_cast<std::uint64_t>(i)));
  seen.insert(rng::bits(2, rng::Stream::sample, 0, 0, 0, 0, 0));
  seen.insert(rng::bits(1, rng::Stream::projection, 0, 0, 0, 0, 0));
  EXPECT_EQ(seen.size(), 1002u);
}

TEST(Random, UniformBelowIsUniform) {
  // Chi-square over 10 bins for 100000 draws: 9 degrees of freedom, 99.99% quantile ~ 33.7.
  std::vector<int> bins(10);
  for (int i = 0; i < 100000; ++i)
    ++bins[rng::uniform_below(rng::bits(7, rng::Stream::sample, 0, 0, 0, 0, static_cast<std::uint64_t>(i)), 10)];
  double chi2 = 0;
  for (int b : bins) chi2 += (b - 10000.0) * (b - 10000.0) / 10000.0;
  EXPECT_LT(chi2, 33.7);
}

TEST(Random, ProjectionsAreStandardNormal) {
  double s = 0, s2 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double z = rng::projection_normal(3, 0, 0, i / 16, i % 16);
    s += z;
    s2 += z * z;
  }
  // Mean within 5 standard errors (1/sqrt(n)), variance within 5 standard errors (sqrt(2/n)).
  EXPECT_NEAR(s / n, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 5.0 * std::sqrt(2.0 / n));
}

}  // namespace
}  // namespace hyperattn

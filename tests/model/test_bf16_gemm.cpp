// tests/model/test_bf16_gemm.cpp: gemm_bf16 (both paths) against a double-precision product of the
// bf16-rounded operands, and the rounding itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "model/bf16_gemm.hpp"

namespace hyperattn::model {
namespace {

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }
float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }

TEST(Bf16Round, NearestEvenSubnormalsNanInfinity) {
  EXPECT_EQ(bf16_round_bits(1.0f), 0x3f80);
  EXPECT_EQ(bf16_round_bits(from_bits(0x3f808000)), 0x3f80);  // tie, even below
  EXPECT_EQ(bf16_round_bits(from_bits(0x3f818000)), 0x3f82);  // tie, even above
  EXPECT_EQ(bf16_round_bits(from_bits(0x3f808001)), 0x3f81);  // just above the tie
  EXPECT_EQ(bf16_round_bits(from_bits(0x3f807fff)), 0x3f80);  // just below the tie
  EXPECT_EQ(bf16_round_bits(-2.5f), 0xc020);
  EXPECT_EQ(bf16_round_bits(from_bits(0x000ae398)), 0x0000);  // subnormal -> +0
  EXPECT_EQ(bf16_round_bits(from_bits(0x800ae398)), 0x8000);  // subnormal -> -0
  EXPECT_EQ(bf16_round_bits(from_bits(0x00800000)), 0x0080);  // smallest normal stays
  EXPECT_EQ(bf16_round_bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(bf16_round_bits(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to infinity
  EXPECT_EQ(bf16_round_bits(from_bits(0x7f800001)), 0x7fc0);                // signalling NaN -> quiet
  EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  // Relative error at most 2^-8 (8 significant bits, round to nearest) over normal numbers.
  std::mt19937 rng(3);
  for (int i = 0; i < 100000; ++i) {
    const float x = from_bits((rng() & 0x7fffffffu) % 0x7f000000u + 0x00800000u);
    EXPECT_LE(std::fabs(static_cast<double>(round_to_bf16(x)) - x), std::ldexp(std::fabs(static_cast<double>(x)), -8))
        << x;
  }
}

std::vector<Bf16GemmPath> paths() {
  std::vector<Bf16GemmPath> p{Bf16GemmPath::fallback};
  if (bf16_gemm_kernel_available()) p.push_back(Bf16GemmPath::kernel);
  return p;
}

const char* name(Bf16GemmPath p) { return p == Bf16GemmPath::kernel ? "kernel" : "fallback"; }

// The kernel converts A itself (vcvtne2ps2bf16): with W = [1] every output is bf16(a) * 1 exactly,
// so its conversion must equal bf16_round_bits bit for bit, over random bit patterns.
TEST(Bf16Gemm, ConversionOfActivationsMatchesRoundBits) {
  const float one = 1.0f;
  for (Bf16GemmPath path : paths()) {
    const Bf16Matrix w = pack_bf16_matrix(&one, 1, 1, path);
    std::mt19937 rng(5);
    const std::int64_t rows = 20000;
    std::vector<float> a(static_cast<std::size_t>(rows)), c(a.size());
    for (auto& x : a) {
      x = from_bits(rng());
      // vdpbf16ps flushes subnormal products, and inf * 1 is inf: keep normal finite values and NaN
      if ((bits(x) & 0x7f800000u) == 0 || (bits(x) & 0x7fffffffu) == 0x7f800000u) x = 1.5f;
    }
    a[0] = from_bits(0x3f808000);
    a[1] = from_bits(0x3f818000);
    gemm_bf16(a.data(), rows, 1, w, c.data(), 1, false, 2);
    for (std::int64_t i = 0; i < rows; ++i) {
      const float expect = round_to_bf16(a[static_cast<std::size_t>(i)]);
      if (std::isnan(expect)) {
        EXPECT_TRUE(std::isnan(c[static_cast<std::size_t>(i)])) << name(path) << " row " << i;
      } else {
        ASSERT_EQ(bits(c[static_cast<std::size_t>(i)]), bits(expect)) << name(path) << " row " << i << " a " << a[i];
      }
    }
  }
}

struct Shape {
  std::int64_t rows, n, k, lda_pad, ldc_pad;
};

// c = (accumulate ? c0 : 0) + sum_k bf16(a_k) bf16(w_k): the products are exact in fp32, so the only
// error is k fp32 additions (plus one for c0), each relative 2^-24: |c - exact| <= gamma_{k+1} *
// (sum_k |bf16(a_k) bf16(w_k)| + |c0|), gamma_m = m u / (1 - m u), u = 2^-24 (Higham, Thm 3.1).
TEST(Bf16Gemm, MatchesDoubleProductOfRoundedOperands) {
  const Shape shapes[] = {{1, 1, 1, 0, 0},     {5, 63, 17, 3, 1},    {6, 64, 32, 0, 0},    {13, 65, 33, 7, 5},
                          {97, 130, 384, 0, 2}, {200, 384, 1024, 1024, 0}, {7, 4096, 384, 0, 0}, {191, 129, 2, 1, 3}};
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const double u = std::ldexp(1.0, -24);
  for (Bf16GemmPath path : paths()) {
    for (const Shape& s : shapes) {
      const std::int64_t lda = s.k + s.lda_pad, ldc = s.n + s.ldc_pad;
      std::vector<float> a(static_cast<std::size_t>(s.rows * lda)), w(static_cast<std::size_t>(s.n * s.k));
      for (auto& x : a) x = normal(rng);
      for (auto& x : w) x = 0.1f * normal(rng);
      const Bf16Matrix packed = pack_bf16_matrix(w.data(), s.n, s.k, path);
      ASSERT_EQ(packed.path, path);
      for (bool accumulate : {false, true}) {
        for (int threads : {1, 2}) {
          std::vector<float> c0(static_cast<std::size_t>(s.rows * ldc));
          for (auto& x : c0) x = normal(rng);
          std::vector<float> c = c0;
          gemm_bf16(a.data(), s.rows, lda, packed, c.data(), ldc, accumulate, threads);
          const double gamma = (s.k + 1) * u / (1.0 - (s.k + 1) * u);
          for (std::int64_t r = 0; r < s.rows; ++r) {
            for (std::int64_t j = 0; j < ldc; ++j) {
              const auto at = static_cast<std::size_t>(r * ldc + j);
              if (j >= s.n) {  // padding columns are never written
                ASSERT_EQ(bits(c[at]), bits(c0[at]));
                continue;
              }
              double exact = accumulate ? c0[at] : 0.0, magnitude = accumulate ? std::fabs(c0[at]) : 0.0;
              for (std::int64_t i = 0; i < s.k; ++i) {
                const double term = static_cast<double>(round_to_bf16(a[static_cast<std::size_t>(r * lda + i)])) *
                                    round_to_bf16(w[static_cast<std::size_t>(j * s.k + i)]);
                exact += term;
                magnitude += std::fabs(term);
              }
              ASSERT_LE(std::fabs(c[at] - exact), gamma * magnitude)
                  << name(path) << " rows " << s.rows << " n " << s.n << " k " << s.k << " at (" << r << ", " << j
                  << ") accumulate " << accumulate << " threads " << threads;
            }
          }
        }
      }
    }
  }
}

// Both operands really are rounded: a product whose fp32 value differs from its bf16 one.
TEST(Bf16Gemm, RoundsBothOperands) {
  const float a[2] = {1.0f + std::ldexp(1.0f, -12), 1.0f};  // bf16: 1.0 (the 2^-12 is below half an ulp)
  const float w[2] = {1.0f, 1.0f + std::ldexp(1.0f, -10)};  // bf16: 1.0
  for (Bf16GemmPath path : paths()) {
    const Bf16Matrix packed = pack_bf16_matrix(w, 1, 2, path);
    float c = -1.0f;
    gemm_bf16(a, 1, 2, packed, &c, 1, false, 1);
    EXPECT_EQ(c, 2.0f) << name(path);
  }
}

TEST(Bf16Gemm, NanInARowPropagatesToThatRowOnly) {
  const std::int64_t rows = 8, n = 70, k = 40;
  std::vector<float> a(static_cast<std::size_t>(rows * k), 0.5f), w(static_cast<std::size_t>(n * k), 0.25f);
  a[3 * k + 17] = std::numeric_limits<float>::quiet_NaN();
  for (Bf16GemmPath path : paths()) {
    const Bf16Matrix packed = pack_bf16_matrix(w.data(), n, k, path);
    std::vector<float> c(static_cast<std::size_t>(rows * n));
    gemm_bf16(a.data(), rows, k, packed, c.data(), n, false, 2);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < n; ++j) {
        const float v = c[static_cast<std::size_t>(r * n + j)];
        if (r == 3) {
          EXPECT_TRUE(std::isnan(v)) << name(path) << " col " << j;
        } else {
          EXPECT_EQ(v, 0.5f * 0.25f * k) << name(path) << " row " << r << " col " << j;  // exact: powers of two
        }
      }
  }
}

TEST(Bf16Gemm, EmptyRowsWriteNothing) {
  const float w[4] = {1, 2, 3, 4};
  for (Bf16GemmPath path : paths()) {
    const Bf16Matrix packed = pack_bf16_matrix(w, 2, 2, path);
    float c[2] = {7.0f, 8.0f};
    gemm_bf16(nullptr, 0, 2, packed, c, 2, false, 2);
    EXPECT_EQ(c[0], 7.0f);
    EXPECT_EQ(c[1], 8.0f);
  }
}

}  // namespace
}  // namespace hyperattn::model

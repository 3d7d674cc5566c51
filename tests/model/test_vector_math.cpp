// tests/model/test_vector_math.cpp: the vectorised exp and the loops built on it against std::exp in
// double. Tolerances come from the error bounds stated in vector_math.hpp:
//   exp_f32: <= 2 ulp of the true value (ulp = 2^-149 below FLT_MIN);
//   silu_mul: exp (2 ulp, and 1 + e inherits at most that relative error) + the rounding of 1 + e,
//     of the division and of the product (0.5 ulp each) = 3.5 ulp, so 4 ulp;
//   sums: every term within 2 ulp (2^-22 relative) and added in double, so 2^-22 of sum |term|;
//   the sum of squares only reorders double additions.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "model/vector_math.hpp"

namespace hyperattn::model {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kFltMax = std::numeric_limits<float>::max();

// The spacing of fp32 numbers at |v| (v a double): 2^(e - 23), and 2^-149 in the subnormal range.
double ulp_at(double v) {
  const double a = std::fabs(v);
  if (a < static_cast<double>(std::numeric_limits<float>::min())) return std::ldexp(1.0, -149);
  return std::ldexp(1.0, std::ilogb(a) - 23);
}

// Error of `got` against the true value in units of the fp32 spacing at the true value; a true
// value that rounds to +-inf must come out as that infinity (0 error), else the error is huge.
double ulp_error(float got, double truth) {
  if (std::isinf(static_cast<float>(truth)) || std::isinf(got)) {
    return static_cast<float>(truth) == got ? 0.0 : std::numeric_limits<double>::infinity();
  }
  return std::fabs(static_cast<double>(got) - truth) / ulp_at(truth);
}

float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

TEST(VectorMath, ExpWithinTwoUlpOverAllFloats) {
  // Every 61st bit pattern of both signs (about 70 million inputs, in blocks): all exponents, all
  // ranges of the result (overflow, normal, subnormal, zero). NaN inputs are checked separately.
  constexpr std::size_t kBlock = 1 << 20;
  std::vector<float> x, y(kBlock);
  x.reserve(kBlock);
  double worst = 0.0;
  float worst_x = 0.0f;
  for (std::uint64_t b = 0; b <= 0xFFFFFFFFull;) {
    x.clear();
    for (; b <= 0xFFFFFFFFull && x.size() < kBlock; b += 61) {
      const float v = from_bits(static_cast<std::uint32_t>(b));
      if (!std::isnan(v)) x.push_back(v);
    }
    exp_f32_array(x.data(), static_cast<std::int64_t>(x.size()), y.data());  // the dispatched clone
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double e = ulp_error(y[i], std::exp(static_cast<double>(x[i])));
      if (e > worst) {
        worst = e;
        worst_x = x[i];
      }
      // No FMA contraction in any clone: the vector loop rounds exactly as the inline scalar code.
      if (std::bit_cast<std::uint32_t>(y[i]) != std::bit_cast<std::uint32_t>(exp_f32(x[i]))) {
        FAIL() << "exp_f32_array and exp_f32 differ at x = " << x[i];
      }
    }
  }
  EXPECT_LE(worst, 2.0) << "worst at x = " << worst_x;
}

TEST(VectorMath, ExpEdgeCases) {
  const float log_flt_max = std::nextafter(88.7228394f, 0.0f);  // exp just below FLT_MAX
  const std::vector<float> x{0.0f,     -0.0f,        1e-30f,     -1e-30f,   1.0f,          -1.0f,
                             0.3465f,  -0.3466f,     0.3467f,    log_flt_max, 88.7229f,    89.0f,
                             100.0f,   1000.0f,      kFltMax,    kInf,      -87.3365f,     -87.34f,
                             -100.0f,  -103.2789f,   -103.9721f, -103.98f,  -104.0f,       -110.0f,
                             -200.0f,  -kFltMax,     -kInf,      std::numeric_limits<float>::denorm_min()};
  std::vector<float> y(x.size());
  exp_f32_array(x.data(), static_cast<std::int64_t>(x.size()), y.data());
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_LE(ulp_error(y[i], std::exp(static_cast<double>(x[i]))), 2.0) << "x = " << x[i] << ", got " << y[i];
    EXPECT_EQ(std::bit_cast<std::uint32_t>(y[i]), std::bit_cast<std::uint32_t>(exp_f32(x[i]))) << x[i];
  }
  EXPECT_EQ(exp_f32(0.0f), 1.0f);
  EXPECT_EQ(exp_f32(-0.0f), 1.0f);
  EXPECT_TRUE(std::isfinite(exp_f32(log_flt_max)));
  EXPECT_EQ(exp_f32(89.0f), kInf);
  EXPECT_EQ(exp_f32(kInf), kInf);
  EXPECT_EQ(exp_f32(kFltMax), kInf);
  EXPECT_EQ(exp_f32(-kInf), 0.0f);
  EXPECT_EQ(exp_f32(-kFltMax), 0.0f);
  EXPECT_EQ(exp_f32(-104.0f), 0.0f);
  EXPECT_GT(exp_f32(-103.0f), 0.0f);  // subnormal, not flushed
  EXPECT_TRUE(std::isnan(exp_f32(kNaN)));
  EXPECT_TRUE(std::isnan(exp_f32(-kNaN)));
  std::vector<float> nan_in{kNaN, -kNaN, from_bits(0x7FA00000u) /* signalling */, from_bits(0xFFFFFFFFu)}, nan_out(4);
  exp_f32_array(nan_in.data(), 4, nan_out.data());
  for (float v : nan_out) EXPECT_TRUE(std::isnan(v));
}

TEST(VectorMath, SiluMulWithinFourUlp) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> gate_dist(-80.0f, 80.0f), up_dist(-4.0f, 4.0f);
  const std::int64_t n = 200003;  // not a multiple of any vector width
  std::vector<float> g(static_cast<std::size_t>(n)), u(g.size()), out(g.size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    // Half the gates in [-80, 80], half in [-8, 8] where the curve bends.
    g[i] = i % 2 ? gate_dist(rng) : 0.1f * gate_dist(rng);
    u[i] = up_dist(rng);
  }
  silu_mul(g.data(), u.data(), n, out.data());
  double worst = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double gd = g[i];
    const double truth = gd / (1.0 + std::exp(-gd)) * static_cast<double>(u[i]);
    worst = std::max(worst, ulp_error(out[i], truth));
  }
  EXPECT_LE(worst, 4.0);

  // Edges, as the scalar formula g / (1 + exp(-g)) * u gives them.
  const std::vector<float> ge{kInf, -kInf, kNaN, -100.0f, -200.0f, 0.0f, 3.0f};
  const std::vector<float> ue{2.0f, 1.0f, 1.0f, 1.0f, -1.0f, 5.0f, kNaN};
  std::vector<float> oe(ge.size());
  silu_mul(ge.data(), ue.data(), static_cast<std::int64_t>(ge.size()), oe.data());
  EXPECT_EQ(oe[0], kInf);
  EXPECT_TRUE(std::isnan(oe[1]));  // -inf / inf
  EXPECT_TRUE(std::isnan(oe[2]));
  EXPECT_EQ(oe[3], 0.0f);  // -100 e^-100 is below the fp32 range once exp(100) overflows
  EXPECT_TRUE(std::signbit(oe[3]));
  EXPECT_EQ(oe[4], 0.0f);
  EXPECT_EQ(oe[5], 0.0f);
  EXPECT_TRUE(std::isnan(oe[6]));
  // In place (out aliases gate).
  std::vector<float> g2(g.begin(), g.begin() + 100);
  silu_mul(g2.data(), u.data(), 100, g2.data());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(g2[i], out[i]);
}

TEST(VectorMath, ReductionsAgainstDouble) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (std::int64_t n : {0, 1, 15, 16, 17, 33, 4096, 4099}) {
    std::vector<float> a(static_cast<std::size_t>(n)), b(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      a[i] = normal(rng);
      b[i] = a[i] + 0.5f * normal(rng);
    }
    float mx = -kInf;
    for (float v : a) mx = std::max(mx, v);
    EXPECT_EQ(max_f32(a.data(), n), mx) << n;

    const float shift = n > 0 ? mx : 0.0f;
    double sum = 0.0, sum_kl = 0.0, abs_kl = 0.0, sum_sq = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      sum_sq += static_cast<double>(a[i] * a[i]);  // fp32 squares, as the loop
      sum += std::exp(static_cast<double>(a[i] - shift));  // the same fp32 subtraction as the loop
      const double t = std::exp(static_cast<double>(a[i])) * static_cast<double>(a[i] - b[i]);
      sum_kl += t;
      abs_kl += std::fabs(t);
    }
    const double bound = std::ldexp(1.0, -22);
    EXPECT_NEAR(sum_exp_f32(a.data(), n, shift), sum, bound * sum + 1e-300) << n;
    EXPECT_NEAR(kl_terms_f32(a.data(), b.data(), n), sum_kl, bound * abs_kl + 1e-300) << n;
    // Only the order of the double additions differs.
    EXPECT_NEAR(sum_squares_f32(a.data(), n), sum_sq, 1e-14 * sum_sq + 1e-300) << n;
  }
  // A NaN anywhere reaches the sums; max skips it.
  std::vector<float> x(37, 1.0f);
  x[30] = kNaN;
  EXPECT_EQ(max_f32(x.data(), 37), 1.0f);
  EXPECT_TRUE(std::isnan(sum_exp_f32(x.data(), 37, 1.0f)));
  EXPECT_TRUE(std::isnan(kl_terms_f32(x.data(), x.data(), 37)));
  // A -inf term adds exactly 0.
  EXPECT_EQ(sum_exp_f32(std::vector<float>{-kInf, 0.0f}.data(), 2, 0.0f), 1.0);
}

}  // namespace
}  // namespace hyperattn::model

// tests/model/test_attention_diagnostics.cpp: the streamed captured mass, alpha and kappa against a
// dense double computation of the attention matrix, causal and not, with several tiles.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/attention_diagnostics.hpp"

namespace hyperattn::model {
namespace {

struct Dense {
  std::vector<double> captured;
  double alpha = 0, kappa = 0;
  std::int64_t left_out = 0;
};

Dense dense_statistics(const std::vector<float>& q, const std::vector<float>& k, std::int64_t n_q, std::int64_t n_k,
                       std::int64_t d, bool causal, const std::vector<std::int32_t>& qb,
                       const std::vector<std::int32_t>& kb) {
  Dense r;
  std::vector<double> col(static_cast<std::size_t>(n_k), 0.0);
  double lo = 1e300, hi = -1e300;
  for (std::int64_t i = 0; i < n_q; ++i) {
    const std::int64_t visible = causal ? i + (n_k - n_q) + 1 : n_k;
    std::vector<double> a(static_cast<std::size_t>(visible));
    for (std::int64_t j = 0; j < visible; ++j) {
      double s = 0.0;
      for (std::int64_t c = 0; c < d; ++c) s += static_cast<double>(q[i * d + c]) * k[j * d + c];
      a[j] = std::exp(s / std::sqrt(static_cast<double>(d)));  // A_ij, unnormalised
    }
    double total = 0.0, in = 0.0, res = 0.0;
    for (std::int64_t j = 0; j < visible; ++j) {
      total += a[j];
      (kb[j] == qb[i] ? in : res) += a[j];
    }
    r.captured.push_back(in / total);
    for (std::int64_t j = 0; j < visible; ++j) col[j] += (a[j] / total) * (a[j] / total);
    if (res > 0) {
      lo = std::min(lo, std::log(res));
      hi = std::max(hi, std::log(res));
    } else {
      ++r.left_out;
    }
  }
  r.alpha = static_cast<double>(n_k) * *std::max_element(col.begin(), col.end());
  r.kappa = std::exp(hi - lo);
  return r;
}

class MassStatisticsTest : public ::testing::TestWithParam<std::tuple<bool, int>> {};

TEST_P(MassStatisticsTest, MatchesDense) {
  const auto [causal, threads] = GetParam();
  const std::int64_t n = 300, d = 16;  // 300 rows: three tiles of up to 128
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<std::size_t>(n * d)), k(q.size());
  for (auto& x : q) x = 1.5f * normal(rng);
  for (auto& x : k) x = 1.5f * normal(rng);
  std::vector<std::int32_t> qb(static_cast<std::size_t>(n)), kb(qb.size());
  for (auto& b : qb) b = static_cast<std::int32_t>(rng() % 5);
  for (auto& b : kb) b = static_cast<std::int32_t>(rng() % 5);
  qb[0] = kb[0];  // causal row 0 sees only key 0, in its block: no residual mass
  MassStatistics s;
  attention_mass_statistics(q.data(), d, k.data(), d, n, n, d, 1.0f / std::sqrt(static_cast<float>(d)), causal,
                            qb.data(), kb.data(), threads, &s);
  const Dense r = dense_statistics(q, k, n, n, d, causal, qb, kb);
  ASSERT_EQ(s.captured.size(), r.captured.size());
  // fp32 scores (|s| < 20, 16-term sums): relative errors ~1e-6 in each exp; 1e-5 covers them.
  for (std::size_t i = 0; i < r.captured.size(); ++i) ASSERT_NEAR(s.captured[i], r.captured[i], 1e-5) << i;
  EXPECT_NEAR(s.alpha, r.alpha, 1e-5 * r.alpha);
  EXPECT_NEAR(s.kappa, r.kappa, 1e-4 * r.kappa);
  EXPECT_EQ(s.kappa_rows_left_out, r.left_out);
  if (causal) {
    EXPECT_GT(s.kappa_rows_left_out, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Masks, MassStatisticsTest, ::testing::Combine(::testing::Bool(), ::testing::Values(1, 2)));

TEST(AttentionDiagnostics, UniformAttentionHasAlphaOne) {
  // Zero queries: every row is uniform, each column of D^-1 A holds n entries 1/n, alpha = 1.
  const std::int64_t n = 200, d = 16;
  std::vector<float> q(static_cast<std::size_t>(n * d), 0.0f), k(q.size(), 1.0f);
  std::vector<std::int32_t> qb(static_cast<std::size_t>(n), 0), kb(qb.size());
  for (std::int64_t j = 0; j < n; ++j) kb[j] = j < 50 ? 0 : 1;
  MassStatistics s;
  attention_mass_statistics(q.data(), d, k.data(), d, n, n, d, 0.25f, false, qb.data(), kb.data(), 2, &s);
  EXPECT_NEAR(s.alpha, 1.0, 1e-6);
  EXPECT_NEAR(s.kappa, 1.0, 1e-6);
  for (float c : s.captured) EXPECT_NEAR(c, 0.25, 1e-6);
}

TEST(AttentionDiagnostics, HeadsThroughTheLibrary) {
  const std::int64_t n = 512, d = 32, heads_q = 2, heads_kv = 1;
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<std::size_t>(heads_q * n * d)), k(static_cast<std::size_t>(heads_kv * n * d)),
      v(k.size());
  for (auto& x : q) x = normal(rng);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  AttentionConfig config;
  config.block_size = 64;
  config.sample_size = 64;
  config.min_seq_len = 128;
  std::vector<HeadDiagnostics> out;
  Status s = diagnose_attention(TensorView::bhsd(q.data(), DType::f32, 1, heads_q, n, d),
                                TensorView::bhsd(k.data(), DType::f32, 1, heads_kv, n, d),
                                TensorView::bhsd(v.data(), DType::f32, 1, heads_kv, n, d), config, {}, 2, &out);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(out.size(), 2u);
  for (const auto& h : out) {
    EXPECT_GT(h.error_rel_o, 0.0);  // approximated: some error
    EXPECT_TRUE(std::isfinite(h.error_rel_v));
    EXPECT_GT(h.captured_mean, 0.0);
    EXPECT_LE(h.captured_quantiles.back(), 1.0 + 1e-6);
    EXPECT_GE(h.alpha, 1.0 - 1e-9);  // the mean column norm is n_q / n_k = 1 times 1/n
    EXPECT_GE(h.kappa, 1.0);
  }
  // Exact (min_seq_len above n): zero error.
  config.min_seq_len = n + 1;
  ASSERT_TRUE(diagnose_attention(TensorView::bhsd(q.data(), DType::f32, 1, heads_q, n, d),
                                 TensorView::bhsd(k.data(), DType::f32, 1, heads_kv, n, d),
                                 TensorView::bhsd(v.data(), DType::f32, 1, heads_kv, n, d), config, {1}, 1, &out)
                  .ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].head, 1);
  EXPECT_LT(out[0].error_rel_o, 1e-6);
  EXPECT_FALSE(diagnose_attention(TensorView::bhsd(q.data(), DType::f32, 1, heads_q, n, d),
                                  TensorView::bhsd(k.data(), DType::f32, 1, heads_kv, n, d),
                                  TensorView::bhsd(v.data(), DType::f32, 1, heads_kv, n, d), config, {2}, 1, &out)
                   .ok());
}

}  // namespace
}  // namespace hyperattn::model

// tests/model/test_next_token_scores.cpp: the chunked output head (NLL and KL) against a dense
// double-precision computation from the same logits, across several row chunks.
#include <gtest/gtest.h>

#include "model/llama_model.hpp"
#include "model/next_token_scores.hpp"
#include "tiny_llama.hpp"

namespace hyperattn::model {
namespace {

using namespace hyperattn::model::testing;

// log_softmax in double of one row of logits.
std::vector<double> log_softmax_f64(const float* logits, std::int64_t vocab) {
  double mx = -1e300, den = 0.0;
  for (std::int64_t i = 0; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  for (std::int64_t i = 0; i < vocab; ++i) den += std::exp(logits[i] - mx);
  std::vector<double> lp(static_cast<std::size_t>(vocab));
  for (std::int64_t i = 0; i < vocab; ++i) lp[i] = logits[i] - mx - std::log(den);
  return lp;
}

TEST(NextTokenScores, MatchesDenseDoubleAcrossChunks) {
  TinyShape shape;
  shape.max_pos = 2400;
  TempDir dir("scores");
  TensorMap w = make_tiny_weights(shape, false, 9);
  write_json(dir.str() + "/config.json", tiny_config(shape, false));
  ASSERT_TRUE(io::write_safetensors(dir.str() + "/model.safetensors", to_arrays(&w, io::ElemType::f32)).ok());
  LlamaModel model;
  ASSERT_TRUE(LlamaModel::load(dir.str(), &model).ok());

  const std::int64_t n = 2300, vocab = shape.vocab, width = shape.hidden;  // > 2 chunks of 1024 rows
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(n));
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % vocab);
  std::vector<float> reference(static_cast<std::size_t>(n * width)), scored(reference.size());  // [n, hidden]
  for (std::size_t i = 0; i < reference.size(); ++i) {
    reference[i] = normal(rng);
    scored[i] = reference[i] + 0.3f * normal(rng);
  }
  NextTokenScores s;
  ScoreTimings timings;
  ASSERT_TRUE(score_next_tokens(model, scored.data(), reference.data(), tokens.data(), n, 2, &s, &timings).ok());
  ASSERT_EQ(s.nll.size(), static_cast<std::size_t>(n - 1));
  std::vector<float> la(static_cast<std::size_t>(vocab)), lb(la.size());
  for (std::int64_t i = 0; i + 1 < n; ++i) {
    model.logits(reference.data() + i * width, 1, la.data());
    model.logits(scored.data() + i * width, 1, lb.data());
    const auto pa = log_softmax_f64(la.data(), vocab), pb = log_softmax_f64(lb.data(), vocab);
    double kl = 0.0;
    for (std::int64_t t = 0; t < vocab; ++t) kl += std::exp(pa[t]) * (pa[t] - pb[t]);
    // The chunked path rounds log-probs to fp32 (|lp| < 30, ulp ~ 2e-6) before the KL sum.
    ASSERT_NEAR(s.nll[i], -pb[tokens[i + 1]], 1e-5) << i;
    ASSERT_NEAR(s.reference_nll[i], -pa[tokens[i + 1]], 1e-5) << i;
    ASSERT_NEAR(s.kl[i], kl, 1e-5 + 1e-4 * kl) << i;
    ASSERT_GE(s.kl[i], -1e-6);
  }
}

TEST(NextTokenScores, IdenticalRunsHaveZeroKl) {
  TinyShape shape;
  TempDir dir("scores0");
  TensorMap w = make_tiny_weights(shape, true, 2);
  write_json(dir.str() + "/config.json", tiny_config(shape, true));
  ASSERT_TRUE(io::write_safetensors(dir.str() + "/model.safetensors", to_arrays(&w, io::ElemType::f32)).ok());
  LlamaModel model;
  ASSERT_TRUE(LlamaModel::load(dir.str(), &model).ok());
  std::vector<std::int32_t> tokens{1, 5, 7, 3, 9, 11, 2};
  std::vector<float> hidden;
  ASSERT_TRUE(model.prefill(tokens.data(), 7, PrefillOptions{}, &hidden, nullptr).ok());
  NextTokenScores s;
  ASSERT_TRUE(score_next_tokens(model, hidden.data(), hidden.data(), tokens.data(), 7, 1, &s, nullptr).ok());
  for (std::size_t i = 0; i < s.kl.size(); ++i) {
    EXPECT_EQ(s.kl[i], 0.0);
    EXPECT_EQ(s.nll[i], s.reference_nll[i]);
  }
  EXPECT_FALSE(score_next_tokens(model, hidden.data(), nullptr, tokens.data(), 1, 1, &s, nullptr).ok());
}

}  // namespace
}  // namespace hyperattn::model

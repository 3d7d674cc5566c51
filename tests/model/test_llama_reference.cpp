// tests/model/test_llama_reference.cpp: the bundled llama-11m-32k reproduces its reference/ (exact
// attention, fp32 arithmetic on the bf16 weights): tokens exactly, NLL to 1e-4 per position, the
// last 8 positions' logits to 1e-3 relative. One test runs the 4096-token prefill once (ctest runs
// each test in its own process, so a shared fixture would repeat it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "io/array_io.hpp"
#include "model/llama_model.hpp"
#include "model/next_token_scores.hpp"
#include "model/tokenizer.hpp"

namespace hyperattn::model {
namespace {

const std::string kModelDir = std::string(HYPERATTN_SOURCE_DIR) + "/models/llama-11m-32k";
const std::string kText = std::string(HYPERATTN_SOURCE_DIR) + "/data/emma.txt";

TEST(LlamaReference, ConfigIsTheBundledArchitecture) {
  LlamaModel model;
  Status s = LlamaModel::load(kModelDir, &model);
  ASSERT_TRUE(s.ok()) << s.message();
  const LlamaConfig& c = model.config();
  EXPECT_EQ(c.num_layers, 6);
  EXPECT_EQ(c.hidden_size, 384);
  EXPECT_EQ(c.intermediate_size, 1024);
  EXPECT_EQ(c.heads_q, 6);
  EXPECT_EQ(c.heads_kv, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 4096);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(model.weights().lm_head.empty());
}

TEST(LlamaReference, ReproducesTokensNllAndLogits) {
  LlamaModel model;
  Status s = LlamaModel::load(kModelDir, &model);
  ASSERT_TRUE(s.ok()) << s.message();
  Tokenizer tokenizer;
  s = Tokenizer::load(kModelDir, &tokenizer);
  ASSERT_TRUE(s.ok()) << s.message();
  std::string text;
  ASSERT_TRUE(read_text_file(kText, &text).ok());
  std::vector<std::int32_t> tokens;
  s = tokenizer.encode(text, &tokens);  // the whole document, no BOS
  ASSERT_TRUE(s.ok()) << s.message();

  io::Array ref_tokens, ref_nll, ref_logits;
  ASSERT_TRUE(io::read_npy(kModelDir + "/reference/tokens.npy", &ref_tokens).ok());
  ASSERT_TRUE(io::read_npy(kModelDir + "/reference/nll.npy", &ref_nll).ok());
  ASSERT_TRUE(io::read_npy(kModelDir + "/reference/logits_last8.npy", &ref_logits).ok());
  ASSERT_EQ(ref_tokens.type, io::ElemType::i32);
  const std::int64_t n = ref_tokens.numel();
  ASSERT_EQ(n, 4096);
  ASSERT_GE(static_cast<std::int64_t>(tokens.size()), n);
  const auto* ids = reinterpret_cast<const std::int32_t*>(ref_tokens.bytes.data());
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(tokens[i], ids[i]) << "token " << i;

  PrefillOptions options;
  options.threads = 2;
  std::vector<float> hidden;  // [n, hidden]
  s = model.prefill(tokens.data(), n, options, &hidden, nullptr);
  ASSERT_TRUE(s.ok()) << s.message();

  const std::vector<float> expected_nll = ref_nll.to_f32();  // [n - 1]
  NextTokenScores scores;
  s = score_next_tokens(model, hidden.data(), nullptr, tokens.data(), n, 2, &scores, nullptr);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(scores.nll.size(), expected_nll.size());
  for (std::size_t i = 0; i < expected_nll.size(); ++i) {
    ASSERT_NEAR(scores.nll[i], expected_nll[i], 1e-4) << "position " << i + 1;
  }
  double mean = 0.0;
  for (float x : expected_nll) mean += x;
  mean /= static_cast<double>(expected_nll.size());
  EXPECT_NEAR(mean_of(scores.nll), mean, 1e-5);

  ASSERT_EQ(ref_logits.shape, (std::vector<std::int64_t>{8, 4096}));
  const std::vector<float> expected_logits = ref_logits.to_f32();  // [8, vocab]
  std::vector<float> logits(expected_logits.size());               // [8, vocab]
  model.logits(hidden.data() + (n - 8) * model.config().hidden_size, 8, logits.data());
  // Relative to the logit, floored at 1: near-zero logits carry the absolute error of the others.
  for (std::size_t i = 0; i < expected_logits.size(); ++i) {
    ASSERT_LE(std::abs(logits[i] - expected_logits[i]), 1e-3 * std::max(1.0f, std::abs(expected_logits[i])))
        << "row " << i / 4096 << " token " << i % 4096 << ": " << logits[i] << " vs " << expected_logits[i];
  }
}

// MatmulPrecision::bf16 on the bundled model: not the reference's arithmetic, so not reproduced to
// 1e-4. The products themselves are checked exactly in test_bf16_gemm.cpp; here is what bf16 must
// keep, as requirements rather than derived bounds: the mean NLL within 2^-8 * 0.1 nats of the
// reference (a perplexity change under 0.04%) and every position within 2^-8 * 32 = 0.125 nats.
// Measured: the mean moves by 1.1e-4 nats (0.011% in perplexity), single positions by up to 0.047.
// And it must differ from fp32 (which reproduces every position to 1.5e-5): the products are bf16.
TEST(LlamaReference, Bf16MatmulKeepsThePerplexity) {
  LlamaModel model;
  Status s = LlamaModel::load(kModelDir, &model, MatmulPrecision::bf16);
  ASSERT_TRUE(s.ok()) << s.message();
  io::Array ref_tokens, ref_nll;
  ASSERT_TRUE(io::read_npy(kModelDir + "/reference/tokens.npy", &ref_tokens).ok());
  ASSERT_TRUE(io::read_npy(kModelDir + "/reference/nll.npy", &ref_nll).ok());
  const std::int64_t n = ref_tokens.numel();
  const auto* ids = reinterpret_cast<const std::int32_t*>(ref_tokens.bytes.data());
  PrefillOptions options;
  options.threads = 2;
  std::vector<float> hidden;  // [n, hidden]
  s = model.prefill(ids, n, options, &hidden, nullptr);
  ASSERT_TRUE(s.ok()) << s.message();
  NextTokenScores scores;
  ASSERT_TRUE(score_next_tokens(model, hidden.data(), nullptr, ids, n, 2, &scores, nullptr).ok());
  const std::vector<float> expected_nll = ref_nll.to_f32();  // [n - 1]
  ASSERT_EQ(scores.nll.size(), expected_nll.size());
  double mean = 0.0, worst = 0.0;
  for (std::size_t i = 0; i < expected_nll.size(); ++i) {
    mean += expected_nll[i];
    worst = std::max(worst, std::abs(scores.nll[i] - expected_nll[i]));
    ASSERT_NEAR(scores.nll[i], expected_nll[i], std::ldexp(32.0, -8)) << "position " << i + 1;
  }
  mean /= static_cast<double>(expected_nll.size());
  EXPECT_NEAR(mean_of(scores.nll), mean, std::ldexp(0.1, -8));
  EXPECT_GT(worst, 1e-4);  // the products really were bf16: fp32 reproduces every position to 1.5e-5
  std::printf("bf16 matmul: mean NLL %.6f (reference %.6f), largest per-position change %.4f\n", mean_of(scores.nll),
              mean, worst);
}

}  // namespace
}  // namespace hyperattn::model

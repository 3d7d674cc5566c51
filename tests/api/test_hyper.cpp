// tests/api/test_hyper.cpp: HyperAttention against the double reference and the properties of
// the specification's §7.
#include <gtest/gtest.h>

#include <cstring>

#include "attention_tester.hpp"
#include "core/plan.hpp"

namespace hyperattn::testing {
namespace {

AttentionConfig hyper_config(std::int64_t block, std::int64_t samples, std::int64_t min_len, int bits, bool causal) {
  AttentionConfig c;
  c.block_size = block;
  c.sample_size = samples;
  c.min_seq_len = min_len;
  c.lsh_bits = bits;
  c.causal = causal;
  c.threads = 2;
  c.seed = 42;
  return c;
}

void expect_matches_exact(Problem& p, const AttentionConfig& cfg) {
  ASSERT_TRUE(hyper_attention(p.args(), cfg).ok());
  reference::Output ref;
  ASSERT_TRUE(reference::exact_attention(p.args(), cfg, &ref).ok());
  const Error e = compare(p, ref);
  EXPECT_LE(e.out_max_abs, fp32_out_tolerance(p.shape.head_dim, p.shape.seq_kv));
  EXPECT_LE(e.lse_max_abs, 1e-4);
}

TEST(HyperAttention, BlockCoveringAllKeysWithoutSamplesIsExact) {
  for (auto [nq, nk] : std::vector<std::pair<std::int64_t, std::int64_t>>{{200, 200}, {97, 301}, {1, 50}, {301, 97}})
    for (bool causal : {false, true}) {
      SCOPED_TRACE(std::to_string(nq) + "x" + std::to_string(nk) + (causal ? " causal" : ""));
      Problem p({1, 2, 1, nq, nk, 64}, DType::f32, Layout::bshd, 11);
      expect_matches_exact(p, hyper_config(std::max(nq, nk), 0, 0, 7, causal));
    }
}

TEST(HyperAttention, BelowMinSeqLenIsExact) {
  for (bool causal : {false, true}) {
    Problem p({1, 1, 1, 300, 300, 32}, DType::f32, Layout::bhsd, 12);
    expect_matches_exact(p, hyper_config(16, 8, 301, 7, causal));
  }
}

TEST(HyperAttention, CausalRecursionWithExactPartsEqualsExactCausal) {
  // min_seq_len 16 splits into many levels; block_size >= n makes every off-diagonal part exact,
  // so only the recursion and its log-sum-exp merges are under test. Odd, prime, non-power-of-two
  // lengths, and seq_q < seq_kv (the visible-prefix part).
  for (auto [nq, nk] : std::vector<std::pair<std::int64_t, std::int64_t>>{{257, 257}, {1000, 1000}, {131, 517}, {33, 34}}) {
    SCOPED_TRACE(std::to_string(nq) + "x" + std::to_string(nk));
    Problem p({1, 2, 2, nq, nk, 32}, DType::f32, Layout::bhsd, 13);
    expect_matches_exact(p, hyper_config(nk, 0, 16, 7, true));
  }
}

void expect_matches_reference(Problem& p, const AttentionConfig& cfg) {
  ASSERT_TRUE(hyper_attention(p.args(), cfg).ok());
  reference::Output ref;
  ASSERT_TRUE(reference::hyper_attention(p.args(), cfg, {}, &ref).ok());
  const Error e = compare(p, ref);
  double tol = fp32_out_tolerance(p.shape.head_dim, cfg.block_size + cfg.sample_size);
  if (p.q.view.dtype == DType::bf16) tol += 5.0 * 0x1.0p-9;
  EXPECT_LE(e.out_max_abs, tol);
  EXPECT_LE(e.lse_max_abs, 1e-4);
}

TEST(HyperAttention, NonCausalMatchesReference) {
  for (Layout layout : {Layout::bhsd, Layout::bshd, Layout::padded})
    for (std::int64_t ratio : {1, 2, 4}) {
      Problem p({2, 2 * ratio, 2, 1000, 1000, 64}, DType::f32, layout, 21, 1.5f);
      expect_matches_reference(p, hyper_config(64, 32, 128, 5, false));
    }
  Problem ragged({1, 1, 1, 777, 777, 32}, DType::f32, Layout::bhsd, 22, 1.5f);
  expect_matches_reference(ragged, hyper_config(100, 17, 64, 4, false));
  Problem cross({1, 2, 1, 300, 1000, 64}, DType::f32, Layout::bhsd, 23, 1.5f);
  expect_matches_reference(cross, hyper_config(128, 32, 64, 6, false));
  Problem wide({1, 1, 1, 1000, 300, 64}, DType::f32, Layout::bhsd, 24, 1.5f);  // more queries than keys
  expect_matches_reference(wide, hyper_config(64, 16, 64, 6, false));
}

TEST(HyperAttention, CausalMatchesReference) {
  for (auto [nq, nk] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1000, 1000}, {777, 777}, {600, 1500}, {1500, 600}}) {
    SCOPED_TRACE(std::to_string(nq) + "x" + std::to_string(nk));
    Problem p({1, 2, 1, nq, nk, 64}, DType::f32, Layout::bshd, 31, 1.5f);
    expect_matches_reference(p, hyper_config(32, 16, 100, 6, true));
  }
}

TEST(HyperAttention, Bf16MatchesReference) {
  for (bool causal : {false, true}) {
    Problem p({1, 4, 2, 700, 700, 64}, DType::bf16, Layout::bshd, 41, 1.5f);
    expect_matches_reference(p, hyper_config(64, 32, 100, 7, causal));
  }
}

TEST(HyperAttention, ReferenceBucketOrderMatchesReference) {
  Problem p({1, 2, 1, 1024, 1024, 128}, DType::f32, Layout::bhsd, 42, 1.5f);
  AttentionConfig cfg = hyper_config(256, 64, 128, 7, false);
  cfg.bucket_order = BucketOrder::reference_gray;
  expect_matches_reference(p, cfg);
}

TEST(HyperAttention, SameSeedSameBytesForAnyThreadCount) {
  for (bool causal : {false, true}) {
    std::vector<std::uint8_t> first;
    for (int threads : {1, 2, 5}) {
      Problem p({2, 4, 2, 1100, 1100, 64}, DType::f32, Layout::bshd, 51);
      AttentionConfig cfg = hyper_config(64, 32, 128, 7, causal);
      cfg.threads = threads;
      ASSERT_TRUE(hyper_attention(p.args(), cfg).ok());
      if (first.empty()) first = p.out.storage;
      else EXPECT_EQ(0, std::memcmp(first.data(), p.out.storage.data(), first.size())) << threads << " threads";
    }
  }
}

TEST(HyperAttention, DifferentSeedsDrawDifferentSamples) {
  Problem a({1, 1, 1, 600, 600, 64}, DType::f32, Layout::bhsd, 52);
  Problem b({1, 1, 1, 600, 600, 64}, DType::f32, Layout::bhsd, 52);
  AttentionConfig cfg = hyper_config(64, 32, 128, 7, false);
  ASSERT_TRUE(hyper_attention(a.args(), cfg).ok());
  cfg.seed = 43;
  ASSERT_TRUE(hyper_attention(b.args(), cfg).ok());
  EXPECT_NE(0, std::memcmp(a.out.storage.data(), b.out.storage.data(), a.out.storage.size()));
}

TEST(HyperAttention, ConstantValuesGiveThatConstant) {
  for (bool causal : {false, true}) {
    Problem p({1, 2, 1, 900, 900, 64}, DType::f32, Layout::bhsd, 61, 2.0f);
    for (std::int64_t j = 0; j < 900; ++j)
      for (std::int64_t c = 0; c < 64; ++c) p.v.set(0, 0, j, c, 0.5f + static_cast<float>(c));
    ASSERT_TRUE(hyper_attention(p.args(), hyper_config(64, 32, 100, 7, causal)).ok());
    // A convex combination of equal values: only rounding remains. Numerator and denominator are
    // fp32 sums over at most 100 keys (leaves of min_seq_len, or 64 + 32 block and sample keys),
    // each a relative error of at most keys * 2^-24, plus about 4 roundings per log-sum-exp merge
    // over at most 5 levels: |v| * (2 * 100 + 4 * 5) * 2^-24 with |v| <= 64.
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t i = 0; i < 900; ++i)
        for (std::int64_t c = 0; c < 64; ++c) ASSERT_NEAR(p.out.get(0, h, i, c), 0.5f + static_cast<float>(c), 64.0 * (2 * 100 + 4 * 5) * 0x1.0p-24);
  }
}

// Over many seeds, e^{lse} (the estimated softmax denominator) and e^{lse} * out (the estimated
// numerator) average to the exact sums: the block part is exact and the weighted samples are
// unbiased for the rest. The bound is 5 standard errors of the mean, from the sample variance.
// Causal with a local window: rows chosen next to the recursion's boundaries (256, 384), where the
// window reaches into the approximated parts, and far from them.
void check_unbiased(Sampling sampling, bool causal = false, std::int64_t window = 0) {
  Problem p({1, 1, 1, 512, 512, 32}, DType::f32, Layout::bhsd, 71, 1.2f);
  reference::Output ex;
  AttentionConfig cfg = hyper_config(64, 16, causal ? 100 : 0, 4, causal);
  cfg.sampling = sampling;
  cfg.local_window = window;
  ASSERT_TRUE(reference::exact_attention(p.args(), cfg, &ex).ok());
  const int runs = 300;
  const std::vector<int> rows = causal ? std::vector<int>{130, 257, 270, 385, 511} : std::vector<int>{0, 17, 255, 400, 511};
  std::vector<double> sum(rows.size() * 2), sum2(rows.size() * 2);
  for (int s = 0; s < runs; ++s) {
    cfg.seed = static_cast<std::uint64_t>(1000 + s);
    ASSERT_TRUE(hyper_attention(p.args(), cfg).ok());
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const double z = std::exp(static_cast<double>(p.lse[rows[r]]) - ex.lse[rows[r]]);  // denominator ratio
      const double num = z * p.out.get(0, 0, rows[r], 3);  // numerator of column 3, over the exact denominator
      const double xs[2] = {z, num};
      for (int k = 0; k < 2; ++k) {
        sum[r * 2 + k] += xs[k];
        sum2[r * 2 + k] += xs[k] * xs[k];
      }
    }
  }
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const double expect[2] = {1.0, ex.out[static_cast<std::size_t>(rows[r]) * 32 + 3]};
    for (int k = 0; k < 2; ++k) {
      const double mean = sum[r * 2 + k] / runs;
      const double var = std::max(sum2[r * 2 + k] / runs - mean * mean, 0.0);
      const double se = std::sqrt(var / runs);
      EXPECT_LE(std::abs(mean - expect[k]), 5.0 * se + 1e-6) << "row " << rows[r] << (k ? " numerator" : " denominator");
      EXPECT_GT(se, 0.0);  // the estimate really is random
    }
  }
}

TEST(HyperAttention, UniformSamplingIsUnbiased) { check_unbiased(Sampling::uniform); }
TEST(HyperAttention, ValueNormSamplingIsUnbiased) { check_unbiased(Sampling::value_norm); }

TEST(HyperAttention, CausalEmptyRowsAndGroupedHeads) {
  Problem p({1, 4, 1, 1200, 700, 64}, DType::f32, Layout::bhsd, 81);
  ASSERT_TRUE(hyper_attention(p.args(), hyper_config(64, 16, 128, 7, true)).ok());
  for (std::int64_t h = 0; h < 4; ++h)
    for (std::int64_t i = 0; i < 500; ++i) {
      ASSERT_EQ(p.lse[static_cast<std::size_t>(h * 1200 + i)], -INFINITY);
      ASSERT_EQ(p.out.get(0, h, i, 5), 0.0f);
    }
}

TEST(HyperAttention, InjectedSamplesAreUsed) {
  Problem p({1, 1, 1, 500, 500, 32}, DType::f32, Layout::bhsd, 91);
  AttentionConfig cfg = hyper_config(100, 10, 0, 5, false);
  const std::int64_t blocks = 5;
  std::vector<std::int32_t> samples(static_cast<std::size_t>(blocks * 10), 0);  // key 0 ten times per block
  InjectedRandomness inj;
  inj.samples = samples.data();
  ASSERT_TRUE(hyper_attention(p.args(), cfg, inj).ok());
  reference::Output ref;
  ASSERT_TRUE(reference::hyper_attention(p.args(), cfg, inj, &ref).ok());
  EXPECT_LE(compare(p, ref).out_max_abs, fp32_out_tolerance(32, 110));
}

TEST(HyperAttention, LshBlocksPartitionQueriesAndKeys) {
  Problem p({1, 2, 1, 1000, 1000, 64}, DType::f32, Layout::bhsd, 92);
  AttentionConfig cfg = hyper_config(128, 32, 0, 6, false);
  std::vector<std::int32_t> qb(2000), kb(1000);
  ASSERT_TRUE(lsh_blocks(p.args(), cfg, {}, qb.data(), kb.data()).ok());
  std::vector<int> keys_per_block(8), queries_per_block(8);
  for (int j : kb) ++keys_per_block[static_cast<std::size_t>(j)];
  for (int i = 0; i < 1000; ++i) ++queries_per_block[static_cast<std::size_t>(qb[static_cast<std::size_t>(i)])];
  for (int b = 0; b < 7; ++b) EXPECT_EQ(keys_per_block[static_cast<std::size_t>(b)], 128);
  EXPECT_EQ(keys_per_block[7], 1000 - 7 * 128);  // ragged last block
  for (int b = 0; b < 8; ++b) EXPECT_EQ(queries_per_block[static_cast<std::size_t>(b)], (b + 1) * 1000 / 8 - b * 1000 / 8);
}

}  // namespace
}  // namespace hyperattn::testing

namespace hyperattn::testing {
namespace {

TEST(HyperVariants, SinksAndStratifiedMatchReference) {
  for (Sampling sampling : {Sampling::uniform, Sampling::stratified})
    for (std::int64_t sinks : {0, 16, 100}) {
      for (bool causal : {false, true}) {
        SCOPED_TRACE(std::to_string(static_cast<int>(sampling)) + " sinks " + std::to_string(sinks) + (causal ? " causal" : ""));
        Problem p({1, 2, 1, 1000, 1000, 64}, DType::f32, Layout::bshd, 101, 1.5f);
        AttentionConfig cfg = hyper_config(64, 32, 100, 6, causal);
        cfg.sampling = sampling;
        cfg.sink_keys = sinks;
        expect_matches_reference(p, cfg);
      }
    }
}

TEST(HyperVariants, StratifiedSamplingIsUnbiased) { check_unbiased(Sampling::stratified); }
TEST(HyperVariants, PositionStratifiedSamplingIsUnbiased) { check_unbiased(Sampling::position_stratified); }

// The same output bytes with 1 and 3 threads (causal, 1500 rows, leaves of at most 128).
void expect_same_bytes_across_threads(AttentionConfig cfg, std::uint64_t seed) {
  std::vector<std::uint8_t> first;
  for (int threads : {1, 3}) {
    Problem p({1, 2, 1, 1500, 1500, 64}, DType::f32, Layout::bshd, seed);
    cfg.threads = threads;
    ASSERT_TRUE(hyper_attention(p.args(), cfg).ok());
    if (first.empty()) first = p.out.storage;
    else EXPECT_EQ(0, std::memcmp(first.data(), p.out.storage.data(), first.size()));
  }
}

TEST(HyperVariants, PositionStratifiedIsDeterministicAcrossThreads) {
  AttentionConfig cfg = hyper_config(32, 96, 128, 7, true);
  cfg.sampling = Sampling::position_stratified;
  expect_same_bytes_across_threads(cfg, 104);
}

TEST(HyperVariants, SinksCoveringEverythingAreExact) {
  Problem p({1, 1, 1, 400, 400, 32}, DType::f32, Layout::bhsd, 102);
  AttentionConfig cfg = hyper_config(16, 8, 0, 5, false);
  cfg.sink_keys = 400;
  expect_matches_exact(p, cfg);
}

TEST(HyperVariants, ValueNormWithoutOutsideMassStaysUnbiased) {
  // Zero queries (every score 0) and zero values: each sampled weight must count its key once, so
  // the estimated denominator is exactly n and LSE = log n (a doubled weight gave log(256 + 2 * 3840)).
  Problem p({1, 1, 1, 4096, 4096, 16}, DType::f32, Layout::bhsd, 105);
  for (std::int64_t i = 0; i < 4096; ++i)
    for (std::int64_t c = 0; c < 16; ++c) {
      p.q.set(0, 0, i, c, 0.0f);
      p.v.set(0, 0, i, c, 0.0f);
    }
  AttentionConfig cfg = hyper_config(256, 256, 0, 7, false);
  cfg.sampling = Sampling::value_norm;
  ASSERT_TRUE(hyper_attention(p.args(), cfg).ok());
  for (std::size_t i = 0; i < 4096; i += 97) EXPECT_NEAR(p.lse[i], std::log(4096.0), 1e-5);
}

TEST(HyperVariants, SinksReachPastTheVisiblePrefix) {
  // Causal with seq_q < seq_kv: the first 40 keys form the visible prefix; with 100 sinks, keys
  // 40..99 are sinks of the causal parts too. Matches the reference (which applies the same rule)
  // and, with sinks covering every off-diagonal key set, exact attention.
  Problem p({1, 1, 1, 200, 240, 32}, DType::f32, Layout::bhsd, 106);
  AttentionConfig cfg = hyper_config(16, 8, 16, 5, true);
  cfg.sink_keys = 240;
  expect_matches_exact(p, cfg);
  cfg.sink_keys = 100;
  expect_matches_reference(p, cfg);
}

TEST(HyperVariants, SinksAreMarkedInLshBlocks) {
  Problem p({1, 1, 1, 500, 500, 32}, DType::f32, Layout::bhsd, 103);
  AttentionConfig cfg = hyper_config(64, 8, 0, 5, false);
  cfg.sink_keys = 10;
  std::vector<std::int32_t> qb(500), kb(500);
  ASSERT_TRUE(lsh_blocks(p.args(), cfg, {}, qb.data(), kb.data()).ok());
  for (int j = 0; j < 10; ++j) EXPECT_EQ(kb[static_cast<std::size_t>(j)], -1);
  for (int j = 10; j < 500; ++j) EXPECT_GE(kb[static_cast<std::size_t>(j)], 0);
}

}  // namespace
}  // namespace hyperattn::testing

namespace hyperattn::testing {
namespace {

// A causal problem whose recursion has several approximated levels (n 1000, leaves <= 100).
TEST(HyperVariants, LocalWindowMatchesReference) {
  for (Sampling sampling : {Sampling::uniform, Sampling::stratified})
    for (std::int64_t window : {1, 16, 300})
      for (std::int64_t sinks : {0, 16}) {
        SCOPED_TRACE(std::to_string(static_cast<int>(sampling)) + " window " + std::to_string(window) + " sinks " +
                     std::to_string(sinks));
        Problem p({1, 2, 1, 1000, 1000, 64}, DType::f32, Layout::bshd, 107, 1.5f);
        AttentionConfig cfg = hyper_config(64, 32, 100, 6, true);
        cfg.sampling = sampling;
        cfg.local_window = window;
        cfg.sink_keys = sinks;
        expect_matches_reference(p, cfg);
      }
}

TEST(HyperVariants, LocalWindowWithVisiblePrefixMatchesReference) {
  // seq_q < seq_kv: the visible-prefix part also carries the window of the first causal rows.
  Problem p({1, 3, 1, 700, 900, 32}, DType::f32, Layout::bhsd, 108, 1.5f);
  AttentionConfig cfg = hyper_config(32, 32, 64, 5, true);
  cfg.sampling = Sampling::stratified;
  cfg.local_window = 40;
  expect_matches_reference(p, cfg);
}

TEST(HyperVariants, LocalWindowCoveringEverythingIsExact) {
  // Every key of every approximated part lies within the window of every query that sees it.
  Problem p({1, 2, 1, 600, 600, 32}, DType::f32, Layout::bhsd, 109);
  AttentionConfig cfg = hyper_config(16, 8, 50, 5, true);
  cfg.local_window = 600;
  expect_matches_exact(p, cfg);
}

TEST(HyperVariants, LocalWindowChangesOnlyRowsItReaches) {
  // Window 10 with leaves of at most 100 rows: a row more than 10 positions after the start of its
  // leaf (and of every off-diagonal part) has its whole window inside its exact leaf, so its output
  // is bit-identical to the run without a window; rows right after a boundary differ.
  Problem a({1, 1, 1, 800, 800, 32}, DType::f32, Layout::bhsd, 110, 1.5f);
  Problem b({1, 1, 1, 800, 800, 32}, DType::f32, Layout::bhsd, 110, 1.5f);
  AttentionConfig cfg = hyper_config(16, 8, 100, 5, true);
  ASSERT_TRUE(hyper_attention(a.args(), cfg).ok());
  cfg.local_window = 10;
  ASSERT_TRUE(hyper_attention(b.args(), cfg).ok());
  EXPECT_NE(a.lse[400], b.lse[400]);  // the first row of the top level's second half
  for (std::size_t i : {450u, 499u, 720u, 799u}) EXPECT_EQ(a.lse[i], b.lse[i]) << "row " << i;
}

TEST(HyperVariants, LocalWindowIsUnbiased) {
  check_unbiased(Sampling::uniform, true, 24);
  check_unbiased(Sampling::stratified, true, 24);
}

TEST(HyperVariants, LocalWindowIsDeterministicAcrossThreads) {
  AttentionConfig cfg = hyper_config(32, 96, 128, 7, true);
  cfg.sampling = Sampling::stratified;
  cfg.local_window = 64;
  expect_same_bytes_across_threads(cfg, 111);
}

}  // namespace
}  // namespace hyperattn::testing

// tests/api/test_exact.cpp: exact attention against the double reference, over shapes, layouts,
// dtypes, grouped heads, causal alignments and thread counts.
#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>

#include "attention_tester.hpp"

namespace hyperattn::testing {
namespace {

struct Case {
  Shape shape;
  bool causal;
  Layout layout;
  DType dtype;
};

std::string name(const Case& c) {
  return "b" + std::to_string(c.shape.batch) + "_hq" + std::to_string(c.shape.heads_q) + "_hkv" +
         std::to_string(c.shape.heads_kv) + "_nq" + std::to_string(c.shape.seq_q) + "_nk" +
         std::to_string(c.shape.seq_kv) + "_d" + std::to_string(c.shape.head_dim) + (c.causal ? "_causal" : "") +
         "_layout" + std::to_string(static_cast<int>(c.layout)) + "_" + to_string(c.dtype);
}

void check_exact(const Case& c, int threads = 2) {
  SCOPED_TRACE(name(c));
  Problem p(c.shape, c.dtype, c.layout, 1234 + c.shape.seq_q * 7 + c.shape.seq_kv);
  AttentionConfig cfg;
  cfg.causal = c.causal;
  cfg.threads = threads;
  ASSERT_TRUE(exact_attention(p.args(), cfg).ok());
  reference::Output ref;
  ASSERT_TRUE(reference::exact_attention(p.args(), cfg, &ref).ok());
  const Error e = compare(p, ref);
  double tol = fp32_out_tolerance(c.shape.head_dim, c.shape.seq_kv);
  double lse_tol = static_cast<double>(c.shape.head_dim) * 0x1.0p-24 * 40.0 + 1e-5;
  if (c.dtype == DType::bf16) {
    // The inputs are exactly representable (the reference reads the same bf16 values); the output
    // is rounded once to bf16: |out| <= max|v| ~ 5 gives 5 * 2^-9 on top of the fp32 error.
    tol += 5.0 * 0x1.0p-9;
  }
  EXPECT_LE(e.out_max_abs, tol);
  EXPECT_LE(e.lse_max_abs, lse_tol);
}

// Causal exact attention on shape s (f32, [b, s, h, d] memory) gives the same output bytes for
// each thread count.
void expect_same_bytes_for_thread_counts(const Shape& s, std::initializer_list<int> thread_counts, std::uint64_t seed) {
  std::vector<std::uint8_t> first;
  for (int threads : thread_counts) {
    Problem p(s, DType::f32, Layout::bshd, seed);
    AttentionConfig cfg;
    cfg.causal = true;
    cfg.threads = threads;
    ASSERT_TRUE(exact_attention(p.args(), cfg).ok());
    if (first.empty())
      first = p.out.storage;
    else
      EXPECT_EQ(0, std::memcmp(first.data(), p.out.storage.data(), first.size())) << threads << " threads";
  }
}

TEST(ExactAttention, LengthsAroundTiles) {
  for (std::int64_t n : {1, 2, 7, 63, 64, 65, 127, 128, 129, 257, 300}) {
    for (bool causal : {false, true}) check_exact({{1, 1, 1, n, n, 64}, causal, Layout::bhsd, DType::f32});
  }
}

// Parts of 16384 rows or more run in 512-row work items, shorter ones in 256-row items
// (exact_row_chunk). Few keys keep the reference cheap: a last item of 1 row (non-causal), and
// seq_q > seq_kv causal, where each item's diagonal is offset from the part's (rows before the
// last 700 see no key) and the last item holds 511 rows; the bytes unchanged by the thread count.
TEST(ExactAttention, LongPartsInLargerWorkItems) {
  check_exact({{1, 1, 1, 16385, 64, 16}, false, Layout::bhsd, DType::f32});
  check_exact({{1, 2, 1, 16895, 700, 16}, true, Layout::bshd, DType::f32});
  expect_same_bytes_for_thread_counts({1, 2, 1, 16896, 1100, 16}, {1, 2, 3}, 9);
}

TEST(ExactAttention, HeadDims) {
  for (std::int64_t d : {16, 32, 48, 64, 96, 128, 256})
    for (bool causal : {false, true}) check_exact({{1, 2, 1, 97, 97, d}, causal, Layout::bhsd, DType::f32});
}

TEST(ExactAttention, GroupedQueryRatiosAndLayouts) {
  for (std::int64_t ratio : {1, 2, 4, 8})
    for (Layout layout : {Layout::bhsd, Layout::bshd, Layout::padded})
      check_exact({{2, 2 * ratio, 2, 131, 131, 32}, true, layout, DType::f32});
}

TEST(ExactAttention, CrossLengthsBottomRightCausal) {
  // seq_q < seq_kv (chunked prefill), seq_q > seq_kv (leading rows see nothing: O = 0, LSE = -inf).
  for (auto [nq, nk] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 300}, {37, 300}, {300, 1000}, {300, 37}, {5, 3}})
    for (bool causal : {false, true}) check_exact({{1, 2, 1, nq, nk, 64}, causal, Layout::bshd, DType::f32});
}

TEST(ExactAttention, EmptyRowsFollowTheEmptySetRule) {
  Problem p({1, 1, 1, 10, 4, 32}, DType::f32, Layout::bhsd, 7);
  AttentionConfig cfg;
  cfg.causal = true;
  ASSERT_TRUE(exact_attention(p.args(), cfg).ok());
  for (int i = 0; i < 6; ++i) {  // query i sits at key position 4 - 10 + i < 0
    EXPECT_EQ(p.lse[static_cast<std::size_t>(i)], -INFINITY);
    for (int c = 0; c < 32; ++c) EXPECT_EQ(p.out.get(0, 0, i, c), 0.0f);
  }
  EXPECT_TRUE(std::isfinite(p.lse[6]));
}

TEST(ExactAttention, NaNInputsPropagate) {
  // Specification §5: NaN in the inputs propagates; it must never look like "no key" (O = 0,
  // LSE = -inf) or vanish. Row 3 of q is NaN; key 5 of v is NaN (every causal row past it).
  for (bool causal : {false, true}) {
    Problem p({1, 1, 1, 300, 300, 64}, DType::f32, Layout::bhsd, 8);
    for (int c = 0; c < 64; ++c) p.q.set(0, 0, 3, c, std::nanf(""));
    AttentionConfig cfg;
    cfg.causal = causal;
    ASSERT_TRUE(exact_attention(p.args(), cfg).ok());
    EXPECT_TRUE(std::isnan(p.lse[3]));
    EXPECT_TRUE(std::isnan(p.out.get(0, 0, 3, 0)));
    EXPECT_TRUE(std::isfinite(p.lse[2]) && std::isfinite(p.lse[4]));
    for (int c = 0; c < 64; ++c) p.q.set(0, 0, 3, c, 0.5f);
    p.v.set(0, 0, 5, 7, std::nanf(""));
    ASSERT_TRUE(exact_attention(p.args(), cfg).ok());
    EXPECT_TRUE(std::isnan(p.out.get(0, 0, 200, 7)));
    // Causal rows 0..4 do not see key 5: they stay finite (the call runs on the strict kernel,
    // which never multiplies an unseen key's weight 0 by its NaN; docs/numerics.md).
    for (int i = 0; i < 5 && causal; ++i) EXPECT_TRUE(std::isfinite(p.out.get(0, 0, i, 7))) << "row " << i;
  }
}

TEST(ExactAttention, Bf16MatchesReferenceOnTheSameInputs) {
  for (bool causal : {false, true}) {
    check_exact({{1, 2, 2, 200, 200, 64}, causal, Layout::bhsd, DType::bf16});
    check_exact({{1, 4, 2, 129, 333, 128}, causal, Layout::bshd, DType::bf16});
  }
}

TEST(ExactAttention, Bf16AgainstFp32WithinRoundingOfInputs) {
  // The same values rounded to bf16: each input carries a relative error of at most 2^-9, which
  // moves a score s = scale <q,k> by |s| * 2 * 2^-9 and v by 2^-9 |v|; with |s| <= ~6 (unit
  // Gaussians, d = 64) the output moves by at most max|v| * 2 * |ds| + 2^-9 max|v| + output
  // rounding 2^-9 max|v| ~ 5 * (2 * 6 * 2^-8 + 2 * 2^-9) ~ 0.25 in the worst case; we use the
  // relative Frobenius error, whose expectation is far smaller (independent roundings average):
  // bounded by the per-element relative bound 2 * 6 * 2^-8 + 2^-8 ~ 0.05.
  Shape s{1, 2, 1, 300, 300, 64};
  Problem p32(s, DType::f32, Layout::bhsd, 99);
  Problem p16(s, DType::bf16, Layout::bhsd, 99);
  AttentionConfig cfg;
  cfg.causal = true;
  ASSERT_TRUE(exact_attention(p32.args(), cfg).ok());
  ASSERT_TRUE(exact_attention(p16.args(), cfg).ok());
  double num = 0, den = 0;
  for (std::int64_t h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < 300; ++i)
      for (std::int64_t c = 0; c < 64; ++c) {
        const double a = p32.out.get(0, h, i, c), b = p16.out.get(0, h, i, c);
        num += (a - b) * (a - b);
        den += a * a;
      }
  EXPECT_LE(std::sqrt(num / den), 0.05);
  EXPECT_GT(std::sqrt(num / den), 0.0);  // the inputs really were rounded
}

TEST(ExactAttention, ThreadCountDoesNotChangeABit) {
  expect_same_bytes_for_thread_counts({2, 4, 2, 517, 517, 64}, {1, 2, 3, 8}, 5);
}

TEST(ExactAttention, LseIsOptionalAndScaleIsHonoured) {
  Problem p({1, 1, 1, 50, 50, 32}, DType::f32, Layout::bhsd, 3);
  AttentionConfig cfg;
  cfg.scale = 0.3f;
  AttentionArgs a = p.args();
  a.lse = {};
  ASSERT_TRUE(exact_attention(a, cfg).ok());
  reference::Output ref;
  ASSERT_TRUE(reference::exact_attention(a, cfg, &ref).ok());
  std::fill(p.lse.begin(), p.lse.end(), 0.0f);  // compare() reads lse: give it the reference's
  for (std::size_t i = 0; i < p.lse.size(); ++i) p.lse[i] = static_cast<float>(ref.lse[i]);
  EXPECT_LE(compare(p, ref).out_max_abs, fp32_out_tolerance(32, 50));
}

}  // namespace
}  // namespace hyperattn::testing

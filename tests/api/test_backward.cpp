// tests/api/test_backward.cpp: the backward pass of exact attention and HyperAttention against the
// double-precision closed form (reference::backward_sets over the reference's own key sets), which
// is itself checked against central finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "attention_tester.hpp"
#include "reference/reference.hpp"

namespace hyperattn::testing {
namespace {

// Key-set entries with a nonzero bias: sampled keys (log w) or masked ones (-inf).
std::size_t weighted_entries(const reference::KeySets& sets) {
  std::size_t n = 0;
  for (const auto& set : sets)
    for (const auto& e : set) n += e.bias != 0.0;
  return n;
}

// ---- the reference against finite differences --------------------------------------------------

// Central differences of the closed form's loss over fixed key sets, for every coordinate.
void check_reference_by_finite_differences(const AttentionArgs& args, const AttentionConfig& config,
                                           const reference::KeySets& sets, std::uint64_t seed) {
  reference::DoubleProblem dp = reference::to_problem(args, config);
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> d_out(dp.q.size()), d_lse(static_cast<std::size_t>(dp.batch * dp.heads_q * dp.seq_q));
  for (double& x : d_out) x = nd(gen);
  for (double& x : d_lse) x = nd(gen);
  const reference::Gradients g = reference::backward_sets(dp, sets, d_out, d_lse);
  const double h = 1e-5;
  double worst = 0.0;
  for (int which = 0; which < 3; ++which) {
    std::vector<double>& x = which == 0 ? dp.q : which == 1 ? dp.k : dp.v;
    const std::vector<double>& gx = which == 0 ? g.dq : which == 1 ? g.dk : g.dv;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double up = reference::loss_sets(dp, sets, d_out, d_lse);
      x[i] = x0 - h;
      const double down = reference::loss_sets(dp, sets, d_out, d_lse);
      x[i] = x0;
      const double fd = (up - down) / (2.0 * h);
      // Truncation h^2 * f''' and rounding eps64 * |loss| / h: both below 1e-6 here.
      worst = std::max(worst, std::abs(fd - gx[i]) / (1.0 + std::abs(fd)));
    }
  }
  EXPECT_LT(worst, 1e-6);
}

TEST(ReferenceBackward, ExactMatchesFiniteDifferences) {
  for (bool causal : {false, true})
    for (auto [nq, nk] : {std::pair<std::int64_t, std::int64_t>{6, 6}, {4, 7}, {7, 4}}) {
      Problem p({1, 2, 1, nq, nk, 16}, DType::f32, Layout::bhsd, 11);
      AttentionConfig c;
      c.causal = causal;
      reference::KeySets sets;
      ASSERT_TRUE(reference::exact_key_sets(p.args(), c, &sets).ok());
      SCOPED_TRACE(::testing::Message() << "causal " << causal << " nq " << nq << " nk " << nk);
      check_reference_by_finite_differences(p.args(), c, sets, 5);
    }
}

TEST(ReferenceBackward, HyperMatchesFiniteDifferencesIncludingMerges) {
  // Small enough for every coordinate, large enough that the causal recursion approximates an
  // off-diagonal block (its rows merge an exact leaf with sampled keys carrying log w biases).
  for (bool causal : {false, true}) {
    Problem p({1, 2, 1, 24, 24, 16}, DType::f32, Layout::bhsd, 12);
    AttentionConfig c;
    c.causal = causal;
    c.block_size = 4;
    c.sample_size = 3;
    c.min_seq_len = 6;
    c.lsh_bits = 3;
    reference::KeySets sets;
    ASSERT_TRUE(reference::hyper_key_sets(p.args(), c, {}, &sets).ok());
    ASSERT_GT(weighted_entries(sets), 0u) << "the test must exercise sampled (weighted) keys";
    SCOPED_TRACE(::testing::Message() << "causal " << causal);
    check_reference_by_finite_differences(p.args(), c, sets, 6);
  }
}

// ---- exact attention ---------------------------------------------------------------------------

struct ExactCase {
  Shape shape;
  bool causal;
  DType dtype;
  Layout layout;
  DType grad_dtype;
};

TEST(ExactBackward, MatchesClosedForm) {
  const ExactCase cases[] = {
      {{1, 1, 1, 200, 200, 64}, false, DType::f32, Layout::bhsd, DType::f32},
      {{1, 1, 1, 200, 200, 64}, true, DType::f32, Layout::bhsd, DType::f32},
      {{2, 4, 2, 77, 300, 32}, true, DType::f32, Layout::bshd, DType::f32},    // GQA, bottom-right causal
      {{1, 3, 1, 300, 77, 16}, true, DType::f32, Layout::padded, DType::f32},  // rows that see nothing
      {{1, 2, 2, 130, 190, 128}, false, DType::f32, Layout::padded, DType::f32},
      {{1, 4, 1, 150, 150, 64}, true, DType::bf16, Layout::bshd, DType::bf16},
      {{1, 2, 1, 100, 260, 64}, false, DType::bf16, Layout::bhsd, DType::f32},
  };
  for (const ExactCase& ec : cases) {
    GradProblem gp(ec.shape, ec.dtype, ec.layout, 21, ec.grad_dtype);
    AttentionConfig c;
    c.causal = ec.causal;
    ASSERT_TRUE(exact_attention(gp.p.args(), c).ok());
    const Status s = exact_attention_backward(gp.grad_args(), c);
    ASSERT_TRUE(s.ok()) << s.message();
    reference::KeySets sets;
    ASSERT_TRUE(reference::exact_key_sets(gp.p.args(), c, &sets).ok());
    const reference::Gradients ref = gp.reference_gradients(sets, c);
    SCOPED_TRACE(::testing::Message() << "nq " << ec.shape.seq_q << " nk " << ec.shape.seq_kv << " d " << ec.shape.head_dim
                                    << " causal " << ec.causal << " " << to_string(ec.dtype));
    expect_gradients_match(gp, ref, grad_tolerance(ec.dtype, ec.grad_dtype, ec.shape.head_dim, std::max(ec.shape.seq_q, ec.shape.seq_kv)), "exact");
  }
}

TEST(ExactBackward, RowsThatSeeNothingGetZeroGradient) {
  GradProblem gp({1, 1, 1, 40, 10, 16}, DType::f32, Layout::bhsd, 3);
  AttentionConfig c;
  c.causal = true;  // rows 0..29 see no key
  ASSERT_TRUE(exact_attention(gp.p.args(), c).ok());
  ASSERT_TRUE(exact_attention_backward(gp.grad_args(), c).ok());
  for (std::int64_t i = 0; i < 30; ++i)
    for (std::int64_t e = 0; e < 16; ++e) ASSERT_EQ(gp.dq.get(0, 0, i, e), 0.0f) << "row " << i;
}

// ---- HyperAttention ----------------------------------------------------------------------------

struct HyperCase {
  Shape shape;
  bool causal;
  Sampling sampling;
  std::int64_t sinks, window;
  DType dtype;
  Layout layout;
};

AttentionConfig small_hyper(bool causal, Sampling sampling, std::int64_t sinks, std::int64_t window) {
  return small_hyper_config({.causal = causal, .sampling = sampling, .sinks = sinks, .window = window, .lsh_bits = 4, .seed = 7});
}

TEST(HyperBackward, MatchesClosedFormOfTheEstimator) {
  const HyperCase cases[] = {
      {{1, 2, 1, 512, 512, 64}, false, Sampling::uniform, 0, 0, DType::f32, Layout::bhsd},
      {{1, 2, 1, 512, 512, 64}, true, Sampling::uniform, 0, 0, DType::f32, Layout::bhsd},
      {{2, 4, 2, 300, 500, 32}, true, Sampling::uniform, 0, 0, DType::f32, Layout::bshd},  // GQA, ragged, n_q < n_k
      {{1, 2, 2, 450, 450, 64}, true, Sampling::stratified, 8, 0, DType::f32, Layout::padded},
      {{1, 2, 1, 520, 520, 64}, true, Sampling::uniform, 0, 24, DType::f32, Layout::bhsd},  // local window
      {{1, 3, 1, 400, 400, 64}, false, Sampling::stratified, 5, 0, DType::bf16, Layout::bshd},
  };
  for (const HyperCase& hc : cases) {
    GradProblem gp(hc.shape, hc.dtype, hc.layout, 31);
    const AttentionConfig c = small_hyper(hc.causal, hc.sampling, hc.sinks, hc.window);
    ASSERT_TRUE(hyper_attention(gp.p.args(), c).ok());
    const Status s = hyper_attention_backward(gp.grad_args(), c);
    ASSERT_TRUE(s.ok()) << s.message();
    reference::KeySets sets;
    ASSERT_TRUE(reference::hyper_key_sets(gp.p.args(), c, {}, &sets).ok());
    ASSERT_GT(weighted_entries(sets), 0u) << "the case must approximate something";
    const reference::Gradients ref = gp.reference_gradients(sets, c);
    SCOPED_TRACE(::testing::Message() << "nq " << hc.shape.seq_q << " nk " << hc.shape.seq_kv << " causal " << hc.causal
                                    << " sampling " << static_cast<int>(hc.sampling) << " sinks " << hc.sinks
                                    << " window " << hc.window << " " << to_string(hc.dtype));
    // Sums run over at most a causal leaf's keys (min_seq_len) plus the samples of every level.
    expect_gradients_match(gp, ref, grad_tolerance(hc.dtype, DType::f32, hc.shape.head_dim, 4 * c.min_seq_len), "hyper");
  }
}

TEST(HyperBackward, OneBlockNoSamplesIsExactAttentionsGradient) {
  for (bool causal : {false, true}) {
    GradProblem a({1, 2, 1, 300, 300, 64}, DType::f32, Layout::bhsd, 41);
    GradProblem b({1, 2, 1, 300, 300, 64}, DType::f32, Layout::bhsd, 41);
    AttentionConfig c;
    c.causal = causal;
    c.block_size = 512;
    c.sample_size = 0;
    c.min_seq_len = 0;
    ASSERT_TRUE(hyper_attention(a.p.args(), c).ok());
    ASSERT_TRUE(hyper_attention_backward(a.grad_args(), c).ok());
    AttentionConfig e;
    e.causal = causal;
    ASSERT_TRUE(exact_attention(b.p.args(), e).ok());
    ASSERT_TRUE(exact_attention_backward(b.grad_args(), e).ok());
    reference::KeySets sets;
    ASSERT_TRUE(reference::exact_key_sets(b.p.args(), e, &sets).ok());
    const reference::Gradients ref = b.reference_gradients(sets, e);
    expect_gradients_match(a, ref, grad_tolerance(DType::f32, DType::f32, 64, 300), "hyper with one block");
    expect_gradients_match(b, ref, grad_tolerance(DType::f32, DType::f32, 64, 300), "exact");
  }
}

TEST(HyperBackward, SameBytesForAnyThreadCount) {
  for (Sampling sampling : {Sampling::uniform, Sampling::stratified, Sampling::value_norm, Sampling::position_stratified})
    for (bool causal : {false, true}) {
      std::vector<std::vector<double>> first;
      for (int threads : {1, 2, 3, 7}) {
        GradProblem gp({1, 4, 2, 400, 400, 32}, DType::f32, Layout::bhsd, 51);
        AttentionConfig c = small_hyper(causal, sampling, 4, causal ? 16 : 0);
        c.threads = threads;
        ASSERT_TRUE(hyper_attention(gp.p.args(), c).ok());
        ASSERT_TRUE(hyper_attention_backward(gp.grad_args(), c).ok());
        std::vector<std::vector<double>> now = {values(gp.dq), values(gp.dk), values(gp.dv)};
        for (const auto& x : now)
          for (double y : x) ASSERT_TRUE(std::isfinite(y));
        if (first.empty())
          first = now;
        else
          for (int i = 0; i < 3; ++i)
            ASSERT_TRUE(std::memcmp(first[i].data(), now[i].data(), first[i].size() * sizeof(double)) == 0)
                << "sampling " << static_cast<int>(sampling) << " causal " << causal << " threads " << threads << " tensor " << i;
      }
    }
}

TEST(HyperBackward, WithoutDLseMatchesClosedForm) {
  GradProblem gp({1, 2, 1, 512, 512, 64}, DType::f32, Layout::bhsd, 61);
  const AttentionConfig c = small_hyper(true, Sampling::uniform, 0, 0);
  ASSERT_TRUE(hyper_attention(gp.p.args(), c).ok());
  ASSERT_TRUE(hyper_attention_backward(gp.grad_args(/*with_d_lse=*/false), c).ok());
  reference::KeySets sets;
  ASSERT_TRUE(reference::hyper_key_sets(gp.p.args(), c, {}, &sets).ok());
  const reference::Gradients ref = gp.reference_gradients(sets, c, /*with_d_lse=*/false);
  expect_gradients_match(gp, ref, grad_tolerance(DType::f32, DType::f32, 64, 4 * c.min_seq_len), "no d_lse");
}

// ---- the door ----------------------------------------------------------------------------------

TEST(BackwardErrors, NameTheArgument) {
  GradProblem gp({1, 2, 1, 64, 64, 32}, DType::f32, Layout::bhsd, 71);
  AttentionConfig c;
  ASSERT_TRUE(exact_attention(gp.p.args(), c).ok());
  auto expect_error = [&](AttentionGradArgs g, const char* needle) {
    const Status s = exact_attention_backward(g, c);
    ASSERT_FALSE(s.ok()) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    const Status h = hyper_attention_backward(g, c);
    ASSERT_FALSE(h.ok()) << needle;
  };
  AttentionGradArgs g = gp.grad_args();
  g.lse.data = nullptr;
  expect_error(g, "lse");
  g = gp.grad_args();
  g.dq.shape[2] = 63;
  expect_error(g, "dq");
  g = gp.grad_args();
  g.dk = gp.p.q.view;  // shape fits (heads 1 vs 2 differs) -> shape error naming dk
  expect_error(g, "dk");
  g = gp.grad_args();
  g.dv.data = gp.dk.view.data;  // the same memory as dk
  expect_error(g, "overlaps");
  g = gp.grad_args();
  g.d_out.dtype = DType::f16;
  expect_error(g, "d_out");
  g = gp.grad_args();
  g.dq.stride[2] = 8;  // rows overlap
  expect_error(g, "dq");
}

}  // namespace
}  // namespace hyperattn::testing

namespace hyperattn::testing {
namespace {

TEST(BackwardErrors, OverflowingMagnitudesAreRefused) {
  GradProblem gp({1, 1, 1, 64, 64, 32}, DType::f32, Layout::bhsd, 81);
  AttentionConfig c;
  ASSERT_TRUE(exact_attention(gp.p.args(), c).ok());
  for (std::int64_t i = 0; i < 64; ++i)
    for (std::int64_t e = 0; e < 32; ++e) {
      gp.p.q.set(0, 0, i, e, 1e20f);
      gp.p.k.set(0, 0, i, e, 1e20f);
    }
  const Status s = exact_attention_backward(gp.grad_args(), c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("q"), std::string::npos) << s.message();
  EXPECT_FALSE(hyper_attention_backward(gp.grad_args(), c).ok());
}

}  // namespace
}  // namespace hyperattn::testing

// tests/api/test_numerics.cpp: numerical robustness against the double reference (issue 15):
// finite inputs whose fp32 scores or sums would overflow are refused with a message; large but
// representable magnitudes, all-equal keys, denormals, one token and one query against 131072 keys
// compute what the reference computes. (Rows that see no key: ExactAttention.EmptyRowsFollowTheEmptySetRule
// and HyperAttention.CausalEmptyRowsAndGroupedHeads; NaN: ExactAttention.NaNInputsPropagate.)
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "attention_tester.hpp"
#include "cpu/magnitudes.hpp"

namespace hyperattn::testing {
namespace {

AttentionConfig hyper_config(bool causal) {
  AttentionConfig c;
  c.block_size = 64;
  c.sample_size = 32;
  c.min_seq_len = 128;
  c.lsh_bits = 5;
  c.causal = causal;
  c.threads = 2;
  c.seed = 7;
  return c;
}

// Runs exact (hyper = false) or HyperAttention and the matching double reference; returns the max
// |out - ref| and the max |lse - ref| / max(1, |ref|).
struct Compared {
  double out_abs = 0.0, lse_rel = 0.0;
  bool finite = true;
};

Compared run_and_compare(Problem& p, const AttentionConfig& cfg, bool hyper) {
  Compared r;
  const Status s = hyper ? hyper_attention(p.args(), cfg) : exact_attention(p.args(), cfg);
  EXPECT_TRUE(s.ok()) << s.message();
  reference::Output ref;
  const Status rs = hyper ? reference::hyper_attention(p.args(), cfg, {}, &ref) : reference::exact_attention(p.args(), cfg, &ref);
  EXPECT_TRUE(rs.ok()) << rs.message();
  const Shape& sh = p.shape;
  std::size_t o = 0;
  for (std::int64_t b = 0; b < sh.batch; ++b)
    for (std::int64_t h = 0; h < sh.heads_q; ++h)
      for (std::int64_t i = 0; i < sh.seq_q; ++i) {
        const std::size_t li = static_cast<std::size_t>((b * sh.heads_q + h) * sh.seq_q + i);
        const double l = p.lse[li], lr = ref.lse[li];
        if (!std::isfinite(l) && !(std::isinf(l) && l == lr)) r.finite = false;
        if (std::isfinite(lr)) r.lse_rel = std::max(r.lse_rel, std::abs(l - lr) / std::max(1.0, std::abs(lr)));
        for (std::int64_t c = 0; c < sh.head_dim; ++c, ++o) {
          const double x = p.out.get(b, h, i, c);
          if (!std::isfinite(x)) r.finite = false;
          r.out_abs = std::max(r.out_abs, std::abs(x - ref.out[o]));
        }
      }
  return r;
}

// ---- hole 3: finite inputs whose fp32 arithmetic would overflow --------------------------------

// Q and K at ~1e20 (512 x 64): every score is ~1e40 > FLT_MAX. Before the check, exact attention
// returned NaN everywhere and HyperAttention LSE +inf; now both refuse, naming q and k, the bound
// and what arrived.
TEST(Numerics, ScoresThatOverflowFp32AreRefused) {
  for (bool hyper : {false, true})
    for (bool causal : {false, true})
      for (DType dtype : {DType::f32, DType::bf16}) {
        SCOPED_TRACE(std::string(hyper ? "hyper" : "exact") + (causal ? " causal " : " ") + to_string(dtype));
        Problem p({1, 2, 1, 512, 512, 64}, dtype, Layout::bhsd, 11, 1e20f);
        AttentionConfig cfg = hyper_config(causal);
        const Status s = hyper ? hyper_attention(p.args(), cfg) : exact_attention(p.args(), cfg);
        ASSERT_EQ(s.code(), StatusCode::invalid_argument) << s.message();
        EXPECT_NE(s.message().find("q, k: "), std::string::npos) << s.message();
        EXPECT_NE(s.message().find("expected at most 2^127"), std::string::npos) << s.message();
        EXPECT_NE(s.message().find("e+42"), std::string::npos) << s.message();  // what arrived: ~1e21^2
      }
  // A large scale on moderate inputs overflows as well.
  Problem p({1, 1, 1, 64, 64, 64}, DType::f32, Layout::bhsd, 12, 1e10f);
  AttentionConfig cfg;
  cfg.scale = 1e20f;
  const Status s = exact_attention(p.args(), cfg);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.message();
  EXPECT_NE(s.message().find("scale 1e+20"), std::string::npos) << s.message();
}

// V at 3e38: the weighted sum of two or more keys exceeds FLT_MAX (it returned +inf).
TEST(Numerics, ValuesWhoseSumsOverflowFp32AreRefused) {
  for (bool hyper : {false, true}) {
    Problem p({1, 1, 1, 300, 300, 32}, DType::f32, Layout::bhsd, 13);
    for (std::int64_t j = 0; j < 300; ++j)
      for (std::int64_t c = 0; c < 32; ++c) p.v.set(0, 0, j, c, 3e38f);
    const Status s = hyper ? hyper_attention(p.args(), hyper_config(false)) : exact_attention(p.args(), {});
    ASSERT_EQ(s.code(), StatusCode::invalid_argument) << s.message();
    EXPECT_NE(s.message().find("v: max |v| is 3e+38"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("seq_kv 300"), std::string::npos) << s.message();
  }
  // Just inside the bound it computes, and the output is finite: all-equal values give that value.
  Problem p({1, 1, 1, 300, 300, 32}, DType::f32, Layout::bhsd, 14);
  const float big = static_cast<float>(cpu::kValueSumBound / 300.0 * 0.99);
  for (std::int64_t j = 0; j < 300; ++j)
    for (std::int64_t c = 0; c < 32; ++c) p.v.set(0, 0, j, c, big);
  ASSERT_TRUE(exact_attention(p.args(), {}).ok());
  for (std::int64_t i = 0; i < 300; i += 37) EXPECT_NEAR(p.out.get(0, 0, i, 5) / big, 1.0, 1e-4);
}

// NaN and Inf are not refused by the range check: they propagate (docs/numerics.md).
TEST(Numerics, NonFiniteInputsStillPropagate) {
  Problem p({1, 1, 1, 64, 64, 32}, DType::f32, Layout::bhsd, 15);
  p.q.set(0, 0, 3, 1, INFINITY);
  ASSERT_TRUE(exact_attention(p.args(), {}).ok());
  EXPECT_FALSE(std::isfinite(p.lse[3]));
}

// ---- NaN and Inf reach only the outputs that meet them ------------------------------------------

// Every element of x against the double reference, which sums each row's key set only (so a NaN
// or Inf there reaches exactly the rows, and gradients, that meet it with a nonzero weight): where
// the reference is finite, x must be finite and within tol; where it is NaN or Inf, so must x be.
// Returns how many elements of each kind there were, so a test can insist that both occur.
struct FiniteCounts {
  std::int64_t finite = 0, nonfinite = 0;
};

FiniteCounts expect_finite_where_reference_is(const std::vector<double>& x, const std::vector<double>& ref, double tol,
                                              const std::string& what) {
  FiniteCounts n;
  int reported = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const bool ok = std::isfinite(ref[i]) ? std::abs(x[i] - ref[i]) <= tol : !std::isfinite(x[i]);
    (std::isfinite(ref[i]) ? n.finite : n.nonfinite) += 1;
    if (!ok && reported++ < 3) ADD_FAILURE() << what << ": element " << i << " is " << x[i] << ", the reference " << ref[i];
  }
  EXPECT_EQ(reported, 0) << what << ": elements that differ from the reference";
  return n;
}

// The largest finite |x| (the scale of a gradient's tolerance).
double max_finite_abs(const std::vector<double>& x) {
  double m = 0.0;
  for (double e : x)
    if (std::isfinite(e)) m = std::max(m, std::abs(e));
  return m;
}

// The door's scan says which of q, k and v hold a NaN or an Inf, wherever it is: any head, row and
// column (the lane blocks and the tail of a row), f32 and bf16; finite inputs, however large, none.
TEST(Numerics, TheInputScanFindsEveryNaNAndInf) {
  for (DType dtype : {DType::f32, DType::bf16})
    for (std::int64_t d : {5, 16, 24, 64}) {
      SCOPED_TRACE(::testing::Message() << to_string(dtype) << " d " << d);
      Problem p({2, 4, 2, 37, 37, d}, dtype, Layout::padded, 41);
      const std::vector<char> none_q(8, 0), none_kv(4, 0);  // [batch, heads]
      cpu::NonFiniteInputs found{std::vector<char>(3, 1), {1}, {1}};  // overwritten by the scan
      ASSERT_TRUE(cpu::check_magnitudes(p.args(), {}, &found).ok());
      EXPECT_FALSE(found.any());
      EXPECT_EQ(found.q, none_q);
      EXPECT_EQ(found.k, none_kv);
      EXPECT_EQ(found.v, none_kv);
      p.v.set(1, 1, 36, d - 1, 1e30f);  // large but finite: not NaN or Inf (and within the bound)
      ASSERT_TRUE(cpu::check_magnitudes(p.args(), {}, &found).ok());
      EXPECT_FALSE(found.any());
      for (int which = 0; which < 3; ++which)
        for (float bad : {std::nanf(""), INFINITY, -INFINITY})
          for (std::int64_t c : {std::int64_t{0}, d / 2, d - 1}) {
            Tensor& t = which == 0 ? p.q : which == 1 ? p.k : p.v;
            const std::int64_t b = c % 2, h = which == 0 ? 3 : 1, i = (c * 7) % 37;
            const float keep = t.get(b, h, i, c);
            t.set(b, h, i, c, bad);
            ASSERT_TRUE(cpu::check_magnitudes(p.args(), {}, &found).ok());
            std::vector<char> want_q = none_q, want_k = none_kv, want_v = none_kv;  // the one head set
            (which == 0 ? want_q : which == 1 ? want_k : want_v)[static_cast<std::size_t>(b * (which == 0 ? 4 : 2) + h)] = 1;
            EXPECT_EQ(found.q, want_q) << "column " << c << " value " << bad;
            EXPECT_EQ(found.k, want_k) << "column " << c << " value " << bad;
            EXPECT_EQ(found.v, want_v) << "column " << c << " value " << bad;
            t.set(b, h, i, c, keep);
          }
    }
}

// NaN and Inf in V, at keys some causal rows do not see: those rows stay finite and equal to the
// reference, on every kernel (a SIMD kernel multiplies the weight 0 of an unseen key by its value,
// 0 * Inf = NaN; such calls run on the strict kernel). Exact and HyperAttention (its causal blocks,
// samples, sinks and local window), f32 and bf16, GQA, strided rows.
TEST(Numerics, NonFiniteValuesReachOnlyTheRowsThatSeeThem) {
  for (DType dtype : {DType::f32, DType::bf16})
    for (int method = 0; method < 3; ++method) {  // exact causal, hyper causal with sinks and window, hyper non-causal
      const bool hyper = method > 0;
      SCOPED_TRACE(std::string(method == 0 ? "exact causal " : method == 1 ? "hyper causal " : "hyper ") + to_string(dtype));
      Problem p({1, 4, 2, 700, 700, 64}, dtype, Layout::bshd, 31);
      p.v.set(0, 1, 400, 7, INFINITY);   // rows 256..399 share its key tile without seeing it
      p.v.set(0, 1, 300, 3, -INFINITY);
      for (std::int64_t c = 0; c < 64; ++c) p.v.set(0, 0, 650, c, std::nanf(""));
      AttentionConfig cfg = hyper_config(method < 2);
      if (method == 1) {
        cfg.sink_keys = 4;
        cfg.local_window = 24;
      }
      const Status s = hyper ? hyper_attention(p.args(), cfg) : exact_attention(p.args(), cfg);
      ASSERT_TRUE(s.ok()) << s.message();
      reference::Output ref;
      const Status rs = hyper ? reference::hyper_attention(p.args(), cfg, {}, &ref) : reference::exact_attention(p.args(), cfg, &ref);
      ASSERT_TRUE(rs.ok()) << rs.message();
      double tol = (hyper ? 4.0 : 1.0) * fp32_out_tolerance(64, 700);
      if (dtype == DType::bf16) tol += 5.0 * 0x1.0p-9;  // the output's rounding to bf16 (|out| <~ 5)
      const FiniteCounts n = expect_finite_where_reference_is(reference::to_double(p.out.view), ref.out, tol, "out");
      EXPECT_GT(n.nonfinite, 0) << "some rows must see the NaN and Inf";
      EXPECT_GT(n.finite, 0);
      const std::vector<double> lse(p.lse.begin(), p.lse.end());
      expect_finite_where_reference_is(lse, ref.lse, 1e-4, "lse");
      // Causal: the rows of kv head 1 before key 300 see neither value, the first rows of the tile among them.
      for (std::int64_t i = 256; i < 300 && method < 2; ++i) EXPECT_TRUE(std::isfinite(p.out.get(0, 2, i, 3)) && std::isfinite(p.out.get(0, 3, i, 7)));
    }
}

// Only the key-value heads whose inputs hold a NaN or an Inf run on the strict kernel: the other
// heads keep the best kernel's output bytes (those of the same call without the NaN), forward and
// backward, while the rows of the affected head that do not see it stay finite.
TEST(Numerics, OnlyTheHeadsWithNaNLeaveTheFastKernel) {
  for (bool hyper : {false, true}) {
    SCOPED_TRACE(hyper ? "hyper" : "exact");
    const Shape shape{2, 4, 2, 600, 600, 64};
    GradProblem clean(shape, DType::f32, Layout::bshd, 61), dirty(shape, DType::f32, Layout::bshd, 61);
    dirty.p.v.set(1, 0, 500, 9, std::nanf(""));  // batch 1, kv head 0 (query heads 0 and 1)
    const AttentionConfig cfg = hyper_config(true);
    for (GradProblem* gp : {&clean, &dirty}) {
      const Status s = hyper ? hyper_attention(gp->p.args(), cfg) : exact_attention(gp->p.args(), cfg);
      ASSERT_TRUE(s.ok()) << s.message();
      const Status g = hyper ? hyper_attention_backward(gp->grad_args(), cfg) : exact_attention_backward(gp->grad_args(), cfg);
      ASSERT_TRUE(g.ok()) << g.message();
    }
    std::int64_t same = 0;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t h = 0; h < 4; ++h)
        for (std::int64_t i = 0; i < 600; ++i)
          for (std::int64_t c = 0; c < 64; ++c) {
            const bool affected = b == 1 && h / 2 == 0;
            const float x = dirty.p.out.get(b, h, i, c), y = clean.p.out.get(b, h, i, c);
            if (!affected) {
              ASSERT_EQ(std::memcmp(&x, &y, sizeof x), 0) << "out b " << b << " h " << h << " row " << i;
              const float gx = dirty.dq.get(b, h, i, c), gy = clean.dq.get(b, h, i, c);
              ASSERT_EQ(std::memcmp(&gx, &gy, sizeof gx), 0) << "dq b " << b << " h " << h << " row " << i;
              same += 2;
            } else if (i < 500) {
              ASSERT_TRUE(std::isfinite(x)) << "h " << h << " row " << i;
              ASSERT_NEAR(x, y, 1e-5) << "h " << h << " row " << i;
            }
          }
    EXPECT_EQ(same, 2 * 6 * 600 * 64);
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t h = 0; h < 2; ++h)
        for (std::int64_t j = 0; j < 600; j += 7)
          for (std::int64_t c = 0; c < 64; ++c) {
            if (b == 1 && h == 0) continue;
            const float x = dirty.dk.get(b, h, j, c), y = clean.dk.get(b, h, j, c);
            ASSERT_EQ(std::memcmp(&x, &y, sizeof x), 0) << "dk b " << b << " h " << h << " key " << j;
          }
  }
}

// value_norm sampling draws keys by ||v_j||^2, which an Inf in V makes infinite: the call still
// completes, and the causal rows before that key (whose parts never hold it) stay finite.
TEST(Numerics, ValueNormSamplingWithAnInfiniteValue) {
  Problem p({1, 2, 1, 700, 700, 64}, DType::f32, Layout::bhsd, 33);
  p.v.set(0, 0, 400, 7, INFINITY);
  AttentionConfig cfg = hyper_config(true);
  cfg.sampling = Sampling::value_norm;
  const Status s = hyper_attention(p.args(), cfg);
  ASSERT_TRUE(s.ok()) << s.message();
  for (std::int64_t h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < 400; ++i)
      for (std::int64_t c = 0; c < 64; ++c) ASSERT_TRUE(std::isfinite(p.out.get(0, h, i, c))) << "h " << h << " row " << i;
  EXPECT_TRUE(std::isinf(p.out.get(0, 0, 400, 7)));  // the key's own row sees it (causal diagonal)
}

// The backward meets every masked entry in its products (P = 0 and dS = 0 times a row of Q, K, V
// or dO): a NaN or Inf in any of them must reach only the gradients the reference gives NaN or Inf.
TEST(Numerics, NonFiniteInputsReachOnlyTheGradientsThatMeetThem) {
  enum What { v_key, d_out_row, k_key, q_row };
  for (What what : {v_key, d_out_row, k_key, q_row})
    for (bool gqa : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "case " << static_cast<int>(what) << (gqa ? " gqa" : ""));
      const Shape shape = gqa ? Shape{1, 4, 2, 200, 260, 32} : Shape{1, 2, 1, 300, 300, 64};
      GradProblem gp(shape, DType::f32, gqa ? Layout::bshd : Layout::bhsd, 51);
      const std::int64_t at = 150, d = shape.head_dim;
      for (std::int64_t c = 0; c < d; c += what == v_key ? d : 1) {  // one element of V, whole rows otherwise
        if (what == v_key) gp.p.v.set(0, 0, at, 7, INFINITY);
        if (what == k_key) gp.p.k.set(0, 0, at, c, INFINITY);
        if (what == q_row) gp.p.q.set(0, 0, at, c, -INFINITY);
        if (what == d_out_row) gp.d_out.set(0, 0, at, c, INFINITY);
      }
      AttentionConfig cfg;
      cfg.causal = true;
      cfg.threads = 2;
      ASSERT_TRUE(exact_attention(gp.p.args(), cfg).ok());
      const Status s = exact_attention_backward(gp.grad_args(), cfg);
      ASSERT_TRUE(s.ok()) << s.message();
      reference::KeySets sets;
      ASSERT_TRUE(reference::exact_key_sets(gp.p.args(), cfg, &sets).ok());
      const reference::Gradients ref = gp.reference_gradients(sets, cfg);
      const double rel = grad_tolerance(DType::f32, DType::f32, d, std::max(shape.seq_q, shape.seq_kv));
      FiniteCounts all;
      for (const auto& [name, ours, theirs] : {std::tuple{"dq", values(gp.dq), ref.dq}, std::tuple{"dk", values(gp.dk), ref.dk},
                                               std::tuple{"dv", values(gp.dv), ref.dv}}) {
        const FiniteCounts n = expect_finite_where_reference_is(ours, theirs, rel * max_finite_abs(theirs), name);
        all.finite += n.finite;
        all.nonfinite += n.nonfinite;
      }
      EXPECT_GT(all.nonfinite, 0);
      EXPECT_GT(all.finite, 0);
    }
}

// Q and K at ~1e18 (scores ~1e36, 100x below FLT_MAX): computed, finite, and equal to the double
// reference (the softmax is one-hot at this scale: the output is the argmax key's value).
TEST(Numerics, HugeButRepresentableScoresMatchTheReference) {
  for (bool hyper : {false, true})
    for (bool causal : {false, true}) {
      SCOPED_TRACE(std::string(hyper ? "hyper" : "exact") + (causal ? " causal" : ""));
      Problem p({1, 2, 1, 512, 512, 64}, DType::f32, Layout::bhsd, 16, 1e18f);
      const Compared c = run_and_compare(p, hyper_config(causal), hyper);
      EXPECT_TRUE(c.finite);
      EXPECT_LE(c.out_abs, 1e-5);
      EXPECT_LE(c.lse_rel, 64 * 0x1.0p-24 * 10);
    }
}

// Scores of a few hundred (e^400 overflows fp32 and double alike) need the running max: the
// online softmax must match the reference.
TEST(Numerics, ScoresWhoseExpOverflowsMatchTheReference) {
  for (bool hyper : {false, true}) {
    Problem p({1, 2, 2, 600, 600, 64}, DType::f32, Layout::bshd, 17, 8.0f);  // |s| up to ~500
    const Compared c = run_and_compare(p, hyper_config(true), hyper);
    EXPECT_TRUE(c.finite);
    EXPECT_LE(c.out_abs, 10.0 * (64 * 0x1.0p-24 * 500 + 600 * 0x1.0p-24) * 5);
    EXPECT_LE(c.lse_rel, 1e-5);
  }
}

// ---- degenerate inputs -----------------------------------------------------------------------

// Every key equal: the weights are uniform, O is the mean of V (LSH puts every key in one bucket).
TEST(Numerics, AllEqualKeysGiveTheMeanOfV) {
  for (bool hyper : {false, true})
    for (bool causal : {false, true}) {
      SCOPED_TRACE(std::string(hyper ? "hyper" : "exact") + (causal ? " causal" : ""));
      Problem p({1, 1, 1, 500, 500, 32}, DType::f32, Layout::bhsd, 18);
      for (std::int64_t j = 0; j < 500; ++j)
        for (std::int64_t c = 0; c < 32; ++c) p.k.set(0, 0, j, c, 0.25f * static_cast<float>(c % 5) - 0.5f);
      const Compared c = run_and_compare(p, hyper_config(causal), hyper);
      EXPECT_TRUE(c.finite);
      EXPECT_LE(c.out_abs, fp32_out_tolerance(32, 500));
      EXPECT_LE(c.lse_rel, 1e-5);
    }
}

// Denormal q, k (scores ~1e-78 round to 0: uniform weights) and denormal v (the output is a mean of
// denormals: no flush to zero, so it keeps its relative accuracy down to the denormal spacing).
TEST(Numerics, DenormalInputs) {
  for (bool hyper : {false, true}) {
    Problem p({1, 1, 1, 300, 300, 32}, DType::f32, Layout::bhsd, 19, 1e-39f);
    std::mt19937_64 gen(5);
    p.v.fill_normal(gen, 1e-39f);
    ASSERT_LT(std::abs(p.v.get(0, 0, 0, 0)), FLT_MIN);  // really denormal
    const Compared c = run_and_compare(p, hyper_config(false), hyper);
    EXPECT_TRUE(c.finite);
    // Each weight 1/300 and each sum in fp32 denormals: errors of a few denormal ulps (1.4e-45) per term.
    EXPECT_LE(c.out_abs, 300 * 4 * 1.5e-45);
    EXPECT_LE(c.lse_rel, 1e-6);
  }
}

// One query, one key: O = v, LSE = the score, causal or not.
TEST(Numerics, OneToken) {
  for (bool hyper : {false, true})
    for (bool causal : {false, true}) {
      Problem p({1, 1, 1, 1, 1, 16}, DType::f32, Layout::bhsd, 20);
      const Compared c = run_and_compare(p, hyper_config(causal), hyper);
      EXPECT_TRUE(c.finite);
      EXPECT_LE(c.out_abs, 1e-6);
      EXPECT_LE(c.lse_rel, 1e-6);
      for (int d = 0; d < 16; ++d) EXPECT_EQ(p.out.get(0, 0, 0, d), p.v.get(0, 0, 0, d));
    }
}

// One query against 131072 keys (decode-like): the long fp32 sums stay within the bound.
TEST(Numerics, OneQueryAgainst131072Keys) {
  for (bool causal : {false, true}) {
    Problem p({1, 2, 1, 1, 131072, 64}, DType::f32, Layout::bhsd, 21, 1.5f);
    for (bool hyper : {false, true}) {
      SCOPED_TRACE(std::string(hyper ? "hyper" : "exact") + (causal ? " causal" : ""));
      const Compared c = run_and_compare(p, hyper_config(causal), hyper);
      EXPECT_TRUE(c.finite);
      EXPECT_LE(c.out_abs, fp32_out_tolerance(64, 131072));
      EXPECT_LE(c.lse_rel, 1e-5);
    }
  }
}

}  // namespace
}  // namespace hyperattn::testing

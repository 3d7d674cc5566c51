// tests/cuda/test_cuda_lowering.cpp: the host side of the CUDA backend (no GPU needed): the
// plans (same recursion as core/plan.cpp) and their lowering into problems, tiles and sort ranges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "core/lsh.hpp"
#include "core/random.hpp"
#include "cuda/lowering.hpp"
#include "cuda/tile_keys.hpp"
#include "hyperattn/attention.hpp"

namespace hyperattn::cuda {
namespace {

AttentionConfig small_config(bool causal) {
  AttentionConfig c;
  c.causal = causal;
  c.block_size = 64;
  c.sample_size = 32;
  c.min_seq_len = 200;
  return c;
}

// Every tile row of every launch, counted per (launch, absolute query row) for exact problems
// and per (launch, problem, sorted local row) for approximated ones: each exactly once.
void check_lowered(const Lowered& low, std::int64_t n_q, bool phase0_covers_all, const AttentionConfig& c) {
  for (std::size_t li = 0; li < low.launches.size(); ++li) {
    const LaunchPlan& launch = low.launches[li];
    EXPECT_EQ(launch.merge, li > 0);
    std::vector<int> row_hits(static_cast<std::size_t>(n_q), 0);
    for (std::int64_t pi = 0; pi < launch.problem_count; ++pi) {
      const Problem& pr = low.problems[static_cast<std::size_t>(launch.problem_begin + pi)];
      for (std::int64_t r = pr.q0; r < pr.q0 + pr.q_len; ++r) ++row_hits[static_cast<std::size_t>(r)];
      std::vector<int> local_hits(static_cast<std::size_t>(pr.q_len), 0);
      for (std::int64_t ti = 0; ti < launch.tile_count; ++ti) {
        const Tile& t = low.tiles[static_cast<std::size_t>(launch.tile_begin + ti)];
        if (t.problem != pi) continue;
        ASSERT_LT(t.row_begin, t.row_end);
        ASSERT_LE(t.row_end - t.row_begin, kTileRows);
        if (pr.lsh) {
          const std::int64_t lo = t.block * pr.q_len / pr.num_blocks, hi = (t.block + 1) * pr.q_len / pr.num_blocks;
          EXPECT_GE(t.row_begin, lo);
          EXPECT_LE(t.row_end, hi);
        }
        for (std::int64_t r = t.row_begin; r < t.row_end; ++r) ++local_hits[static_cast<std::size_t>(r)];
      }
      for (std::int64_t r = 0; r < pr.q_len; ++r) ASSERT_EQ(local_hits[static_cast<std::size_t>(r)], 1) << "problem " << pi << " row " << r;
      if (pr.lsh) {
        EXPECT_EQ(pr.num_blocks, (pr.k_len - pr.sinks + c.block_size - 1) / c.block_size);
        EXPECT_GE(pr.q_len, c.min_seq_len);
      }
    }
    for (std::int64_t r = 0; r < n_q; ++r) {
      ASSERT_LE(row_hits[static_cast<std::size_t>(r)], 1) << "launch " << li << " row " << r;
      if (li == 0 && phase0_covers_all) {
        ASSERT_EQ(row_hits[static_cast<std::size_t>(r)], 1) << "row " << r;
      }
    }
    // The sort ranges pack the approximated problems one after the other.
    std::int64_t q_len = 0, k_len = 0;
    for (std::size_t i = 0; i < launch.q_ranges.size(); i += 3) {
      EXPECT_EQ(launch.q_ranges[i + 2], q_len);
      EXPECT_EQ(launch.k_ranges[i + 2], k_len);
      q_len += launch.q_ranges[i + 1];
      k_len += launch.k_ranges[i + 1];
    }
    EXPECT_EQ(q_len, launch.q_row_len);
    EXPECT_EQ(k_len, launch.k_row_len);
  }
}

TEST(CudaLowering, ExactPlanIsOneDirectLaunch) {
  const AttentionConfig c = small_config(true);
  const Lowered low = lower(exact_plan(300, 500, c), c);
  ASSERT_EQ(low.launches.size(), 1u);
  EXPECT_TRUE(low.direct);
  EXPECT_FALSE(low.any_lsh);
  EXPECT_EQ(low.problems[0].causal_diagonal, 200);
  check_lowered(low, 300, true, c);
  // The longest causal tiles come first.
  EXPECT_EQ(low.tiles.front().row_end, 300);
}

TEST(CudaLowering, NonCausalHyperIsOneApproximatedProblem) {
  const AttentionConfig c = small_config(false);
  const Lowered low = lower(hyper_plan(1000, 1100, c), c);
  ASSERT_EQ(low.launches.size(), 1u);
  EXPECT_TRUE(low.direct);
  ASSERT_TRUE(low.any_lsh);
  EXPECT_EQ(low.problems[0].num_blocks, 18);  // ceil(1100 / 64)
  EXPECT_EQ(low.problems[0].subproblem, 0u);
  EXPECT_EQ(low.top_level_blocks, 18);
  check_lowered(low, 1000, true, c);
  // Below min_seq_len, or when block + samples cover the keys: exact.
  EXPECT_FALSE(lower(hyper_plan(150, 1100, c), c).any_lsh);
  EXPECT_FALSE(lower(hyper_plan(1000, 96, c), c).any_lsh);
}

TEST(CudaLowering, CausalRecursionMatchesTheSpecification) {
  AttentionConfig c;  // paper defaults: n = 8192 -> two exact 4096 leaves, one approximated quarter
  c.causal = true;
  const Lowered low = lower(hyper_plan(8192, 8192, c), c);
  ASSERT_EQ(low.launches.size(), 2u);
  EXPECT_FALSE(low.direct);
  ASSERT_EQ(low.launches[0].problem_count, 2);
  const Problem& quarter = low.problems[2];
  EXPECT_EQ(quarter.q0, 4096);
  EXPECT_EQ(quarter.k0, 0);
  EXPECT_EQ(quarter.k_len, 4096);
  EXPECT_EQ(quarter.lsh, 1);
  EXPECT_EQ(quarter.subproblem, rng::subproblem_id(4096, 0));
  check_lowered(low, 8192, true, c);
}

TEST(CudaLowering, CausalOddAndRectangularShapesCoverEveryRow) {
  for (auto [n_q, n_k] : {std::pair<std::int64_t, std::int64_t>{1001, 1001}, {777, 1500}, {1500, 900}, {4099, 4099}}) {
    const AttentionConfig c = small_config(true);
    const core::Plan plan = hyper_plan(n_q, n_k, c);
    const Lowered low = lower(plan, c);
    SCOPED_TRACE(::testing::Message() << "n_q " << n_q << " n_k " << n_k);
    check_lowered(low, n_q, true, c);
    if (n_q > n_k) {
      // The rows that see nothing are an exact problem without keys in phase 0.
      bool found = false;
      for (std::int64_t i = 0; i < low.launches[0].problem_count; ++i)
        found = found || (low.problems[static_cast<std::size_t>(i)].k_len == 0 && low.problems[static_cast<std::size_t>(i)].q_len == n_q - n_k);
      EXPECT_TRUE(found);
    }
  }
}

TEST(CudaLowering, SinksAreExcludedFromTheHashedKeys) {
  AttentionConfig c = small_config(false);
  c.sink_keys = 5;
  const Lowered low = lower(hyper_plan(1000, 1000, c), c);
  ASSERT_TRUE(low.any_lsh);
  EXPECT_EQ(low.problems[0].sinks, 5);
  EXPECT_EQ(low.problems[0].num_blocks, (1000 - 5 + 63) / 64);
  EXPECT_EQ(low.launches[0].k_ranges[0], 5);
  EXPECT_EQ(low.launches[0].k_ranges[1], 995);
}

// ---- The whole CUDA pipeline emulated on the host ------------------------------------------
// Same lowering, same sort semantics (stable by bucket within each (head row, problem) segment),
// same tile_key / row_position code as the kernels (tile_keys.hpp), attention in double per row:
// must reproduce the CPU engine's HyperAttention to fp32 rounding. A wrong perm offset, block
// range, sample draw or merge order would show as an O(1) error.
struct EmulationCase {
  std::int64_t batch = 1, heads_q = 2, heads_kv = 1, seq_q = 700, seq_kv = 1000, head_dim = 16;
  AttentionConfig config = small_config(false);
};

void emulate_and_compare(const EmulationCase& ec) {
  const std::int64_t B = ec.batch, HQ = ec.heads_q, HKV = ec.heads_kv, NQ = ec.seq_q, NK = ec.seq_kv, D = ec.head_dim;
  const AttentionConfig& c = ec.config;
  std::mt19937_64 gen(5);
  std::normal_distribution<float> normal;
  std::vector<float> q(static_cast<std::size_t>(B * HQ * NQ * D)), k(static_cast<std::size_t>(B * HKV * NK * D)),
      v(k.size()), out(q.size()), lse(static_cast<std::size_t>(B * HQ * NQ));
  for (float& x : q) x = 1.5f * normal(gen);
  for (float& x : k) x = normal(gen);
  for (float& x : v) x = normal(gen);
  AttentionArgs args;
  args.q = TensorView::bhsd(q.data(), DType::f32, B, HQ, NQ, D);
  args.k = TensorView::bhsd(k.data(), DType::f32, B, HKV, NK, D);
  args.v = TensorView::bhsd(v.data(), DType::f32, B, HKV, NK, D);
  args.out = TensorView::bhsd(out.data(), DType::f32, B, HQ, NQ, D);
  args.lse = LseView::contiguous(lse.data(), HQ, NQ);
  ASSERT_TRUE(hyper_attention(args, c).ok());

  const Lowered low = lower(hyper_plan(NQ, NK, c), c);
  ASSERT_TRUE(low.any_lsh) << "the case should approximate something";
  const std::vector<float> proj = core::projections(args, c, {});  // [batch, heads_kv, head_dim, lsh_bits]
  std::vector<std::uint32_t> q_bucket(static_cast<std::size_t>(B * HQ * NQ)), k_bucket(static_cast<std::size_t>(B * HKV * NK));
  for (std::int64_t bh = 0; bh < B * HQ; ++bh)
    for (std::int64_t i = 0; i < NQ; ++i)
      q_bucket[static_cast<std::size_t>(bh * NQ + i)] = lsh::bucket_of(
          lsh::sign_bits_f32(&q[static_cast<std::size_t>((bh * NQ + i) * D)],
                             &proj[static_cast<std::size_t>(((bh / HQ) * HKV + (bh % HQ) / (HQ / HKV)) * D * c.lsh_bits)],
                             static_cast<int>(D), c.lsh_bits),
          c.bucket_order);
  for (std::int64_t bh = 0; bh < B * HKV; ++bh)
    for (std::int64_t j = 0; j < NK; ++j)
      k_bucket[static_cast<std::size_t>(bh * NK + j)] = lsh::bucket_of(
          lsh::sign_bits_f32(&k[static_cast<std::size_t>((bh * NK + j) * D)], &proj[static_cast<std::size_t>(bh * D * c.lsh_bits)],
                             static_cast<int>(D), c.lsh_bits),
          c.bucket_order);

  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> acc_o(q.size(), 0.0), acc_l(lse.size(), -inf);
  for (std::size_t li = 0; li < low.launches.size(); ++li) {
    const LaunchPlan& launch = low.launches[li];
    // The sorts: segment (head row, problem), stable by bucket.
    auto sort_side = [&](const std::vector<std::int64_t>& ranges, std::int64_t row_len, std::int64_t rows,
                         const std::vector<std::uint32_t>& bucket, std::int64_t seq) {
      std::vector<std::int32_t> perm(static_cast<std::size_t>(rows * row_len));
      for (std::int64_t row = 0; row < rows; ++row)
        for (std::size_t i = 0; i < ranges.size(); i += 3) {
          const std::int64_t start = ranges[i], len = ranges[i + 1], off = ranges[i + 2];
          std::int32_t* seg = perm.data() + row * row_len + off;
          std::iota(seg, seg + len, 0);
          std::stable_sort(seg, seg + len, [&](std::int32_t a, std::int32_t b) {
            return bucket[static_cast<std::size_t>(row * seq + start + a)] < bucket[static_cast<std::size_t>(row * seq + start + b)];
          });
        }
      return perm;
    };
    const std::vector<std::int32_t> q_perm = sort_side(launch.q_ranges, launch.q_row_len, B * HQ, q_bucket, NQ);
    const std::vector<std::int32_t> k_perm = sort_side(launch.k_ranges, launch.k_row_len, B * HKV, k_bucket, NK);
    AttentionParams p;
    p.heads_q = static_cast<int>(HQ);
    p.heads_kv = static_cast<int>(HKV);
    p.head_dim = static_cast<int>(D);
    p.seq_q = NQ;
    p.seq_kv = NK;
    p.problems = low.problems.data() + launch.problem_begin;
    p.q_perm = q_perm.data();
    p.k_perm = k_perm.data();
    p.q_perm_stride = launch.q_row_len;
    p.k_perm_stride = launch.k_row_len;
    p.block_size = c.block_size;
    p.sample_size = c.sample_size;
    p.seed = c.seed;
    p.stratified = c.sampling == Sampling::stratified;
    for (std::int64_t ti = 0; ti < launch.tile_count; ++ti) {
      const Tile& t = low.tiles[static_cast<std::size_t>(launch.tile_begin + ti)];
      const Problem& pr = p.problems[t.problem];
      for (int y = 0; y < B * HQ; ++y) {
        const HeadIndex h = head_index(p, y);
        const std::int64_t keys = tile_key_count(p, pr, t);
        std::vector<std::int64_t> pos(static_cast<std::size_t>(keys));
        std::vector<double> bias(static_cast<std::size_t>(keys));
        for (std::int64_t j = 0; j < keys; ++j) {
          float b2 = 0.0f;
          tile_key(p, pr, t, h, j, &pos[static_cast<std::size_t>(j)], &b2);
          ASSERT_GE(pos[static_cast<std::size_t>(j)], 0);
          ASSERT_LT(pos[static_cast<std::size_t>(j)], NK);
          bias[static_cast<std::size_t>(j)] = static_cast<double>(b2) * 0.6931471805599453;
        }
        for (std::int64_t r = t.row_begin; r < t.row_end; ++r) {
          const std::int64_t row = row_position(p, pr, h, r);
          const float* qr = &q[static_cast<std::size_t>((static_cast<std::int64_t>(y) * NQ + row) * D)];
          std::vector<double> s(static_cast<std::size_t>(keys), -inf);
          double mx = -inf;
          for (std::int64_t j = 0; j < keys; ++j) {
            if (!pr.lsh && pr.causal_diagonal < kNoMask && j > r + pr.causal_diagonal) continue;
            const float* kr = &k[static_cast<std::size_t>((static_cast<std::int64_t>(h.bh_kv) * NK + pos[static_cast<std::size_t>(j)]) * D)];
            double dot = 0.0;
            for (std::int64_t cc = 0; cc < D; ++cc) dot += static_cast<double>(qr[cc]) * kr[cc];
            s[static_cast<std::size_t>(j)] = dot * scale + bias[static_cast<std::size_t>(j)];
            mx = std::max(mx, s[static_cast<std::size_t>(j)]);
          }
          std::vector<double> o(static_cast<std::size_t>(D), 0.0);
          double l = -inf;
          if (mx > -inf) {
            double sum = 0.0;
            for (std::int64_t j = 0; j < keys; ++j) {
              if (s[static_cast<std::size_t>(j)] == -inf) continue;
              const double w = std::exp(s[static_cast<std::size_t>(j)] - mx);
              sum += w;
              const float* vr = &v[static_cast<std::size_t>((static_cast<std::int64_t>(h.bh_kv) * NK + pos[static_cast<std::size_t>(j)]) * D)];
              for (std::int64_t cc = 0; cc < D; ++cc) o[static_cast<std::size_t>(cc)] += w * vr[cc];
            }
            for (double& x : o) x /= sum;
            l = mx + std::log(sum);
          }
          double* ao = &acc_o[static_cast<std::size_t>((static_cast<std::int64_t>(y) * NQ + row) * D)];
          double& al = acc_l[static_cast<std::size_t>(static_cast<std::int64_t>(y) * NQ + row)];
          if (li == 0 || al == -inf) {
            std::copy(o.begin(), o.end(), ao);
            al = l;
          } else if (l > -inf) {
            const double m2 = std::max(al, l), w1 = std::exp(al - m2), w2 = std::exp(l - m2);
            for (std::int64_t cc = 0; cc < D; ++cc) ao[cc] = (w1 * ao[cc] + w2 * o[static_cast<std::size_t>(cc)]) / (w1 + w2);
            al = m2 + std::log(w1 + w2);
          }
        }
      }
    }
  }
  double max_ref = 0.0, max_err = 0.0, lse_err = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(out[i])));
    max_err = std::max(max_err, std::abs(acc_o[i] - out[i]));
  }
  for (std::size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lse[i]) || std::isinf(acc_l[i])) {
      ASSERT_EQ(static_cast<double>(lse[i]), acc_l[i]) << "lse " << i;
      continue;
    }
    lse_err = std::max(lse_err, std::abs(acc_l[i] - lse[i]));
  }
  EXPECT_LE(max_err, 1e-4 * max_ref) << "max |emulated - cpu| " << max_err << ", max |cpu| " << max_ref;
  EXPECT_LE(lse_err, 1e-4);
}

TEST(CudaEmulation, NonCausalMatchesCpuEngine) { emulate_and_compare({}); }

TEST(CudaEmulation, CausalRectangularGqaMatchesCpuEngine) {
  EmulationCase ec;
  ec.batch = 2;
  ec.heads_q = 4;
  ec.heads_kv = 2;
  ec.seq_q = 900;
  ec.seq_kv = 1337;
  ec.config = small_config(true);
  emulate_and_compare(ec);
}

TEST(CudaEmulation, SinksStratifiedReferenceGrayMatchCpuEngine) {
  EmulationCase ec;
  ec.seq_q = ec.seq_kv = 1024;
  ec.config.sink_keys = 4;
  ec.config.sampling = Sampling::stratified;
  ec.config.bucket_order = BucketOrder::reference_gray;
  ec.config.seed = 99;
  emulate_and_compare(ec);
  ec.config.causal = true;
  ec.seq_q = 1000;
  emulate_and_compare(ec);
}

}  // namespace
}  // namespace hyperattn::cuda

// tests/cpu/test_attention_kernels.cpp: every kernel variant this CPU supports (scalar, avx2,
// avx512) against a naive double-precision evaluation of the tile contract
// (src/cpu/attention_kernel.hpp), sweeping sizes below, at and above the kernels' tiles (row
// groups of 6/8, key chunks of 16/32, row tiles of 252/256, key tiles of 64/256), head dims,
// dtypes, index arrays, key bias, causal diagonals (including rows that see no key) and strides.
//
// Merge mode (tile.merge: the causal recursion's later phases merge into the accumulators through
// the log-sum-exp) is checked bit for bit against a write followed by merge_row with the scalar
// row update, and the prefetch hint (tile.next) against the same tile without it.
//
// Tolerances (per output element, absolute, in units of max|v|; lse absolute):
//   fp32: a score s = scale * sum_x q_x k_x accumulated in fp32 has error at most
//     d * eps * scale * sum_x |q_x k_x| =: delta (the standard gamma_d bound); a weight
//     e^{s - m} then has relative error <= 2 * delta (s and the max) plus the exponential's own
//     error (<= 2 ulp, the polynomial of the SIMD kernels) plus the rounding of s - m
//     (eps * |s - m|). A convex combination of values whose weights have relative error r differs
//     from the exact one by <= 2 r max|v|; the fp32 sums over keys add <= keys * eps * max|v|
//     (chunked sums are far better; the worst case keeps the bound honest). The same r bounds
//     the lse error (plus eps * |lse|).
//   bf16 input: the products of bf16 numbers are exact, so the score bound above holds; the
//     kernels may round each weight to bf16 (relative 2^-9) before P V, and since the row sum
//     adds the rounded weights the output moves by <= 2^-9 max|v|; we allow 2^-8.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/bfloat16.hpp"
#include "cpu/attention_kernel.hpp"
#include "cpu/thread_pool.hpp"

namespace hyperattn::cpu {
namespace {

constexpr double kEps = 5.9604644775390625e-08;  // 2^-24, fp32 unit roundoff

struct Case {
  DType dtype = DType::f32;
  std::int64_t rows = 0;
  std::int64_t keys = 0;
  int head_dim = 64;
  int head_dim_v = 64;
  bool indexed = false;  // q_index, k_index (with repeats), out_index
  bool bias = false;     // key_bias, including some -inf
  std::int64_t causal_diagonal = kNoCausalMask;
  int stride_pad = 0;    // row strides are head_dim + stride_pad (k: 2 * head_dim + stride_pad)
};

std::string describe(const Case& c) {
  return std::string(c.dtype == DType::f32 ? "f32" : "bf16") + " rows=" + std::to_string(c.rows) +
         " keys=" + std::to_string(c.keys) + " d=" + std::to_string(c.head_dim) + " dv=" +
         std::to_string(c.head_dim_v) + (c.indexed ? " indexed" : "") + (c.bias ? " bias" : "") +
         (c.causal_diagonal != kNoCausalMask ? " diag=" + std::to_string(c.causal_diagonal) : "") +
         " pad=" + std::to_string(c.stride_pad);
}

// A matrix stored as f32 or bf16, with the exact values it holds as doubles.
struct Matrix {
  std::vector<float> f32;
  std::vector<std::uint16_t> bf16;
  std::vector<double> exact;  // what the kernel reads
  const void* data(DType dtype) const {
    return dtype == DType::f32 ? static_cast<const void*>(f32.data()) : static_cast<const void*>(bf16.data());
  }
};

Matrix random_matrix(std::int64_t n, std::int64_t stride, DType dtype, double sigma, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, static_cast<float>(sigma));
  Matrix m;
  m.f32.resize(static_cast<std::size_t>(n * stride));
  m.bf16.resize(m.f32.size());
  m.exact.resize(m.f32.size());
  for (std::size_t i = 0; i < m.f32.size(); ++i) {
    const float x = normal(rng);
    m.bf16[i] = f32_to_bf16_bits(x);
    m.f32[i] = dtype == DType::f32 ? x : bf16_bits_to_f32(m.bf16[i]);
    m.exact[i] = m.f32[i];
  }
  return m;
}

struct Scratch {
  float* data = nullptr;
  explicit Scratch(std::size_t floats) {
    const std::size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    data = static_cast<float*>(std::aligned_alloc(64, bytes));
    // Garbage, so reads of scratch that was never written show up as NaNs.
    std::fill(data, data + bytes / sizeof(float), std::numeric_limits<float>::quiet_NaN());
  }
  ~Scratch() { std::free(data); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

void run_case(const AttentionKernel& kernel, const Case& c, std::uint32_t seed) {
  SCOPED_TRACE(std::string(kernel.name) + " " + describe(c));
  std::mt19937 rng(seed);
  const int d = c.head_dim;
  const int dv = c.head_dim_v;
  // Sources are larger than the tile when indexed, so indices pick (and repeat) rows.
  const std::int64_t q_src_rows = c.indexed ? c.rows + 5 : c.rows;
  const std::int64_t k_src_rows = c.indexed ? c.keys + 11 : c.keys;
  const std::int64_t q_stride = d + c.stride_pad;
  const std::int64_t k_stride = 2 * d + c.stride_pad;  // like [seq, heads, head_dim] memory
  const std::int64_t v_stride = dv + c.stride_pad;
  const std::int64_t out_rows = c.indexed ? c.rows + 3 : c.rows;
  const std::int64_t out_stride = dv + c.stride_pad;
  const Matrix q = random_matrix(q_src_rows, q_stride, c.dtype, 1.0, rng);  // [q_src_rows, q_stride]
  const Matrix k = random_matrix(k_src_rows, k_stride, c.dtype, 1.0, rng);  // [k_src_rows, k_stride]
  const Matrix v = random_matrix(k_src_rows, v_stride, c.dtype, 1.0, rng);  // [k_src_rows, v_stride]

  std::vector<std::int32_t> q_index, k_index, out_index;  // [rows], [keys], [rows]
  if (c.indexed) {
    std::vector<std::int32_t> perm(static_cast<std::size_t>(q_src_rows));
    for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<std::int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    q_index.assign(perm.begin(), perm.begin() + c.rows);
    std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(k_src_rows - 1));
    for (std::int64_t j = 0; j < c.keys; ++j) k_index.push_back(pick(rng));  // with repeats, like samples
    std::vector<std::int32_t> operm(static_cast<std::size_t>(out_rows));
    for (std::size_t i = 0; i < operm.size(); ++i) operm[i] = static_cast<std::int32_t>(i);
    std::shuffle(operm.begin(), operm.end(), rng);
    out_index.assign(operm.begin(), operm.begin() + c.rows);
  }
  std::vector<float> bias;  // [keys]
  if (c.bias) {
    std::uniform_real_distribution<float> u(-3.0f, 1.0f);
    for (std::int64_t j = 0; j < c.keys; ++j) bias.push_back(j % 17 == 3 ? -std::numeric_limits<float>::infinity() : u(rng));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  constexpr float kSentinel = 12345.0f;
  std::vector<float> out(static_cast<std::size_t>(out_rows * out_stride), kSentinel);  // [out_rows, out_stride]
  std::vector<float> lse(static_cast<std::size_t>(out_rows), kSentinel);                // [out_rows]
  Scratch scratch(kernel.scratch_floats(d, dv));

  DenseAttentionTile t;
  t.dtype = c.dtype;
  t.q = q.data(c.dtype);
  t.q_row_stride = q_stride;
  t.q_index = c.indexed ? q_index.data() : nullptr;
  t.k = k.data(c.dtype);
  t.k_row_stride = k_stride;
  t.v = v.data(c.dtype);
  t.v_row_stride = v_stride;
  t.k_index = c.indexed ? k_index.data() : nullptr;
  t.key_bias = c.bias ? bias.data() : nullptr;
  t.rows = c.rows;
  t.keys = c.keys;
  t.head_dim = d;
  t.head_dim_v = dv;
  t.scale = scale;
  t.causal_diagonal = c.causal_diagonal;
  t.out = out.data();
  t.out_row_stride = out_stride;
  t.out_index = c.indexed ? out_index.data() : nullptr;
  t.lse = lse.data();
  t.scratch = scratch.data;
  kernel.dense(t);

  // The naive double-precision evaluation of the contract.
  double max_v = 0.0;
  for (std::int64_t j = 0; j < c.keys; ++j) {
    const std::int64_t kr = c.indexed ? k_index[j] : j;
    for (int x = 0; x < dv; ++x) max_v = std::max(max_v, std::abs(v.exact[kr * v_stride + x]));
  }
  std::vector<double> s(static_cast<std::size_t>(c.keys)), s_abs(static_cast<std::size_t>(c.keys));  // [keys]
  std::vector<bool> written(static_cast<std::size_t>(out_rows), false);
  for (std::int64_t i = 0; i < c.rows; ++i) {
    const std::int64_t qr = c.indexed ? q_index[i] : i;
    const std::int64_t orow = c.indexed ? out_index[i] : i;
    written[orow] = true;
    double m = -std::numeric_limits<double>::infinity();
    double delta = 0.0;  // the score error bound of this row
    double max_abs_s = 0.0;
    const std::int64_t visible = std::clamp<std::int64_t>(i + c.causal_diagonal + 1, 0, c.keys);
    for (std::int64_t j = 0; j < visible; ++j) {
      const std::int64_t kr = c.indexed ? k_index[j] : j;
      double dot = 0.0, dot_abs = 0.0;
      for (int x = 0; x < d; ++x) {
        dot += q.exact[qr * q_stride + x] * k.exact[kr * k_stride + x];
        dot_abs += std::abs(q.exact[qr * q_stride + x] * k.exact[kr * k_stride + x]);
      }
      s[j] = scale * dot + (c.bias ? bias[j] : 0.0);
      delta = std::max(delta, (d + 2) * kEps * scale * dot_abs);
      if (std::isfinite(s[j])) max_abs_s = std::max(max_abs_s, std::abs(s[j]));
      m = std::max(m, s[j]);
    }
    std::vector<double> o(static_cast<std::size_t>(dv), 0.0);  // [dv]
    double sum = 0.0;
    if (m > -std::numeric_limits<double>::infinity()) {
      for (std::int64_t j = 0; j < visible; ++j) {
        const double p = std::exp(s[j] - m);
        sum += p;
        const std::int64_t kr = c.indexed ? k_index[j] : j;
        for (int x = 0; x < dv; ++x) o[x] += p * v.exact[kr * v_stride + x];
      }
    }
    const double weight_rel = 2.0 * delta + 4.0 * kEps + 2.0 * kEps * max_abs_s;
    double tol = (2.0 * weight_rel + (static_cast<double>(c.keys) + 8.0) * kEps) * max_v;
    if (c.dtype == DType::bf16) tol += std::ldexp(1.0, -8) * max_v;
    const double lse_tol = weight_rel + (static_cast<double>(c.keys) + 8.0) * kEps + 2.0 * kEps * max_abs_s;
    const float* got = out.data() + orow * out_stride;
    if (sum == 0.0) {  // no visible key (or all weights zero): the empty-set rule
      for (int x = 0; x < dv; ++x) ASSERT_EQ(got[x], 0.0f) << "row " << i << " col " << x;
      ASSERT_EQ(lse[orow], -std::numeric_limits<float>::infinity()) << "row " << i;
      continue;
    }
    for (int x = 0; x < dv; ++x)
      ASSERT_NEAR(got[x], o[x] / sum, tol) << "row " << i << " col " << x;
    ASSERT_NEAR(lse[orow], m + std::log(sum), lse_tol + 2.0 * kEps * std::abs(m)) << "row " << i;
    for (int x = dv; x < out_stride; ++x) ASSERT_EQ(got[x], kSentinel) << "stride padding written, row " << i;
  }
  for (std::int64_t r = 0; r < out_rows; ++r)
    if (!written[r]) {
      ASSERT_EQ(lse[r], kSentinel) << "unaddressed output row " << r << " written";
    }
}

std::vector<const AttentionKernel*> all_kernels() {
  const AttentionKernel* list[8];
  const int n = supported_kernels(list, 8);
  return {list, list + n};
}

TEST(AttentionKernels, ScalarIsAlwaysSupported) {
  ASSERT_NE(kernel_by_name("scalar"), nullptr);
  EXPECT_EQ(kernel_by_name("no-such-isa"), nullptr);
  const std::vector<const AttentionKernel*> kernels = all_kernels();
  ASSERT_FALSE(kernels.empty());
  // best_kernel is one of the supported ones.
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), &best_kernel()), kernels.end());
}

#if defined(__x86_64__)
TEST(AttentionKernels, SimdVariantsArePresentWhereTheCpuHasThem) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_NE(kernel_by_name("avx2"), nullptr);
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) {
    EXPECT_NE(kernel_by_name("avx512"), nullptr);
  }
}
#endif

#if defined(__aarch64__)
TEST(AttentionKernels, NeonIsOfferedAndChosenOnAarch64) {
  ASSERT_NE(kernel_by_name("neon"), nullptr);
  const char* forced = std::getenv("HYPERATTN_ISA");
  if (forced == nullptr || *forced == '\0') {
    EXPECT_STREQ(best_kernel().name, "neon");
  }
}
#endif

// Sizes below, at and above the row groups (6, 8), key chunks (16, 32) and tiles (256/258).
TEST(AttentionKernels, SizeSweepF32AndBf16) {
  // Row groups 6 (avx2, neon) and 8 (avx512), row tiles 258 and 256; key chunks 16 and 32, key tiles
  // 64 (scalar) and 256.
  const std::int64_t rows_list[] = {1, 5, 6, 7, 8, 9, 251, 252, 253, 255, 256, 257, 258, 259, 300};
  const std::int64_t keys_list[] = {1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 300};
  std::uint32_t seed = 1;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16})
      for (std::int64_t rows : rows_list)
        for (std::int64_t keys : keys_list) {
          // Keep the sweep quick: the large x large cases once per dtype, at one head_dim.
          if (rows > 9 && keys > 65 && (rows != 257 || keys != 300)) continue;
          run_case(*kernel, {.dtype = dtype, .rows = rows, .keys = keys, .head_dim = 64, .head_dim_v = 64}, seed++);
        }
}

// Calls of the executor's 512-row items and around the AVX2 (516), NEON (515) and AVX-512 (512) row
// tiles: one tile, one tile and a row, two tiles; causal diagonals inside the second tile.
TEST(AttentionKernels, RowTilesAroundTheLargeItems) {
  std::uint32_t seed = 170;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16}) {
      for (std::int64_t rows : {511, 513, 515, 516, 517, 1031})
        run_case(*kernel, {.dtype = dtype, .rows = rows, .keys = 270, .head_dim = 32, .head_dim_v = 32}, seed++);
      for (std::int64_t diag : {std::int64_t{-300}, std::int64_t{-513}, std::int64_t{-20}})
        run_case(*kernel, {.dtype = dtype, .rows = 530, .keys = 300, .head_dim = 64, .head_dim_v = 64,
                           .indexed = true, .bias = true, .causal_diagonal = diag}, seed++);
    }
}

TEST(AttentionKernels, HeadDims) {
  std::uint32_t seed = 100;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16})
      for (int d : {17, 32, 40, 64, 96, 128, 256})
        run_case(*kernel, {.dtype = dtype, .rows = 37, .keys = 290, .head_dim = d, .head_dim_v = d, .stride_pad = 3}, seed++);
  // head_dim_v differing from head_dim.
  for (const AttentionKernel* kernel : all_kernels())
    run_case(*kernel, {.rows = 20, .keys = 70, .head_dim = 64, .head_dim_v = 40}, seed++);
}

// Large head_dim across key tiles (each ISA's K and V panels are largest here): key counts
// either side of multiples of 64, 128 and 256 keys, the causal diagonal crossing a tile, a bias with
// gathered rows, head_dim_v below head_dim, and 259 rows.
TEST(AttentionKernels, LargeHeadDimsAcrossKeyTiles) {
  std::uint32_t seed = 150;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16})
      for (int d : {96, 128, 256}) {
        for (std::int64_t keys : {63, 65, 127, 129, 161, 257, 385})
          run_case(*kernel, {.dtype = dtype, .rows = 13, .keys = keys, .head_dim = d, .head_dim_v = d}, seed++);
        run_case(*kernel, {.dtype = dtype, .rows = 259, .keys = 300, .head_dim = d, .head_dim_v = d,
                           .causal_diagonal = 300 - 259}, seed++);
        run_case(*kernel, {.dtype = dtype, .rows = 40, .keys = 200, .head_dim = d, .head_dim_v = d,
                           .indexed = true, .bias = true, .causal_diagonal = 130}, seed++);
        run_case(*kernel, {.dtype = dtype, .rows = 30, .keys = 170, .head_dim = d, .head_dim_v = d / 2 + 3,
                           .stride_pad = 1}, seed++);
      }
}

TEST(AttentionKernels, IndicesBiasAndStrides) {
  std::uint32_t seed = 200;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16})
      for (int d : {64, 128}) {
        // HyperAttention's shape, scaled down: a sorted block against block keys + samples.
        run_case(*kernel, {.dtype = dtype, .rows = 64, .keys = 128, .head_dim = d, .head_dim_v = d,
                           .indexed = true, .bias = true, .stride_pad = 5}, seed++);
        run_case(*kernel, {.dtype = dtype, .rows = 257, .keys = 300, .head_dim = d, .head_dim_v = d,
                           .indexed = true, .bias = false}, seed++);
        run_case(*kernel, {.dtype = dtype, .rows = 9, .keys = 33, .head_dim = d, .head_dim_v = d,
                           .indexed = false, .bias = true}, seed++);
      }
}

TEST(AttentionKernels, CausalDiagonals) {
  std::uint32_t seed = 300;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16})
      for (std::int64_t diag : {std::int64_t{0}, std::int64_t{-5}, std::int64_t{-300}, std::int64_t{40},
                                std::int64_t{256 - 7}, std::int64_t{300 - 257}}) {
        run_case(*kernel, {.dtype = dtype, .rows = 257, .keys = 300, .head_dim = 64, .head_dim_v = 64,
                           .causal_diagonal = diag}, seed++);
        run_case(*kernel, {.dtype = dtype, .rows = 7, .keys = 31, .head_dim = 32, .head_dim_v = 32,
                           .indexed = true, .bias = true, .causal_diagonal = diag % 20}, seed++);
      }
}

// Every key of a row masked by a -inf bias: the empty-set rule through the bias path.
TEST(AttentionKernels, AllKeysBiasedAway) {
  for (const AttentionKernel* kernel : all_kernels()) {
    SCOPED_TRACE(kernel->name);
    const int d = 32;
    std::vector<float> q(3 * d, 0.5f), k(5 * d, 0.25f), v(5 * d, 1.0f);  // [3, d], [5, d], [5, d]
    std::vector<float> bias(5, -std::numeric_limits<float>::infinity());  // [5]
    std::vector<float> out(3 * d, 7.0f), lse(3, 7.0f);                   // [3, d], [3]
    Scratch scratch(kernel->scratch_floats(d, d));
    DenseAttentionTile t;
    t.q = q.data();
    t.q_row_stride = d;
    t.k = k.data();
    t.k_row_stride = d;
    t.v = v.data();
    t.v_row_stride = d;
    t.key_bias = bias.data();
    t.rows = 3;
    t.keys = 5;
    t.head_dim = d;
    t.head_dim_v = d;
    t.out = out.data();
    t.out_row_stride = d;
    t.lse = lse.data();
    t.scratch = scratch.data;
    kernel->dense(t);
    for (float x : out) EXPECT_EQ(x, 0.0f);
    for (float x : lse) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
  }
}

// A large score range: weights span e^-80 .. 1 and the running max moves between key tiles.
TEST(AttentionKernels, GrowingScoresAcrossKeyTiles) {
  std::uint32_t seed = 400;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(kernel->name);
      const int d = 64;
      const std::int64_t n = 600;
      std::mt19937 rng(seed++);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> q(d, 1.0f), k(n * d), v(n * d);  // [1, d], [n, d], [n, d]
      for (std::int64_t j = 0; j < n; ++j)
        for (int x = 0; x < d; ++x) {
          k[j * d + x] = static_cast<float>(j) / 40.0f;  // scores grow with j: 0 .. 120
          v[j * d + x] = normal(rng);
        }
      std::vector<std::uint16_t> qb(q.size()), kb(k.size()), vb(v.size());
      for (std::size_t i = 0; i < q.size(); ++i) qb[i] = f32_to_bf16_bits(q[i]);
      for (std::size_t i = 0; i < k.size(); ++i) {
        kb[i] = f32_to_bf16_bits(k[i]);
        vb[i] = f32_to_bf16_bits(v[i]);
        if (dtype == DType::bf16) {
          k[i] = bf16_bits_to_f32(kb[i]);
          v[i] = bf16_bits_to_f32(vb[i]);
        }
      }
      std::vector<float> out(d), lse(1);  // [1, d], [1]
      Scratch scratch(kernel->scratch_floats(d, d));
      DenseAttentionTile t;
      t.dtype = dtype;
      t.q = dtype == DType::f32 ? static_cast<const void*>(q.data()) : qb.data();
      t.q_row_stride = d;
      t.k = dtype == DType::f32 ? static_cast<const void*>(k.data()) : kb.data();
      t.k_row_stride = d;
      t.v = dtype == DType::f32 ? static_cast<const void*>(v.data()) : vb.data();
      t.v_row_stride = d;
      t.rows = 1;
      t.keys = n;
      t.head_dim = d;
      t.head_dim_v = d;
      t.scale = 1.0f / 8.0f;
      t.out = out.data();
      t.out_row_stride = d;
      t.lse = lse.data();
      t.scratch = scratch.data;
      kernel->dense(t);
      std::vector<double> s(n);
      double m = -1e300, sum = 0.0, max_v = 0.0;
      for (std::int64_t j = 0; j < n; ++j) {
        double dot = 0.0;
        for (int x = 0; x < d; ++x) dot += static_cast<double>(q[x]) * k[j * d + x];
        s[j] = dot / 8.0;
        m = std::max(m, s[j]);
      }
      std::vector<double> o(d, 0.0);
      for (std::int64_t j = 0; j < n; ++j) {
        const double p = std::exp(s[j] - m);
        sum += p;
        for (int x = 0; x < d; ++x) {
          o[x] += p * v[j * d + x];
          max_v = std::max(max_v, std::abs(static_cast<double>(v[j * d + x])));
        }
      }
      // Scores reach 120: the rounding of s (eps * 120 relative in the weights) dominates.
      const double tol = (4.0 * (d + 2) * kEps * 120.0 + (n + 8) * kEps + (dtype == DType::bf16 ? std::ldexp(1.0, -8) : 0.0)) * max_v;
      for (int x = 0; x < d; ++x) ASSERT_NEAR(out[x], o[x] / sum, tol) << (dtype == DType::f32 ? "f32" : "bf16") << " col " << x;
      ASSERT_NEAR(lse[0], m + std::log(sum), 4.0 * (d + 2) * kEps * 120.0);
    }
}


// ---- merge mode and the prefetch hint -----------------------------------------------------------

// Equal bits, NaN included (a NaN compares equal to any NaN).
bool same_bits(float a, float b) { return (a != a && b != b) || std::memcmp(&a, &b, sizeof a) == 0; }

struct MergeCase {
  DType dtype = DType::f32;
  std::int64_t rows = 0, keys = 0;
  int head_dim = 64, head_dim_v = 64;
  bool indexed = false;
  std::int64_t causal_diagonal = kNoCausalMask;  // rows that see no key keep their accumulator
  bool nan_key = false;                          // a NaN in one key row: every row that sees it gets NaN
};

// The tile in merge mode against the same tile written to fresh storage and merged with
// merge_row + combine_rows_scalar (the engine's formula before the merge moved into the kernels):
// the same bits, for accumulators that are finite, empty (-inf, taken over) or NaN.
void run_merge_case(const AttentionKernel& kernel, const MergeCase& c, std::uint32_t seed) {
  SCOPED_TRACE(std::string(kernel.name) + (c.dtype == DType::f32 ? " f32" : " bf16") + " rows=" + std::to_string(c.rows) +
               " keys=" + std::to_string(c.keys) + " d=" + std::to_string(c.head_dim) + " dv=" +
               std::to_string(c.head_dim_v) + (c.indexed ? " indexed" : "") + (c.nan_key ? " nan" : "") +
               (c.causal_diagonal != kNoCausalMask ? " diag=" + std::to_string(c.causal_diagonal) : ""));
  std::mt19937 rng(seed);
  const int d = c.head_dim, dv = c.head_dim_v;
  const std::int64_t q_src = c.indexed ? 2 * c.rows + 3 : c.rows, k_src = c.indexed ? 2 * c.keys + 5 : c.keys;
  const std::int64_t out_rows = c.indexed ? c.rows + 7 : c.rows, out_stride = dv + 3;
  Matrix q = random_matrix(q_src, d, c.dtype, 1.0, rng);   // [q_src, d]
  Matrix k = random_matrix(k_src, d, c.dtype, 1.0, rng);   // [k_src, d]
  Matrix v = random_matrix(k_src, dv, c.dtype, 1.0, rng);  // [k_src, dv]
  if (c.nan_key) {
    k.f32[static_cast<std::size_t>(k_src / 2) * d + 1] = std::numeric_limits<float>::quiet_NaN();
    k.bf16[static_cast<std::size_t>(k_src / 2) * d + 1] = 0x7fc0;
  }
  std::vector<std::int32_t> q_index, k_index, out_index, rows_all(static_cast<std::size_t>(out_rows));  // [rows], [keys], [rows]
  for (std::size_t i = 0; i < rows_all.size(); ++i) rows_all[i] = static_cast<std::int32_t>(i);
  if (c.indexed) {
    std::uniform_int_distribution<std::int32_t> pick_q(0, static_cast<std::int32_t>(q_src - 1));
    std::uniform_int_distribution<std::int32_t> pick_k(0, static_cast<std::int32_t>(k_src - 1));
    for (std::int64_t i = 0; i < c.rows; ++i) q_index.push_back(pick_q(rng));
    for (std::int64_t j = 0; j < c.keys; ++j) k_index.push_back(j == c.keys / 3 && c.nan_key ? static_cast<std::int32_t>(k_src / 2) : pick_k(rng));
    std::shuffle(rows_all.begin(), rows_all.end(), rng);
    out_index.assign(rows_all.begin(), rows_all.begin() + c.rows);
  }
  std::vector<float> bias(static_cast<std::size_t>(c.keys));  // [keys]: block keys 0, samples a log weight
  for (std::int64_t j = 0; j < c.keys; ++j) bias[static_cast<std::size_t>(j)] = j < c.keys / 2 ? 0.0f : 2.5f;

  // The accumulators before this part: finite rows, empty rows (-inf) and a NaN row.
  std::vector<float> acc(static_cast<std::size_t>(out_rows * out_stride)), acc_lse(static_cast<std::size_t>(out_rows));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& x : acc) x = normal(rng);
  for (std::int64_t r = 0; r < out_rows; ++r)
    acc_lse[static_cast<std::size_t>(r)] = r % 7 == 2 ? -std::numeric_limits<float>::infinity()
                                           : r % 11 == 5 ? std::numeric_limits<float>::quiet_NaN()
                                                         : 4.0f * normal(rng);

  Scratch scratch(kernel.scratch_floats(d, dv));
  DenseAttentionTile t;
  t.dtype = c.dtype;
  t.q = q.data(c.dtype);
  t.q_row_stride = d;
  t.q_index = c.indexed ? q_index.data() : nullptr;
  t.k = k.data(c.dtype);
  t.k_row_stride = d;
  t.v = v.data(c.dtype);
  t.v_row_stride = dv;
  t.k_index = c.indexed ? k_index.data() : nullptr;
  t.key_bias = bias.data();
  t.rows = c.rows;
  t.keys = c.keys;
  t.head_dim = d;
  t.head_dim_v = dv;
  t.scale = 1.0f / std::sqrt(static_cast<float>(d));
  t.causal_diagonal = c.causal_diagonal;
  t.out_row_stride = out_stride;
  t.out_index = c.indexed ? out_index.data() : nullptr;
  t.scratch = scratch.data;

  // Written to fresh storage, then merged by the reference formula.
  std::vector<float> part(acc.size(), 0.0f), part_lse(acc_lse.size(), 0.0f);
  t.out = part.data();
  t.lse = part_lse.data();
  kernel.dense(t);
  std::vector<float> want = acc, want_lse = acc_lse;
  for (std::int64_t i = 0; i < c.rows; ++i) {
    const std::int64_t row = c.indexed ? out_index[static_cast<std::size_t>(i)] : i;
    merge_row(want.data() + row * out_stride, want_lse.data() + row, part.data() + row * out_stride, part_lse[static_cast<std::size_t>(row)],
              dv, combine_rows_scalar);
  }

  // Merged by the kernel.
  std::vector<float> got = acc, got_lse = acc_lse;
  t.out = got.data();
  t.lse = got_lse.data();
  t.merge = true;
  kernel.dense(t);
  int finite_merges = 0;
  for (std::int64_t r = 0; r < out_rows; ++r) {
    ASSERT_TRUE(same_bits(got_lse[static_cast<std::size_t>(r)], want_lse[static_cast<std::size_t>(r)]))
        << "row " << r << ": lse " << got_lse[static_cast<std::size_t>(r)] << " want " << want_lse[static_cast<std::size_t>(r)];
    for (std::int64_t x = 0; x < out_stride; ++x)
      ASSERT_TRUE(same_bits(got[static_cast<std::size_t>(r * out_stride + x)], want[static_cast<std::size_t>(r * out_stride + x)]))
          << "row " << r << " col " << x << ": " << got[static_cast<std::size_t>(r * out_stride + x)] << " want "
          << want[static_cast<std::size_t>(r * out_stride + x)];
    if (std::isfinite(acc_lse[static_cast<std::size_t>(r)]) && std::isfinite(part_lse[static_cast<std::size_t>(r)]) &&
        got_lse[static_cast<std::size_t>(r)] != acc_lse[static_cast<std::size_t>(r)])
      ++finite_merges;
  }
  if (!c.nan_key) {
    EXPECT_GT(finite_merges, 0) << "no row merged two finite parts";
  }
}

TEST(AttentionKernels, MergeModeMatchesWriteThenMerge) {
  std::uint32_t seed = 500;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16}) {
      // HyperAttention's level blocks (gathered rows and keys, bias), scaled down and full size.
      run_merge_case(*kernel, {.dtype = dtype, .rows = 64, .keys = 128, .indexed = true}, seed++);
      run_merge_case(*kernel, {.dtype = dtype, .rows = 257, .keys = 512, .indexed = true}, seed++);
      // Contiguous rows (an exact part merging), head dims off the vector width.
      run_merge_case(*kernel, {.dtype = dtype, .rows = 37, .keys = 70, .head_dim = 40, .head_dim_v = 40}, seed++);
      run_merge_case(*kernel, {.dtype = dtype, .rows = 13, .keys = 33, .head_dim = 17, .head_dim_v = 17, .indexed = true}, seed++);
      // Rows that see no key (an empty part: the accumulator stays), and a NaN key.
      run_merge_case(*kernel, {.dtype = dtype, .rows = 40, .keys = 50, .indexed = true, .causal_diagonal = -10}, seed++);
      run_merge_case(*kernel, {.dtype = dtype, .rows = 20, .keys = 90, .indexed = true, .nan_key = true}, seed++);
    }
}

// merge_row against the log-sum-exp merge in double precision.
TEST(AttentionKernels, MergeRowIsTheLogSumExpMerge) {
  const float inf = std::numeric_limits<float>::infinity();
  const int d = 19;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> o(d), o_new(d);  // [d], [d]
    for (int x = 0; x < d; ++x) {
      o[x] = normal(rng);
      o_new[x] = normal(rng);
    }
    const float l = 10.0f * normal(rng), l_new = trial % 3 == 0 ? l : 10.0f * normal(rng);
    std::vector<float> got = o;
    float got_l = l;
    merge_row(got.data(), &got_l, o_new.data(), l_new, d, combine_rows_scalar);
    const double mx = std::max(l, l_new), w = std::exp(l - mx), w_new = std::exp(l_new - mx);
    ASSERT_NEAR(got_l, mx + std::log(w + w_new), 4.0 * kEps * (std::abs(mx) + 1.0));
    for (int x = 0; x < d; ++x)
      ASSERT_NEAR(got[x], (w * o[x] + w_new * o_new[x]) / (w + w_new), 8.0 * kEps * (std::abs(o[x]) + std::abs(o_new[x])));
  }
  // An empty part leaves the accumulator; an empty accumulator takes the part; NaN propagates.
  std::vector<float> o(d, 1.5f), o_new(d, -2.0f);
  float l = 3.0f;
  merge_row(o.data(), &l, o_new.data(), -inf, d, combine_rows_scalar);
  EXPECT_EQ(l, 3.0f);
  EXPECT_EQ(o[0], 1.5f);
  l = -inf;
  merge_row(o.data(), &l, o_new.data(), 2.0f, d, combine_rows_scalar);
  EXPECT_EQ(l, 2.0f);
  EXPECT_EQ(o[d - 1], -2.0f);
  merge_row(o.data(), &l, o_new.data(), std::numeric_limits<float>::quiet_NaN(), d, combine_rows_scalar);
  EXPECT_TRUE(std::isnan(l));
  EXPECT_TRUE(std::isnan(o[0]));
}

// tile.next only prefetches: the results are the same bits with and without it, whatever it
// points at (gathered rows, contiguous rows, a merging tile).
TEST(AttentionKernels, NextTileHintChangesNothing) {
  std::uint32_t seed = 600;
  for (const AttentionKernel* kernel : all_kernels())
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(std::string(kernel->name) + (dtype == DType::f32 ? " f32" : " bf16"));
      std::mt19937 rng(seed++);
      const int d = 64;
      const std::int64_t n = 2000, rows = 300, keys = 600;
      const Matrix q = random_matrix(n, d, dtype, 1.0, rng), k = random_matrix(n, d, dtype, 1.0, rng),
                   v = random_matrix(n, d, dtype, 1.0, rng);  // [n, d] each
      std::vector<std::int32_t> q_index(rows), k_index(keys), q_index2(rows), k_index2(keys);  // [rows], [keys]
      std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(n - 1));
      std::vector<std::int32_t> perm(static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<std::int32_t>(i);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::copy(perm.begin(), perm.begin() + rows, q_index.begin());
      std::copy(perm.begin() + rows, perm.begin() + 2 * rows, q_index2.begin());
      for (auto& x : k_index) x = pick(rng);
      for (auto& x : k_index2) x = pick(rng);
      std::vector<float> bias(keys, 0.0f);  // [keys]
      Scratch scratch(kernel->scratch_floats(d, d));
      auto tile = [&](const std::int32_t* qi, const std::int32_t* ki, float* out, float* lse) {
        DenseAttentionTile t;
        t.dtype = dtype;
        t.q = q.data(dtype);
        t.q_row_stride = d;
        t.q_index = qi;
        t.k = k.data(dtype);
        t.k_row_stride = d;
        t.v = v.data(dtype);
        t.v_row_stride = d;
        t.k_index = ki;
        t.key_bias = bias.data();
        t.rows = rows;
        t.keys = keys;
        t.head_dim = d;
        t.head_dim_v = d;
        t.scale = 0.125f;
        t.out = out;
        t.out_row_stride = d;
        t.out_index = qi;
        t.lse = lse;
        t.scratch = scratch.data;
        return t;
      };
      std::vector<float> out_a(n * d, 0.0f), lse_a(n, 0.0f), out_b(n * d, 0.0f), lse_b(n, 0.0f);  // [n, d], [n]
      DenseAttentionTile next = tile(q_index2.data(), k_index2.data(), out_b.data(), lse_b.data());
      next.merge = true;
      DenseAttentionTile plain = tile(q_index.data(), k_index.data(), out_a.data(), lse_a.data());
      kernel->dense(plain);
      DenseAttentionTile hinted = tile(q_index.data(), k_index.data(), out_b.data(), lse_b.data());
      hinted.next = &next;
      kernel->dense(hinted);
      DenseAttentionTile contiguous_next = tile(nullptr, nullptr, out_b.data(), lse_b.data());
      hinted.next = &contiguous_next;
      kernel->dense(hinted);
      ASSERT_EQ(0, std::memcmp(out_a.data(), out_b.data(), out_a.size() * sizeof(float)));
      ASSERT_EQ(0, std::memcmp(lse_a.data(), lse_b.data(), lse_a.size() * sizeof(float)));
    }
}

// parallel_for_lookahead runs every item exactly once, and `next` is the item the same thread
// runs next (or -1 for its last one).
// ---- row windows, and rows independent of their tile -----------------------------------------

// A gathered tile like HyperAttention's windowed blocks: rows 0..rows-1, keys gathered with
// repeats and a bias (some -inf); optional row windows over the key positions and a causal
// diagonal; inputs, accumulators and the tile description owned together.
struct GatheredTile {
  int d = 64, dv = 64;
  std::int64_t rows = 0, keys = 0, k_src = 0, out_rows = 0, out_stride = 0;
  Matrix q, k, v;
  std::vector<std::int32_t> q_index, k_index, out_index, row_window;
  std::vector<float> bias, out, lse;
  DenseAttentionTile tile(float* scratch) {
    DenseAttentionTile t;
    t.q = q.f32.data();
    t.q_row_stride = d;
    t.q_index = q_index.data();
    t.k = k.f32.data();
    t.k_row_stride = d;
    t.v = v.f32.data();
    t.v_row_stride = dv;
    t.k_index = k_index.data();
    t.key_bias = bias.data();
    t.rows = rows;
    t.keys = keys;
    t.head_dim = d;
    t.head_dim_v = dv;
    t.scale = 1.0f / std::sqrt(static_cast<float>(d));
    t.out = out.data();
    t.out_row_stride = out_stride;
    t.out_index = out_index.data();
    t.lse = lse.data();
    t.scratch = scratch;
    if (!row_window.empty()) {
      t.row_window = row_window.data();
      t.window_from = keys - window_keys;
    }
    return t;
  }
  std::int64_t window_keys = 0;  // the last window_keys keys are the window's
};

// rows x (keys + window) keys; with window > 0 the last `window` keys are positions
// [k_src - window, k_src) and about a third of the rows have windows ending at k_src.
GatheredTile gathered_tile(std::int64_t rows, std::int64_t keys, std::int64_t window, int d, int dv, std::mt19937& rng) {
  GatheredTile g;
  g.d = d;
  g.dv = dv;
  g.rows = rows;
  g.k_src = keys + 2 * window + 9;
  g.keys = keys + window;
  g.window_keys = window;
  g.out_rows = rows + 5;
  g.out_stride = dv + 3;
  g.q = random_matrix(2 * rows + 3, d, DType::f32, 1.0, rng);
  g.k = random_matrix(g.k_src, d, DType::f32, 1.0, rng);
  g.v = random_matrix(g.k_src, dv, DType::f32, 1.0, rng);
  std::uniform_int_distribution<std::int32_t> pick_q(0, static_cast<std::int32_t>(2 * rows + 2));
  std::uniform_int_distribution<std::int32_t> pick_k(0, static_cast<std::int32_t>(g.k_src - 1));
  std::uniform_real_distribution<float> u(-3.0f, 1.0f);
  for (std::int64_t i = 0; i < rows; ++i) g.q_index.push_back(pick_q(rng));
  for (std::int64_t j = 0; j < keys; ++j) {
    g.k_index.push_back(pick_k(rng));
    g.bias.push_back(j % 23 == 7 ? -std::numeric_limits<float>::infinity() : u(rng));
  }
  for (std::int64_t j = 0; j < window; ++j) {
    g.k_index.push_back(static_cast<std::int32_t>(g.k_src - window + j));
    g.bias.push_back(0.0f);
  }
  std::vector<std::int32_t> perm(static_cast<std::size_t>(g.out_rows));
  for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<std::int32_t>(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  g.out_index.assign(perm.begin(), perm.begin() + rows);
  if (window > 0) {
    std::uniform_int_distribution<std::int64_t> offset(0, window - 1);
    for (std::int64_t i = 0; i < rows; ++i) {
      const bool windowed = i % 3 == 1;
      const std::int64_t lo = g.k_src - window + offset(rng);
      g.row_window.push_back(static_cast<std::int32_t>(windowed ? lo : 0));
      g.row_window.push_back(static_cast<std::int32_t>(windowed ? g.k_src : 0));
    }
  }
  g.out.assign(static_cast<std::size_t>(g.out_rows * g.out_stride), 7.0f);
  g.lse.assign(static_cast<std::size_t>(g.out_rows), 7.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& x : g.out) x = normal(rng);
  for (std::size_t r = 0; r < g.lse.size(); ++r) g.lse[r] = r % 5 == 3 ? -std::numeric_limits<float>::infinity() : 3.0f * normal(rng);
  return g;
}

// Row windows against a double evaluation of the contract: row r sees key j < window_from iff its
// position lies outside the row's window, key j >= window_from iff inside (tolerance as run_case).
TEST(AttentionKernels, RowWindowsMatchTheContract) {
  std::uint32_t seed = 900;
  for (const AttentionKernel* kernel : all_kernels())
    for (const auto& [rows, keys, window, diag] : std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t>>{
             {16, 127, 32, kNoCausalMask}, {5, 40, 9, kNoCausalMask}, {47, 331, 94, kNoCausalMask},
             {64, 256, 0, kNoCausalMask}, {100, 200, 40, kNoCausalMask}, {20, 60, 12, 50}}) {
      SCOPED_TRACE(std::string(kernel->name) + " rows=" + std::to_string(rows) + " keys=" + std::to_string(keys) +
                   " window=" + std::to_string(window));
      std::mt19937 rng(seed++);
      GatheredTile g = gathered_tile(rows, keys, window, 64, 64, rng);
      Scratch scratch(kernel->scratch_floats(g.d, g.dv));
      DenseAttentionTile t = g.tile(scratch.data);
      t.causal_diagonal = diag;
      if (window == 0) {  // row windows all empty: every row sees [0, window_from)
        g.row_window.assign(static_cast<std::size_t>(2 * rows), 5);
        t.row_window = g.row_window.data();
        t.window_from = keys / 2;
      }
      kernel->dense(t);
      for (std::int64_t i = 0; i < rows; ++i) {
        const std::int64_t qr = g.q_index[static_cast<std::size_t>(i)];
        double m = -std::numeric_limits<double>::infinity(), max_abs_s = 0.0, delta = 0.0, max_v = 0.0;
        std::vector<double> s(static_cast<std::size_t>(t.keys), -std::numeric_limits<double>::infinity());
        int seen = 0;
        for (std::int64_t j = 0; j < t.keys; ++j) {
          const std::int64_t pos = g.k_index[static_cast<std::size_t>(j)];
          const bool inside = pos >= g.row_window[static_cast<std::size_t>(2 * i)] && pos < g.row_window[static_cast<std::size_t>(2 * i + 1)];
          if ((j < t.window_from) == inside || j > i + diag) continue;
          double dot = 0.0, dot_abs = 0.0;
          for (int x = 0; x < g.d; ++x) {
            const double a = g.q.exact[static_cast<std::size_t>(qr * g.d + x)] * g.k.exact[static_cast<std::size_t>(pos * g.d + x)];
            dot += a;
            dot_abs += std::abs(a);
          }
          s[static_cast<std::size_t>(j)] = t.scale * dot + g.bias[static_cast<std::size_t>(j)];
          delta = std::max(delta, (g.d + 2) * kEps * t.scale * dot_abs);
          if (std::isfinite(s[static_cast<std::size_t>(j)])) max_abs_s = std::max(max_abs_s, std::abs(s[static_cast<std::size_t>(j)]));
          m = std::max(m, s[static_cast<std::size_t>(j)]);
          for (int x = 0; x < g.dv; ++x) max_v = std::max(max_v, std::abs(g.v.exact[static_cast<std::size_t>(pos * g.dv + x)]));
          ++seen;
        }
        const std::int64_t orow = g.out_index[static_cast<std::size_t>(i)];
        ASSERT_GT(seen, 0);
        std::vector<double> o(static_cast<std::size_t>(g.dv), 0.0);
        double sum = 0.0;
        for (std::int64_t j = 0; j < t.keys; ++j) {
          const double p = std::exp(s[static_cast<std::size_t>(j)] - m);
          if (p == 0.0) continue;
          sum += p;
          const std::int64_t pos = g.k_index[static_cast<std::size_t>(j)];
          for (int x = 0; x < g.dv; ++x) o[static_cast<std::size_t>(x)] += p * g.v.exact[static_cast<std::size_t>(pos * g.dv + x)];
        }
        const double weight_rel = 2.0 * delta + 4.0 * kEps + 2.0 * kEps * max_abs_s;
        const double tol = (2.0 * weight_rel + (static_cast<double>(t.keys) + 8.0) * kEps) * max_v;
        for (int x = 0; x < g.dv; ++x)
          ASSERT_NEAR(g.out[static_cast<std::size_t>(orow * g.out_stride + x)], o[static_cast<std::size_t>(x)] / sum, tol)
              << "row " << i << " col " << x;
        ASSERT_NEAR(g.lse[static_cast<std::size_t>(orow)], m + std::log(sum),
                    weight_rel + (static_cast<double>(t.keys) + 8.0) * kEps + 2.0 * kEps * (max_abs_s + std::abs(m)))
            << "row " << i;
      }
    }
}

// A row's result does not depend on the tile it is computed in: rows [a, a + n) of a tile, run as
// a tile of their own, get the same bits, written or merged, with row windows, a causal diagonal,
// several key tiles. For the AVX-512 kernel this is its small-tile path (up to 64 rows, fp32)
// against its packed path (more rows): the two must do the same arithmetic in the same order.
TEST(AttentionKernels, SmallTilesMatchThePackedPath) {
  std::uint32_t seed = 950;
  struct Shape {
    std::int64_t rows, keys, window;
    int d, dv;
    std::int64_t diag;
  };
  for (const AttentionKernel* kernel : all_kernels())
    for (const Shape& sh : std::vector<Shape>{{80, 127, 32, 64, 64, kNoCausalMask}, {90, 112, 0, 64, 64, kNoCausalMask},
                                             {70, 300, 94, 64, 64, kNoCausalMask}, {100, 600, 0, 128, 48, kNoCausalMask},
                                             {75, 41, 7, 32, 80, kNoCausalMask}, {80, 200, 20, 64, 64, 100},
                                             {66, 530, 64, 16, 16, kNoCausalMask}})
      for (bool merge : {false, true})
        for (const auto& [a, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 16}, {3, 1}, {5, 11}, {17, 47}, {1, 64}, {20, 33}}) {
          SCOPED_TRACE(std::string(kernel->name) + " rows=" + std::to_string(sh.rows) + " keys=" + std::to_string(sh.keys) +
                       " window=" + std::to_string(sh.window) + " d=" + std::to_string(sh.d) + " dv=" + std::to_string(sh.dv) +
                       (merge ? " merge" : "") + " sub=" + std::to_string(a) + "+" + std::to_string(n));
          std::mt19937 rng(seed++);
          GatheredTile g = gathered_tile(sh.rows, sh.keys, sh.window, sh.d, sh.dv, rng);
          Scratch scratch(kernel->scratch_floats(g.d, g.dv));
          const std::vector<float> out0 = g.out, lse0 = g.lse;
          DenseAttentionTile whole = g.tile(scratch.data);
          whole.causal_diagonal = sh.diag;
          whole.merge = merge;
          kernel->dense(whole);
          const std::vector<float> want = g.out, want_lse = g.lse;
          g.out = out0;
          g.lse = lse0;
          DenseAttentionTile part = g.tile(scratch.data);
          part.merge = merge;
          part.rows = n;
          part.q_index += a;
          part.out_index += a;
          if (part.row_window) part.row_window += 2 * a;
          part.causal_diagonal = sh.diag == kNoCausalMask ? kNoCausalMask : sh.diag + a;
          kernel->dense(part);
          for (std::int64_t i = a; i < a + n; ++i) {
            const std::int64_t orow = g.out_index[static_cast<std::size_t>(i)];
            ASSERT_TRUE(same_bits(g.lse[static_cast<std::size_t>(orow)], want_lse[static_cast<std::size_t>(orow)]))
                << "row " << i << ": lse " << g.lse[static_cast<std::size_t>(orow)] << " want " << want_lse[static_cast<std::size_t>(orow)];
            for (int x = 0; x < g.dv; ++x)
              ASSERT_TRUE(same_bits(g.out[static_cast<std::size_t>(orow * g.out_stride + x)], want[static_cast<std::size_t>(orow * g.out_stride + x)]))
                  << "row " << i << " col " << x << ": " << g.out[static_cast<std::size_t>(orow * g.out_stride + x)] << " want "
                  << want[static_cast<std::size_t>(orow * g.out_stride + x)];
          }
        }
}

// Kernels that compute row windows compactly (AttentionKernel::compact_windows): every row gets
// the bits of a tile of that row alone, without row windows, over keys [0, window_from) (those
// inside its window biased -inf) followed by its window's keys: what the engine ran before it
// batched a block's windowed rows. Written and merged, one and several key tiles.
TEST(AttentionKernels, CompactWindowsMatchOneRowTiles) {
  std::uint32_t seed = 1200;
  int checked = 0;
  for (const AttentionKernel* kernel : all_kernels()) {
    if (kernel->compact_windows == nullptr) continue;
    struct Shape {
      std::int64_t rows, keys, window;
      int d, dv;
    };
    for (const Shape& sh : std::vector<Shape>{{16, 127, 32, 64, 64}, {47, 378, 94, 64, 64}, {11, 80, 22, 64, 64},
                                             {154, 1235, 308, 64, 64}, {64, 509, 128, 64, 64}, {7, 50, 14, 32, 48},
                                             {40, 250, 10, 128, 80}})
      for (bool merge : {false, true}) {
        SCOPED_TRACE(std::string(kernel->name) + " rows=" + std::to_string(sh.rows) + " keys=" + std::to_string(sh.keys) +
                     " window=" + std::to_string(sh.window) + (merge ? " merge" : ""));
        std::mt19937 rng(seed++);
        GatheredTile g = gathered_tile(sh.rows, sh.keys, sh.window, sh.d, sh.dv, rng);
        for (std::int64_t i = 60; i < sh.rows; ++i)  // at most 20 windowed rows (a kernel's capacity is limited)
          g.row_window[static_cast<std::size_t>(2 * i)] = g.row_window[static_cast<std::size_t>(2 * i + 1)] = 0;
        Scratch scratch(kernel->scratch_floats(g.d, g.dv));
        const std::vector<float> out0 = g.out, lse0 = g.lse;
        DenseAttentionTile whole = g.tile(scratch.data);
        whole.merge = merge;
        ASSERT_TRUE(kernel->compact_windows(whole));
        kernel->dense(whole);
        const std::vector<float> got = g.out, got_lse = g.lse;
        g.out = out0;
        g.lse = lse0;
        for (std::int64_t i = 0; i < sh.rows; ++i) {
          const std::int32_t lo = g.row_window[static_cast<std::size_t>(2 * i)], hi = g.row_window[static_cast<std::size_t>(2 * i + 1)];
          std::vector<std::int32_t> keys;
          std::vector<float> bias;
          for (std::int64_t j = 0; j < whole.keys; ++j) {
            const std::int32_t pos = g.k_index[static_cast<std::size_t>(j)];
            const bool inside = pos >= lo && pos < hi;
            if (j < whole.window_from) {
              keys.push_back(pos);
              bias.push_back(inside ? -std::numeric_limits<float>::infinity() : g.bias[static_cast<std::size_t>(j)]);
            } else if (inside) {
              keys.push_back(pos);
              bias.push_back(g.bias[static_cast<std::size_t>(j)]);
            }
          }
          DenseAttentionTile one = g.tile(scratch.data);
          one.merge = merge;
          one.row_window = nullptr;
          one.window_from = 0;
          one.rows = 1;
          one.q_index += i;
          one.out_index += i;
          one.k_index = keys.data();
          one.key_bias = bias.data();
          one.keys = static_cast<std::int64_t>(keys.size());
          kernel->dense(one);
          const std::int64_t orow = g.out_index[static_cast<std::size_t>(i)];
          ASSERT_TRUE(same_bits(got_lse[static_cast<std::size_t>(orow)], g.lse[static_cast<std::size_t>(orow)]))
              << "row " << i << (lo < hi ? " (windowed)" : "") << ": lse " << got_lse[static_cast<std::size_t>(orow)] << " want "
              << g.lse[static_cast<std::size_t>(orow)];
          for (int x = 0; x < g.dv; ++x)
            ASSERT_TRUE(same_bits(got[static_cast<std::size_t>(orow * g.out_stride + x)], g.out[static_cast<std::size_t>(orow * g.out_stride + x)]))
                << "row " << i << (lo < hi ? " (windowed)" : "") << " col " << x;
          ++checked;
        }
      }
  }
  if (kernel_by_name("avx512") != nullptr) {
    EXPECT_GT(checked, 0);
  }
}

TEST(ThreadPool, LookaheadRunsEachItemOnceAndNextIsTheThreadsNextItem) {
  for (int threads : {1, 2, 3, 8})
    for (std::int64_t items : {std::int64_t{0}, std::int64_t{1}, std::int64_t{2}, std::int64_t{5}, std::int64_t{1000}}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, " + std::to_string(items) + " items");
      std::vector<int> runs(static_cast<std::size_t>(items), 0);
      std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> seen(static_cast<std::size_t>(threads));
      parallel_for_lookahead(items, threads, [&](std::int64_t item, std::int64_t next, int thread) {
        ++runs[static_cast<std::size_t>(item)];  // items are disjoint: no race
        seen[static_cast<std::size_t>(thread)].push_back({item, next});
      });
      for (std::int64_t i = 0; i < items; ++i) ASSERT_EQ(runs[static_cast<std::size_t>(i)], 1) << "item " << i;
      for (const auto& list : seen)
        for (std::size_t j = 0; j < list.size(); ++j) {
          if (list[j].second >= 0) {
            ASSERT_LT(j + 1, list.size());
            ASSERT_EQ(list[j].second, list[j + 1].first);
          }
        }
    }
}

}  // namespace
}  // namespace hyperattn::cpu

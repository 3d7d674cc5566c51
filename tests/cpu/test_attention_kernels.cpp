// tests/cpu/test_attention_kernels.cpp: every kernel variant this CPU supports (scalar, avx2,
// avx512) against a naive double-precision evaluation of the tile contract
// (src/cpu/attention_kernel.hpp), sweeping sizes below, at and above the kernels' tiles (row
// groups of 6/8, key chunks of 16/32, row tiles of 252/256, key tiles of 64/256), head dims,
// dtypes, index arrays, key bias, causal diagonals (including rows that see no key) and strides.
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
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/bfloat16.hpp"
#include "cpu/attention_kernel.hpp"

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

// Sizes below, at and above the row groups (6, 8), key chunks (16, 32) and tiles (252/256).
TEST(AttentionKernels, SizeSweepF32AndBf16) {
  // Row groups 6 (avx2) and 8 (avx512), row tiles 252 and 256; key chunks 16 and 32, key tiles
  // 64 (scalar) and 256.
  const std::int64_t rows_list[] = {1, 5, 6, 7, 8, 9, 251, 252, 253, 255, 256, 257, 300};
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

}  // namespace
}  // namespace hyperattn::cpu

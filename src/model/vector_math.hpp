// src/model/vector_math.hpp: the runner's element-wise loops that the compiler does not vectorise
// on its own (exp in SwiGLU, log-softmax and the KL terms; sums kept in double), vectorised: a
// branch-free fp32 exp that GCC auto-vectorises, used by loops compiled once per ISA (AVX-512, AVX2,
// baseline) and picked at run time by the library's one SIMD choice (core/simd.hpp, cpu::simd_level():
// HYPERATTN_ISA steers it), as core/lsh.cpp.
//
// exp_f32(x): n = round(x log2 e) (by the 1.5 * 2^23 rounding constant, no float -> int conversion),
// r = x - n ln2 in two steps (ln2_hi has 9 significant bits, so n * ln2_hi is exact for |n| < 2^15;
// the small n ln2_lo term carries the rounding), |r| <= ln2 / 2 (up to rounding of x log2 e); exp(r) by its degree-7 Taylor polynomial (truncation
// 0.3466^8 / 8! < 5.2e-9 relative, 0.09 ulp) in fp32 Horner form; then times 2^n1 and 2^n2 with
// n1 = floor(n / 2), n2 = n - n1, each a normal power of two, so that results in the subnormal range
// are rounded once and overflow gives +inf. x is clamped to [-110, 100] first (exp(-110) is below
// half the smallest subnormal, exp(100) overflows), so -inf gives 0, +inf gives +inf, and a NaN
// passes through every step and comes out NaN. Error bound: the Horner steps and the final product
// give at most 2 ulp (measured 1.2 ulp), the same bits in every ISA (vector_math.cpp is compiled
// with -ffp-contract=off, so no clone fuses a multiply-add the others round twice).
#pragma once

#include <bit>
#include <cstdint>

namespace hyperattn::model {

inline float exp_f32(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;              // 355 / 512, 9 significant bits
  constexpr float kLn2Lo = -2.12194440054690583e-4f;  // ln 2 - kLn2Hi
  constexpr float kRound = 12582912.0f;               // 1.5 * 2^23: t + kRound rounds t to an integer
  x = x < -110.0f ? -110.0f : x;  // comparisons are false for NaN, which stays NaN
  x = x > 100.0f ? 100.0f : x;
  const float shifted = x * kLog2e + kRound;
  const float nf = shifted - kRound;  // round(x log2 e), exact
  // n in [-159, 144] sits in the low mantissa bits of `shifted` (two's complement offset by kRound).
  const std::uint32_t n = std::bit_cast<std::uint32_t>(shifted) - std::bit_cast<std::uint32_t>(kRound);
  const float r = (x - nf * kLn2Hi) - nf * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n = 2^n1 * 2^n2, n1 = n >> 1 (arithmetic), both in [-80, 72]: biased exponents in the normal range.
  const std::uint32_t n1 = static_cast<std::uint32_t>(static_cast<std::int32_t>(n) >> 1);
  const std::uint32_t n2 = n - n1;
  const float s1 = std::bit_cast<float>((n1 + 127u) << 23);
  const float s2 = std::bit_cast<float>((n2 + 127u) << 23);
  return p * s1 * s2;
}

// y[i] = exp_f32(x[i]) for i < n (y may alias x).
void exp_f32_array(const float* x, std::int64_t n, float* y);

// SwiGLU: out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] (out may alias gate or up).
void silu_mul(const float* gate, const float* up, std::int64_t n, float* out);

// max_i x[i] (-inf for n == 0); NaN elements are skipped (callers see them in the exp sum).
float max_f32(const float* x, std::int64_t n);

// sum_i exp(x[i] - shift), the terms in fp32, the sum in double.
double sum_exp_f32(const float* x, std::int64_t n, float shift);

// sum_i exp(a[i]) * (a[i] - b[i]) in double: KL(p || q) from log-probabilities a = log p, b = log q.
double kl_terms_f32(const float* a, const float* b, std::int64_t n);

// sum_i x[i]^2, the squares in fp32 (exact to 1/2 ulp), the sum in double.
double sum_squares_f32(const float* x, std::int64_t n);

}  // namespace hyperattn::model

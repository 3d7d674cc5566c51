// src/model/vector_math.cpp: see vector_math.hpp. Each loop is compiled for AVX-512, AVX2 and the
// baseline (core/simd.hpp) and dispatched on cpu::simd_level(), the library's one SIMD choice; the bodies are plain loops over exp_f32 that GCC vectorises
// (fixed-width lane blocks where a sum is kept in double, since a reduction is only vectorised when
// its lanes are independent).
#include "model/vector_math.hpp"

#include <limits>

#include "core/simd.hpp"
#include "cpu/attention_kernel.hpp"  // cpu::simd_level(): the library's one SIMD choice (HYPERATTN_ISA)

namespace hyperattn::model {
namespace {

// Elements per lane block of the reductions: one zmm of fp32, two of fp64.
constexpr std::int64_t kLanes = 16;

double sum_lanes(const double* acc) {
  double s = 0.0;
  for (std::int64_t j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

}  // namespace

[[gnu::always_inline]] static inline void exp_f32_array_body(const float* x, std::int64_t n, float* y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = exp_f32(x[i]);
}
HYPERATTN_SIMD_VARIANTS(void, exp_f32_array_body, (const float* x, std::int64_t n, float* y), (x, n, y))
void exp_f32_array(const float* x, std::int64_t n, float* y) { HYPERATTN_SIMD_DISPATCH(cpu::simd_level(), exp_f32_array_body, (x, n, y)); }

[[gnu::always_inline]] static inline void silu_mul_body(const float* gate, const float* up, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + exp_f32(-gate[i])) * up[i];
}
HYPERATTN_SIMD_VARIANTS(void, silu_mul_body, (const float* gate, const float* up, std::int64_t n, float* out), (gate, up, n, out))
void silu_mul(const float* gate, const float* up, std::int64_t n, float* out) { HYPERATTN_SIMD_DISPATCH(cpu::simd_level(), silu_mul_body, (gate, up, n, out)); }

[[gnu::always_inline]] static inline float max_f32_body(const float* x, std::int64_t n) {
  float acc[kLanes];  // [kLanes] running maxima of lanes i mod kLanes
  for (float& a : acc) a = -std::numeric_limits<float>::infinity();
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t j = 0; j < kLanes; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  }
  for (; i < n; ++i) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
  float m = acc[0];
  for (std::int64_t j = 1; j < kLanes; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}
HYPERATTN_SIMD_VARIANTS(float, max_f32_body, (const float* x, std::int64_t n), (x, n))
float max_f32(const float* x, std::int64_t n) { HYPERATTN_SIMD_DISPATCH(cpu::simd_level(), max_f32_body, (x, n)); }

[[gnu::always_inline]] static inline double sum_exp_f32_body(const float* x, std::int64_t n, float shift) {
  double acc[kLanes] = {};  // [kLanes] partial sums of lanes i mod kLanes
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(exp_f32(x[i + j] - shift));
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(exp_f32(x[i] - shift));
  return sum_lanes(acc);
}
HYPERATTN_SIMD_VARIANTS(double, sum_exp_f32_body, (const float* x, std::int64_t n, float shift), (x, n, shift))
double sum_exp_f32(const float* x, std::int64_t n, float shift) { HYPERATTN_SIMD_DISPATCH(cpu::simd_level(), sum_exp_f32_body, (x, n, shift)); }

[[gnu::always_inline]] static inline double kl_terms_f32_body(const float* a, const float* b, std::int64_t n) {
  double acc[kLanes] = {};  // [kLanes] partial sums of lanes i mod kLanes
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t j = 0; j < kLanes; ++j) {
      acc[j] += static_cast<double>(exp_f32(a[i + j])) * static_cast<double>(a[i + j] - b[i + j]);
    }
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(exp_f32(a[i])) * static_cast<double>(a[i] - b[i]);
  return sum_lanes(acc);
}
HYPERATTN_SIMD_VARIANTS(double, kl_terms_f32_body, (const float* a, const float* b, std::int64_t n), (a, b, n))
double kl_terms_f32(const float* a, const float* b, std::int64_t n) { HYPERATTN_SIMD_DISPATCH(cpu::simd_level(), kl_terms_f32_body, (a, b, n)); }

[[gnu::always_inline]] static inline double sum_squares_f32_body(const float* x, std::int64_t n) {
  double acc[kLanes] = {};  // [kLanes] partial sums of lanes i mod kLanes
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(x[i + j] * x[i + j]);
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i] * x[i]);
  return sum_lanes(acc);
}
HYPERATTN_SIMD_VARIANTS(double, sum_squares_f32_body, (const float* x, std::int64_t n), (x, n))
double sum_squares_f32(const float* x, std::int64_t n) { HYPERATTN_SIMD_DISPATCH(cpu::simd_level(), sum_squares_f32_body, (x, n)); }

}  // namespace hyperattn::model

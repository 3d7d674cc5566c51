// src/model/vector_math.cpp: see vector_math.hpp. Each loop is compiled for AVX-512, AVX2 and the
// baseline and dispatched at load time; the bodies are plain loops over exp_f32 that GCC vectorises
// (fixed-width lane blocks where a sum is kept in double, since a reduction is only vectorised when
// its lanes are independent).
#include "model/vector_math.hpp"

#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HYPERATTN_MODEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HYPERATTN_MODEL_CLONES
#endif

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

HYPERATTN_MODEL_CLONES
void exp_f32_array(const float* x, std::int64_t n, float* y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = exp_f32(x[i]);
}

HYPERATTN_MODEL_CLONES
void silu_mul(const float* gate, const float* up, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + exp_f32(-gate[i])) * up[i];
}

HYPERATTN_MODEL_CLONES
float max_f32(const float* x, std::int64_t n) {
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

HYPERATTN_MODEL_CLONES
double sum_exp_f32(const float* x, std::int64_t n, float shift) {
  double acc[kLanes] = {};  // [kLanes] partial sums of lanes i mod kLanes
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(exp_f32(x[i + j] - shift));
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(exp_f32(x[i] - shift));
  return sum_lanes(acc);
}

HYPERATTN_MODEL_CLONES
double kl_terms_f32(const float* a, const float* b, std::int64_t n) {
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

HYPERATTN_MODEL_CLONES
double sum_squares_f32(const float* x, std::int64_t n) {
  double acc[kLanes] = {};  // [kLanes] partial sums of lanes i mod kLanes
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(x[i + j] * x[i + j]);
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i] * x[i]);
  return sum_lanes(acc);
}

}  // namespace hyperattn::model

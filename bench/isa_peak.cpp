// bench/isa_peak.cpp: dependency-free loops that measure this machine's arithmetic peak per ISA,
// the denominators of the efficiency counters in bench_attention.cpp.
//   fma_f32: 12 independent accumulators of vfmadd231ps (enough to cover an FMA latency of 4
//            cycles times 2 pipes, plus slack); 2 FLOP per lane, ymm (AVX2 + FMA) or zmm (AVX-512 F).
//   dpbf16:  12 independent accumulators of vdpbf16ps; 4 FLOP per fp32 lane (two products, two adds).
// Each ISA in its own push_options region, its includes above it (docs/style.md), like src/cpu/isa/.
#include "isa_peak.hpp"

#include <immintrin.h>

// The loop body, one macro for every ISA: twelve chains of `op`, kept alive by an empty asm.
#define HYPERATTN_PEAK_LOOP(vec, zero_init, op, reduce)                                                         \
  vec a0 = zero_init(0.0f), a1 = zero_init(1e-3f), a2 = zero_init(2e-3f), a3 = zero_init(3e-3f);                \
  vec a4 = zero_init(4e-3f), a5 = zero_init(5e-3f), a6 = zero_init(6e-3f), a7 = zero_init(7e-3f);               \
  vec a8 = zero_init(8e-3f), a9 = zero_init(9e-3f), a10 = zero_init(1e-2f), a11 = zero_init(1.1e-2f);           \
  for (long it = 0; it < iterations; ++it) {                                                                   \
    a0 = op(a0); a1 = op(a1); a2 = op(a2); a3 = op(a3); a4 = op(a4); a5 = op(a5);                               \
    a6 = op(a6); a7 = op(a7); a8 = op(a8); a9 = op(a9); a10 = op(a10); a11 = op(a11);                           \
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7),      \
                     "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));                                                 \
  }                                                                                                            \
  return reduce(a0) + reduce(a1) + reduce(a2) + reduce(a3) + reduce(a4) + reduce(a5) + reduce(a6) +            \
         reduce(a7) + reduce(a8) + reduce(a9) + reduce(a10) + reduce(a11);

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace hyperattn::bench::avx2 {
namespace {
inline double first_lane(__m256 v) { return _mm256_cvtss_f32(v); }
}  // namespace
double fma_f32_loop(long iterations) {
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
#define HYPERATTN_OP(x) _mm256_fmadd_ps(x, a, b)
  HYPERATTN_PEAK_LOOP(__m256, _mm256_set1_ps, HYPERATTN_OP, first_lane)
#undef HYPERATTN_OP
}
}  // namespace hyperattn::bench::avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 intrinsics, GCC PR105593
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace hyperattn::bench::avx512 {
namespace {
inline double first_lane(__m512 v) { return _mm512_cvtss_f32(v); }
}  // namespace
double fma_f32_loop(long iterations) {
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
#define HYPERATTN_OP(x) _mm512_fmadd_ps(x, a, b)
  HYPERATTN_PEAK_LOOP(__m512, _mm512_set1_ps, HYPERATTN_OP, first_lane)
#undef HYPERATTN_OP
}
}  // namespace hyperattn::bench::avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bf16")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace hyperattn::bench::avx512bf16 {
namespace {
inline double first_lane(__m512 v) { return _mm512_cvtss_f32(v); }
}  // namespace
double dpbf16_loop(long iterations) {
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // bf16 ~6e-8
#define HYPERATTN_OP(x) _mm512_dpbf16_ps(x, a, b)
  HYPERATTN_PEAK_LOOP(__m512, _mm512_set1_ps, HYPERATTN_OP, first_lane)
#undef HYPERATTN_OP
}
}  // namespace hyperattn::bench::avx512bf16
#pragma GCC diagnostic pop
#pragma GCC pop_options

#undef HYPERATTN_PEAK_LOOP

namespace hyperattn::bench {

const char* peak_loop_name(PeakLoop loop) {
  switch (loop) {
    case PeakLoop::avx2_fma_f32: return "avx2_fma_f32";
    case PeakLoop::avx512_fma_f32: return "avx512_fma_f32";
    case PeakLoop::avx512_dpbf16: return "avx512_dpbf16";
  }
  return "?";
}

bool isa_peak_supported(PeakLoop loop) {
  __builtin_cpu_init();
  switch (loop) {
    case PeakLoop::avx2_fma_f32: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case PeakLoop::avx512_fma_f32: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case PeakLoop::avx512_dpbf16: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  }
  return false;
}

double flops_per_iteration(PeakLoop loop) {
  switch (loop) {
    case PeakLoop::avx2_fma_f32: return 12 * 8 * 2;
    case PeakLoop::avx512_fma_f32: return 12 * 16 * 2;
    case PeakLoop::avx512_dpbf16: return 12 * 16 * 4;
  }
  return 0;
}

double run_peak_loop(PeakLoop loop, long iterations) {
  switch (loop) {
    case PeakLoop::avx2_fma_f32: return avx2::fma_f32_loop(iterations);
    case PeakLoop::avx512_fma_f32: return avx512::fma_f32_loop(iterations);
    case PeakLoop::avx512_dpbf16: return avx512bf16::dpbf16_loop(iterations);
  }
  return 0;
}

}  // namespace hyperattn::bench

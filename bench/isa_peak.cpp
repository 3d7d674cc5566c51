// bench/isa_peak.cpp: dependency-free loops that measure this machine's arithmetic peak, the
// denominators of the efficiency counters in bench_attention.cpp.
//   fma_f32: 12 independent accumulators of vfmadd231ps (enough to cover the FMA latency of 4
//            cycles times 2 pipes, plus slack); 2 FLOP per lane.
//   dpbf16:  12 independent accumulators of vdpbf16ps; 4 FLOP per fp32 lane (two products, two adds).
// Each ISA in its own push_options region (docs/style.md), like src/cpu/isa/.
#include "isa_peak.hpp"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 intrinsics, GCC PR105593
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

namespace hyperattn::bench::avx512 {

#define HYPERATTN_FMA(x) _mm512_fmadd_ps(x, a, b)
#define HYPERATTN_DP(x) _mm512_dpbf16_ps(x, a, b)

double fma_f32_loop(long iterations) {
  __m512 a0 = _mm512_set1_ps(0.0f), a1 = _mm512_set1_ps(1e-3f), a2 = _mm512_set1_ps(2e-3f), a3 = _mm512_set1_ps(3e-3f);
  __m512 a4 = _mm512_set1_ps(4e-3f), a5 = _mm512_set1_ps(5e-3f), a6 = _mm512_set1_ps(6e-3f), a7 = _mm512_set1_ps(7e-3f);
  __m512 a8 = _mm512_set1_ps(8e-3f), a9 = _mm512_set1_ps(9e-3f), a10 = _mm512_set1_ps(1e-2f), a11 = _mm512_set1_ps(1.1e-2f);
  const __m512 a = _mm512_set1_ps(0.999999f);
  const __m512 b = _mm512_set1_ps(1e-7f);
  // Named registers (an array would be kept on the stack); the empty asm keeps every chain alive.
  for (long it = 0; it < iterations; ++it) {
    a0 = HYPERATTN_FMA(a0); a1 = HYPERATTN_FMA(a1); a2 = HYPERATTN_FMA(a2); a3 = HYPERATTN_FMA(a3); a4 = HYPERATTN_FMA(a4); a5 = HYPERATTN_FMA(a5);
    a6 = HYPERATTN_FMA(a6); a7 = HYPERATTN_FMA(a7); a8 = HYPERATTN_FMA(a8); a9 = HYPERATTN_FMA(a9); a10 = HYPERATTN_FMA(a10); a11 = HYPERATTN_FMA(a11);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                     "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
  }
  const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                   _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)),
                                                 _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11))));
  return _mm512_reduce_add_ps(sum);
}

double dpbf16_loop(long iterations) {
  __m512 a0 = _mm512_set1_ps(0.0f), a1 = _mm512_set1_ps(1e-3f), a2 = _mm512_set1_ps(2e-3f), a3 = _mm512_set1_ps(3e-3f);
  __m512 a4 = _mm512_set1_ps(4e-3f), a5 = _mm512_set1_ps(5e-3f), a6 = _mm512_set1_ps(6e-3f), a7 = _mm512_set1_ps(7e-3f);
  __m512 a8 = _mm512_set1_ps(8e-3f), a9 = _mm512_set1_ps(9e-3f), a10 = _mm512_set1_ps(1e-2f), a11 = _mm512_set1_ps(1.1e-2f);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // bf16 ~6e-8
  // Named registers (an array would be kept on the stack); the empty asm keeps every chain alive.
  for (long it = 0; it < iterations; ++it) {
    a0 = HYPERATTN_DP(a0); a1 = HYPERATTN_DP(a1); a2 = HYPERATTN_DP(a2); a3 = HYPERATTN_DP(a3); a4 = HYPERATTN_DP(a4); a5 = HYPERATTN_DP(a5);
    a6 = HYPERATTN_DP(a6); a7 = HYPERATTN_DP(a7); a8 = HYPERATTN_DP(a8); a9 = HYPERATTN_DP(a9); a10 = HYPERATTN_DP(a10); a11 = HYPERATTN_DP(a11);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                     "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
  }
  const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                   _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)),
                                                 _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11))));
  return _mm512_reduce_add_ps(sum);
}

#undef HYPERATTN_FMA
#undef HYPERATTN_DP

}  // namespace hyperattn::bench::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options

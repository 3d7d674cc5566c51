// bench/isa_peak.hpp: peak-measuring loops (bench/isa_peak.cpp). Call only where the CPU has
// AVX-512 F + BF16 (checked by the caller with __builtin_cpu_supports).
#pragma once

namespace hyperattn::bench::avx512 {

inline constexpr double kFmaF32FlopsPerIteration = 12 * 16 * 2;  // 12 zmm FMAs
inline constexpr double kDpbf16FlopsPerIteration = 12 * 16 * 4;  // 12 zmm bf16 pair dot products

// Returns a value derived from the accumulators (so the loop is not removed).
double fma_f32_loop(long iterations);
double dpbf16_loop(long iterations);

}  // namespace hyperattn::bench::avx512

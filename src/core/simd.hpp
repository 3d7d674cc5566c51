// src/core/simd.hpp: the one way to compile a loop outside the attention kernels (the LSH hashing,
// the model runner's element-wise passes) for several x86 vector ISAs and choose one at run time.
//
// A loop is written once as an always-inline body; HYPERATTN_SIMD_VARIANTS(ret, body, params, args)
// adds copies of it compiled for AVX-512 F (body_avx512) and AVX2 + FMA (body_avx2), with internal
// linkage (no copy can be shared with baseline code: docs/style.md), and HYPERATTN_SIMD_DISPATCH
// (level, body, args) calls the copy for `level`. Which level runs is the caller's argument: the
// library passes cpu::simd_level(), derived from the attention kernel chosen once (HYPERATTN_ISA or
// the best the CPU supports), so one variable steers every SIMD choice. Elsewhere (aarch64, clang)
// the body is the only copy.
#pragma once

#include <cstdint>

namespace hyperattn {

enum class SimdLevel : std::uint8_t { baseline, avx2, avx512 };

}  // namespace hyperattn

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HYPERATTN_SIMD_VARIANTS(ret, body, params, args)                         \
  namespace {                                                                    \
  [[gnu::target("avx512f")]] ret body##_avx512 params { return body args; }      \
  [[gnu::target("avx2,fma")]] ret body##_avx2 params { return body args; }       \
  }
#define HYPERATTN_SIMD_DISPATCH(level, body, args)                    \
  switch (level) {                                                    \
    case ::hyperattn::SimdLevel::avx512: return body##_avx512 args;   \
    case ::hyperattn::SimdLevel::avx2: return body##_avx2 args;       \
    case ::hyperattn::SimdLevel::baseline: break;                     \
  }                                                                   \
  return body args
#else
#define HYPERATTN_SIMD_VARIANTS(ret, body, params, args)
#define HYPERATTN_SIMD_DISPATCH(level, body, args) \
  (void)(level);                                   \
  return body args
#endif

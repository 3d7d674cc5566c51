// src/cpu/kernel_table.cpp: the kernel variants and the choice among them, made once.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cpu/attention_kernel.hpp"

namespace hyperattn::cpu {
namespace scalar {
extern const AttentionKernel kKernel;
}
#if defined(HYPERATTN_X86_KERNELS)
namespace avx2 {
extern const AttentionKernel kKernel;
}
namespace avx512 {
extern const AttentionKernel kKernel;
}
namespace avx512_nobf16 {
extern const AttentionKernel kKernel;
}
#endif
#if defined(HYPERATTN_NEON_KERNELS)
namespace neon {
extern const AttentionKernel kKernel;
}
#endif

namespace {

struct Variant {
  const AttentionKernel* kernel;
  bool (*supported)();
};

bool always() { return true; }

#if defined(HYPERATTN_X86_KERNELS)
// isa/avx512.cpp is compiled for AVX-512 F/BW/VL/DQ + FMA, with BF16 (vdpbf16ps) as "avx512" and
// without it as "avx512_nobf16" (isa/avx512_nobf16.cpp).
bool has_avx512() {
  __builtin_cpu_init();  // harmless when already done; needed if called before main
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
}
bool has_avx512_bf16() { return has_avx512() && __builtin_cpu_supports("avx512bf16"); }
bool has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

// Best first.
const Variant kVariants[] = {
#if defined(HYPERATTN_X86_KERNELS)
    {&avx512::kKernel, &has_avx512_bf16},
    {&avx512_nobf16::kKernel, &has_avx512},
    {&avx2::kKernel, &has_avx2_fma},
#endif
#if defined(HYPERATTN_NEON_KERNELS)
    {&neon::kKernel, &always},  // AArch64: NEON is always there
#endif
    {&scalar::kKernel, &always},
};

const AttentionKernel& choose() {
  const char* forced = std::getenv("HYPERATTN_ISA");
  if (forced && *forced) {
    if (const AttentionKernel* k = kernel_by_name(forced)) return *k;
    std::fprintf(stderr, "hyperattn: HYPERATTN_ISA=%s is unknown or unsupported on this CPU; using the best supported kernel\n", forced);
  }
  for (const Variant& v : kVariants)
    if (v.supported()) return *v.kernel;
  return scalar::kKernel;
}

}  // namespace

const AttentionKernel& best_kernel() {
  static const AttentionKernel& chosen = choose();
  return chosen;
}

const AttentionKernel& strict_kernel() { return scalar::kKernel; }

SimdLevel simd_level() {
  static const SimdLevel level = [] {
    const char* name = best_kernel().name;
    if (std::strncmp(name, "avx512", 6) == 0) return SimdLevel::avx512;
    if (std::strcmp(name, "avx2") == 0) return SimdLevel::avx2;
    return SimdLevel::baseline;
  }();
  return level;
}

int supported_kernels(const AttentionKernel** out, int capacity) {
  int n = 0;
  for (const Variant& v : kVariants)
    if (v.supported() && n < capacity) out[n++] = v.kernel;
  return n;
}

const AttentionKernel* kernel_by_name(const char* name) {
  for (const Variant& v : kVariants)
    if (std::strcmp(v.kernel->name, name) == 0 && v.supported()) return v.kernel;
  return nullptr;
}

}  // namespace hyperattn::cpu

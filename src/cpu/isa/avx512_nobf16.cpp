// src/cpu/isa/avx512_nobf16.cpp: the "avx512_nobf16" kernel, isa/avx512.cpp compiled for AVX-512
// F/BW/VL/DQ without BF16 (Intel Skylake-SP, Cascade Lake, Ice Lake; before this kernel such CPUs
// ran the AVX2 one at half the vector width). bf16 input is widened to fp32 while packing.
#define HYPERATTN_AVX512_BF16 0
#include "cpu/isa/avx512.cpp"  // NOLINT(bugprone-suspicious-include): one kernel source, two targets

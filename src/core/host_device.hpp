// src/core/host_device.hpp: HYPERATTN_HD marks the plan layer's rules that CUDA device code calls
// too (core/key_selection.hpp, core/lse_merge.hpp): __host__ __device__ under nvcc, nothing else.
#pragma once

#if defined(__CUDACC__)
#define HYPERATTN_HD __host__ __device__
#else
#define HYPERATTN_HD
#endif

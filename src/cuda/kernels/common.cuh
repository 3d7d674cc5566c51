// src/cuda/kernels/common.cuh: device helpers shared by the attention kernels: element
// conversion, the row and key addressing of a tile (sorted blocks, sampled keys, causal mask),
// and the output epilogue (direct write, or log-sum-exp merge into the fp32 accumulator).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/lse_merge.hpp"
#include "core/random.hpp"
#include "cuda/device_types.hpp"
#include "cuda/tile_keys.hpp"

namespace hyperattn::cuda {


__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// Element i of a tensor whose dtype is known only at run time (DType: 0 f32, 1 bf16, 2 f16).
__device__ __forceinline__ float load_any(const void* base, int dtype, std::int64_t i) {
  if (dtype == 0) return static_cast<const float*>(base)[i];
  if (dtype == 1) return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
  return __half2float(static_cast<const __half*>(base)[i]);
}
__device__ __forceinline__ void store_any(void* base, int dtype, std::int64_t i, float x) {
  if (dtype == 0) static_cast<float*>(base)[i] = x;
  else if (dtype == 1) static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(x);
  else static_cast<__half*>(base)[i] = __float2half_rn(x);
}

// Writes one row's result (values already divided by the row sum) with natural-log LSE `lse`
// (-inf for an empty key set: the values must then be 0). T = void: the output dtype is p.dtype.
template <typename T>
struct RowWriter {
  const AttentionParams& p;
  const HeadIndex& h;
  std::int64_t position;
  float lse;

  // The weights of the new part and of the accumulated one (normalised: acc = w_new value +
  // w_old acc), and the merged LSE, by the rule of core/lse_merge.hpp (shared with the CPU).
  __device__ __forceinline__ void merge_weights(float* w_new, float* w_old, float* merged) const {
    const float old = p.acc_lse[static_cast<std::int64_t>(h.bh_q) * p.seq_q + position];
    const core::LseMerge m = core::lse_merge(old, lse);
    *w_new = m.w_new * m.inv;
    *w_old = m.w_old * m.inv;
    *merged = m.lse;
  }

  __device__ __forceinline__ void write(int dim, float value, float w_new, float w_old) const {
    if (p.direct) {
      const std::int64_t i = h.batch * p.out_stride[0] + h.head_q * p.out_stride[1] + position * p.out_stride[2] + dim;
      if constexpr (std::is_void_v<T>) {
        store_any(p.out, p.dtype, i, value);
      } else {
        static_cast<T*>(p.out)[i] = from_float<T>(value);
      }
      return;
    }
    float* acc = p.acc_o + (static_cast<std::int64_t>(h.bh_q) * p.seq_q + position) * p.head_dim;
    acc[dim] = p.merge ? w_new * value + w_old * acc[dim] : value;
  }

  // Called once per row (by one thread) after every dim is written.
  __device__ __forceinline__ void write_lse(float merged) const {
    if (p.direct) {
      if (p.lse)
        p.lse[h.batch * p.lse_stride[0] + h.head_q * p.lse_stride[1] + position * p.lse_stride[2]] = lse;
      return;
    }
    p.acc_lse[static_cast<std::int64_t>(h.bh_q) * p.seq_q + position] = p.merge ? merged : lse;
  }
};

}  // namespace hyperattn::cuda

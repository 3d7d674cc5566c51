// src/cuda/kernels/fill.cu: device-side random fill (normal samples by Box-Muller on counter-based
// bits), so that benchmarks at n = 131072 do not upload gigabytes from the host.
#include <cuda_runtime.h>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.hpp"

namespace hyperattn::cuda {
namespace {

template <typename T>
__global__ void fill_normal_kernel(T* data, std::int64_t n, std::uint64_t seed, float stddev) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const std::uint64_t b1 = rng::mix64(seed ^ rng::mix64(2 * static_cast<std::uint64_t>(i)));
  const std::uint64_t b2 = rng::mix64(seed ^ rng::mix64(2 * static_cast<std::uint64_t>(i) + 1));
  const float u1 = 1.0f - static_cast<float>(b1 >> 40) * 0x1.0p-24f;  // (0, 1]
  const float u2 = static_cast<float>(b2 >> 40) * 0x1.0p-24f;
  data[i] = from_float<T>(stddev * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
}

}  // namespace

int launch_fill_normal(DType dtype, void* data, std::int64_t n, std::uint64_t seed, float stddev, void* stream) {
  if (n == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  const auto blocks = static_cast<unsigned>((n + threads - 1) / threads);
  switch (dtype) {
    case DType::f32: fill_normal_kernel<<<blocks, threads, 0, s>>>(static_cast<float*>(data), n, seed, stddev); break;
    case DType::bf16: fill_normal_kernel<<<blocks, threads, 0, s>>>(static_cast<__nv_bfloat16*>(data), n, seed, stddev); break;
    case DType::f16: fill_normal_kernel<<<blocks, threads, 0, s>>>(static_cast<__half*>(data), n, seed, stddev); break;
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace hyperattn::cuda

// src/cuda/kernels/selftest.cu: device evaluations of the host-shared counter code, for
// tests/cuda/test_cuda_random.cpp (the kernels call core/random.hpp's constexpr functions in
// device code; this checks they give the host's bits).
#include <cuda_runtime.h>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.hpp"

namespace hyperattn::cuda {
namespace {

__global__ void random_selftest_kernel(std::uint64_t seed, std::uint64_t subproblem, std::uint64_t n,
                                       std::uint64_t range, std::uint64_t* bits, std::uint64_t* uniform) {
  const std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  bits[i] = rng::bits(seed, rng::Stream::sample, i % 3, i % 7, subproblem, i / 5, i);
  uniform[i] = rng::uniform_below(bits[i], range + i);
}

}  // namespace

int launch_random_selftest(std::uint64_t seed, std::uint64_t subproblem, std::uint64_t n, std::uint64_t range,
                           std::uint64_t* bits, std::uint64_t* uniform) {
  random_selftest_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(seed, subproblem, n, range, bits, uniform);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace hyperattn::cuda

// tests/cuda/test_cuda_random.cpp: the counter-based streams of core/random.hpp evaluated on the
// device (as the attention kernels call them) equal the host values bit for bit.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/random.hpp"
#include "cuda/kernels/kernels.hpp"
#include "hyperattn/cuda.hpp"

namespace {

using hyperattn::rng::Stream;

TEST(CudaRandom, DeviceCountersEqualHost) {
  if (!hyperattn::cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const std::uint64_t n = 4096, seed = 0x1234567890abcdefull, range = 131072 - 512;
  const std::uint64_t subproblem = hyperattn::rng::subproblem_id(65536, 32768);
  std::uint64_t *d_bits = nullptr, *d_uniform = nullptr;
  ASSERT_EQ(cudaMalloc(&d_bits, n * 8), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_uniform, n * 8), cudaSuccess);
  ASSERT_EQ(hyperattn::cuda::launch_random_selftest(seed, subproblem, n, range, d_bits, d_uniform), 0);
  std::vector<std::uint64_t> bits(n), uniform(n);
  ASSERT_EQ(cudaMemcpy(bits.data(), d_bits, n * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(uniform.data(), d_uniform, n * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_bits);
  cudaFree(d_uniform);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t b = hyperattn::rng::bits(seed, Stream::sample, i % 3, i % 7, subproblem, i / 5, i);
    ASSERT_EQ(bits[i], b) << "counter " << i;
    ASSERT_EQ(uniform[i], hyperattn::rng::uniform_below(b, range + i)) << "counter " << i;
  }
}

}  // namespace

// src/cuda/kernels/lsh.cu: sortLSH on the device: the fused hash (projection, sign bits, bucket
// order), the per-phase sort keys, the stable CUB radix sort, and the block diagnostics.
//
// The sign bits are bit-identical to lsh::sign_bits_* on the CPU: each dot product is summed in
// double in index order, every fp32 x fp32 product being exact in double (explicit __dmul_rn /
// __dadd_rn: no contraction, although an FMA would round the same way since the product is exact).
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include "core/lsh.hpp"
#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.hpp"

namespace hyperattn::cuda {
namespace {

constexpr int kMaxLshBits = 16;

template <typename T>
__global__ void hash_kernel(const HashParams p) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.heads * p.seq;
  if (idx >= rows) return;
  const std::int64_t bh = idx / p.seq, i = idx % p.seq;
  const std::int64_t batch = bh / p.heads, head = bh % p.heads;
  const std::int64_t head_kv = head / p.group;
  const T* x = static_cast<const T*>(p.x) + batch * p.stride[0] + head * p.stride[1] + i * p.stride[2];
  const float* proj = p.proj + (batch * p.heads_kv + head_kv) * p.head_dim * p.lsh_bits;  // [head_dim, lsh_bits]
  double dot[kMaxLshBits];
#pragma unroll
  for (int t = 0; t < kMaxLshBits; ++t) dot[t] = 0.0;
  for (int c = 0; c < p.head_dim; ++c) {
    const double xc = static_cast<double>(to_float(x[c]));
    const float* gc = proj + static_cast<std::int64_t>(c) * p.lsh_bits;
#pragma unroll
    for (int t = 0; t < kMaxLshBits; ++t)
      if (t < p.lsh_bits) dot[t] = __dadd_rn(dot[t], __dmul_rn(xc, static_cast<double>(gc[t])));
  }
  std::uint32_t bits = 0;
#pragma unroll
  for (int t = 0; t < kMaxLshBits; ++t)
    if (t < p.lsh_bits) bits |= static_cast<std::uint32_t>(dot[t] > 0.0) << t;
  p.bucket[idx] = p.reference_gray ? lsh::gray_code(bits) : lsh::gray_rank(bits);
}

__global__ void sort_key_kernel(const SortKeyParams p) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= p.heads_rows * p.row_len) return;
  const std::int64_t row = idx / p.row_len, pos = idx % p.row_len;
  // The problem whose packed range holds pos (few problems per phase: a linear scan).
  int i = 0;
  while (i + 1 < p.count && p.ranges[3 * (i + 1) + 2] <= pos) ++i;
  const std::int64_t start = p.ranges[3 * i], offset = p.ranges[3 * i + 2];
  const std::int64_t r = pos - offset;
  const std::uint64_t segment = static_cast<std::uint64_t>(row) * p.count + i;
  p.key[idx] = (segment << p.lsh_bits) | p.bucket[row * p.seq + start + r];
  p.value[idx] = static_cast<std::int32_t>(r);
}

__global__ void scatter_blocks_kernel(const std::int32_t* perm, std::int64_t rows, std::int64_t n,
                                      std::int64_t out_offset, std::int64_t out_row_len, std::int64_t blocks,
                                      std::int64_t block_size, int proportional, std::int32_t* out) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= rows * n) return;
  const std::int64_t row = idx / n, s = idx % n;
  std::int64_t block;
  if (proportional) {
    // the largest beta with floor(beta * n / blocks) <= s
    block = ((s + 1) * blocks - 1) / n;
    while (block > 0 && (block * n) / blocks > s) --block;
    while (block + 1 < blocks && ((block + 1) * n) / blocks <= s) ++block;
  } else {
    block = s / block_size;
  }
  out[row * out_row_len + out_offset + perm[idx]] = static_cast<std::int32_t>(block);
}

unsigned grid_for(std::int64_t items, int threads) {
  return static_cast<unsigned>((items + threads - 1) / threads);
}

}  // namespace

int launch_hash(DType dtype, const HashParams& params, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const std::int64_t rows = static_cast<std::int64_t>(params.batch) * params.heads * params.seq;
  if (rows == 0) return 0;
  const int threads = 128;
  switch (dtype) {
    case DType::f32: hash_kernel<float><<<grid_for(rows, threads), threads, 0, s>>>(params); break;
    case DType::bf16: hash_kernel<__nv_bfloat16><<<grid_for(rows, threads), threads, 0, s>>>(params); break;
    case DType::f16: hash_kernel<__half><<<grid_for(rows, threads), threads, 0, s>>>(params); break;
  }
  return static_cast<int>(cudaGetLastError());
}

int launch_sort_keys(const SortKeyParams& params, void* stream) {
  const std::int64_t items = params.heads_rows * params.row_len;
  if (items == 0) return 0;
  sort_key_kernel<<<grid_for(items, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(params);
  return static_cast<int>(cudaGetLastError());
}

int radix_sort_pairs(void* temp, std::size_t* temp_bytes, const std::uint64_t* keys_in, std::uint64_t* keys_out,
                     const std::int32_t* values_in, std::int32_t* values_out, std::int64_t items, int end_bit,
                     void* stream) {
  return static_cast<int>(cub::DeviceRadixSort::SortPairs(temp, *temp_bytes, keys_in, keys_out, values_in,
                                                          values_out, items, 0, end_bit,
                                                          static_cast<cudaStream_t>(stream)));
}

int launch_scatter_blocks(const std::int32_t* perm, std::int64_t rows, std::int64_t n, std::int64_t out_offset,
                          std::int64_t out_row_len, std::int64_t blocks, std::int64_t block_size, int proportional,
                          std::int32_t* out, void* stream) {
  if (rows * n == 0) return 0;
  scatter_blocks_kernel<<<grid_for(rows * n, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
      perm, rows, n, out_offset, out_row_len, blocks, block_size, proportional, out);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace hyperattn::cuda

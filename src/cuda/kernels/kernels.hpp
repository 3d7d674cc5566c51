// src/cuda/kernels/kernels.hpp: the launchers of the CUDA kernels (host-callable, no CUDA types).
// Each returns the cudaError_t of its launch as an int (0 = success); none synchronises.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/device_types.hpp"
#include "hyperattn/tensor.hpp"

namespace hyperattn::cuda {

// Which attention kernel runs a launch.
enum class KernelKind : int {
  simple,  // CUDA cores, fp32, any dtype, head_dim <= 256
  mma,     // tensor cores (mma.sync m16n8k16), bf16/f16, head_dim 64 or 128, 16-byte aligned rows
  mma_pipelined,  // the same with cp.async double buffering (opt-in until measured)
};

// Whether the tensor-core kernel supports this dtype / head_dim.
bool mma_supported(DType dtype, int head_dim);

// Grid (num_tiles, batch_heads_q). The mma launcher requires mma_supported(dtype, head_dim) and
// 16-byte aligned q/k/v rows (base pointers and every stride a multiple of 8 elements).
int launch_attention_simple(DType dtype, const AttentionParams& params, int num_tiles, int batch_heads_q,
                            void* stream);
int launch_attention_mma(DType dtype, const AttentionParams& params, int num_tiles, int batch_heads_q,
                         void* stream);
// The same with a two-stage cp.async pipeline and ldmatrix (same requirements).
int launch_attention_mma_pipelined(DType dtype, const AttentionParams& params, int num_tiles, int batch_heads_q,
                                   void* stream);

// acc [batch*heads_q, seq_q, head_dim] fp32, acc_lse [batch*heads_q, seq_q] -> out (dtype), lse.
int launch_finalize(DType dtype, const AttentionParams& params, int batch, void* stream);

// Bucket of every row of x [batch, heads, seq, head_dim] (strides in elements):
// bucket[(b * heads + h) * seq + i] = bucket_of(sign_bits(x[b, h, i], proj[b, h / group])).
// proj: [batch, heads_kv, head_dim, lsh_bits] fp32.
struct HashParams {
  const void* x = nullptr;
  std::int64_t stride[3] = {0, 0, 0};
  int batch = 0, heads = 0, group = 1, heads_kv = 0, head_dim = 0, lsh_bits = 0;
  std::int64_t seq = 0;
  const float* proj = nullptr;
  int reference_gray = 0;
  std::uint32_t* bucket = nullptr;  // [batch * heads, seq]
};
int launch_hash(DType dtype, const HashParams& params, void* stream);

// Sort keys of one phase: for each head row (heads rows in all) and each approximated problem
// i (ranges [start_i, start_i + len_i) of positions, packed at offset_i of a row of `row_len`):
//   key[row * row_len + offset_i + r] = ((row * count + i) << lsh_bits) | bucket[row * seq + start_i + r]
//   value[...] = r
struct SortKeyParams {
  const std::uint32_t* bucket = nullptr;  // [heads_rows, seq]
  std::int64_t seq = 0;
  const std::int64_t* ranges = nullptr;   // [count, 3]: start, len, offset (device)
  int count = 0;
  std::int64_t row_len = 0;
  int heads_rows = 0;
  int lsh_bits = 0;
  std::uint64_t* key = nullptr;   // [heads_rows, row_len]
  std::int32_t* value = nullptr;  // [heads_rows, row_len]
};
int launch_sort_keys(const SortKeyParams& params, void* stream);

// Stable radix sort of (key, value) pairs on the low `end_bit` bits (CUB). temp == nullptr:
// *temp_bytes receives the scratch size.
int radix_sort_pairs(void* temp, std::size_t* temp_bytes, const std::uint64_t* keys_in,
                     std::uint64_t* keys_out, const std::int32_t* values_in, std::int32_t* values_out,
                     std::int64_t items, int end_bit, void* stream);

// Diagnostics: out[row * out_row_len + out_offset + perm[row * n + s]] = block of sorted position s,
// for rows x n sorted positions (queries: the proportional cut into `blocks`; keys: s / block_size).
int launch_scatter_blocks(const std::int32_t* perm, std::int64_t rows, std::int64_t n, std::int64_t out_offset,
                          std::int64_t out_row_len, std::int64_t blocks, std::int64_t block_size, int proportional,
                          std::int32_t* out, void* stream);

// Fills n elements of `data` (dtype) with normal samples of standard deviation `stddev`, a pure
// function of (seed, index) (benchmarks and tests: never zeros).
int launch_fill_normal(DType dtype, void* data, std::int64_t n, std::uint64_t seed, float stddev, void* stream);

// Test hook: bits[i] = rng::bits(seed, sample, i % 3, i % 7, subproblem, i / 5, i) and
// uniform[i] = rng::uniform_below(bits[i], range + i), computed on the device (default stream).
int launch_random_selftest(std::uint64_t seed, std::uint64_t subproblem, std::uint64_t n, std::uint64_t range,
                           std::uint64_t* bits, std::uint64_t* uniform);

}  // namespace hyperattn::cuda

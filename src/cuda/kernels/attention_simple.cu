// src/cuda/kernels/attention_simple.cu: the CUDA-core attention kernel (fp32 arithmetic, any
// dtype, head_dim <= 256) and the finalize kernel (fp32 accumulator -> output dtype).
//
// The dtype is read at run time (one instantiation per head-dim bound: this is the fallback, and
// 3 instead of 9 instantiations keep the CI compile short).
// One thread block per (tile of kTileRows query rows, batch * head_q). TPR threads share a row,
// each holding head_dim / TPR of its dims (dim c = part + TPR * i) of q and of the output. Keys
// are staged kKeys at a time in shared memory as fp32; online softmax in the log2 domain.
#include <cuda_runtime.h>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.hpp"

namespace hyperattn::cuda {
namespace {

template <int kMaxDim, int kThreadsPerRow, int kKeys>
__global__ void __launch_bounds__(kTileRows * kThreadsPerRow)
    attention_simple_kernel(const AttentionParams p) {
  constexpr int kThreads = kTileRows * kThreadsPerRow;
  constexpr int kDimsPerThread = kMaxDim / kThreadsPerRow;
  __shared__ float k_tile[kKeys][kMaxDim];  // [keys, head_dim]
  __shared__ float v_tile[kKeys][kMaxDim];  // [keys, head_dim]
  __shared__ float bias_tile[kKeys];        // [keys] log2 domain
  __shared__ std::int64_t key_position[kKeys];  // [keys] absolute, -1: none

  const Tile tile = p.tiles[blockIdx.x];
  const Problem pr = p.problems[tile.problem];
  const HeadIndex h = head_index(p, blockIdx.y);
  const int d = p.head_dim;
  const int row = threadIdx.x / kThreadsPerRow;
  const int part = threadIdx.x % kThreadsPerRow;
  const std::int64_t local_row = tile.row_begin + row;
  const bool valid_row = local_row < tile.row_end;
  const std::int64_t position = valid_row ? row_position(p, pr, h, local_row) : 0;

  float q[kDimsPerThread];  // this thread's dims of the query row, times scale * log2(e)
  {
    const std::int64_t qrow = h.batch * p.q_stride[0] + h.head_q * p.q_stride[1] + position * p.q_stride[2];
#pragma unroll
    for (int i = 0; i < kDimsPerThread; ++i) {
      const int c = part + kThreadsPerRow * i;
      q[i] = (valid_row && c < d) ? load_any(p.q, p.dtype, qrow + c) * p.scale_log2 : 0.0f;
    }
  }
  float o[kDimsPerThread];
#pragma unroll
  for (int i = 0; i < kDimsPerThread; ++i) o[i] = 0.0f;
  float row_max = -INFINITY, row_sum = 0.0f;

  const std::int64_t key_count = tile_key_count(p, pr, tile);
  const std::int64_t kbase = h.batch * p.k_stride[0] + h.head_kv * p.k_stride[1];
  const std::int64_t vbase = h.batch * p.v_stride[0] + h.head_kv * p.v_stride[1];
  for (std::int64_t key0 = 0; key0 < key_count; key0 += kKeys) {
    __syncthreads();  // the previous tile is consumed
    if (threadIdx.x < kKeys) {
      const std::int64_t j = key0 + threadIdx.x;
      std::int64_t kp = -1;
      float bias = 0.0f;
      if (j < key_count) tile_key(p, pr, tile, h, j, &kp, &bias);
      key_position[threadIdx.x] = kp;
      bias_tile[threadIdx.x] = bias;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kKeys * kMaxDim; idx += kThreads) {
      const int jj = idx / kMaxDim, c = idx % kMaxDim;
      const std::int64_t kp = key_position[jj];
      const bool ok = kp >= 0 && c < d;
      k_tile[jj][c] = ok ? load_any(p.k, p.dtype, kbase + kp * p.k_stride[2] + c) : 0.0f;
      v_tile[jj][c] = ok ? load_any(p.v, p.dtype, vbase + kp * p.v_stride[2] + c) : 0.0f;
    }
    __syncthreads();

    float s[kKeys];
    float tile_max = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kKeys; ++jj) {
      float partial = 0.0f;
#pragma unroll
      for (int i = 0; i < kDimsPerThread; ++i) partial += q[i] * k_tile[jj][part + kThreadsPerRow * i];
#pragma unroll
      for (int off = 1; off < kThreadsPerRow; off <<= 1) partial += __shfl_xor_sync(0xffffffffu, partial, off);
      const std::int64_t key_local = key0 + jj;
      bool visible = key_position[jj] >= 0;
      if (!pr.lsh && pr.causal_diagonal < kNoMask) visible = visible && key_local <= local_row + pr.causal_diagonal;
      s[jj] = visible ? partial + bias_tile[jj] : -INFINITY;
      tile_max = fmaxf(tile_max, s[jj]);
    }
    const float new_max = fmaxf(row_max, tile_max);
    if (new_max == -INFINITY) continue;  // nothing visible yet for this row
    const float correction = exp2f(row_max - new_max);
    row_sum *= correction;
#pragma unroll
    for (int i = 0; i < kDimsPerThread; ++i) o[i] *= correction;
#pragma unroll
    for (int jj = 0; jj < kKeys; ++jj) {
      const float pj = exp2f(s[jj] - new_max);
      row_sum += pj;
#pragma unroll
      for (int i = 0; i < kDimsPerThread; ++i) o[i] += pj * v_tile[jj][part + kThreadsPerRow * i];
    }
    row_max = new_max;
  }

  // Epilogue: an empty row (row_sum 0) has LSE -inf and output 0.
  const float lse = row_sum > 0.0f ? (row_max + log2f(row_sum)) * kLn2 : -INFINITY;
  const float inv = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;
  RowWriter<void> writer{p, h, position, lse};
  float w_new = 1.0f, w_old = 0.0f, merged = lse;
  if (valid_row && !p.direct && p.merge) writer.merge_weights(&w_new, &w_old, &merged);
  __syncthreads();  // every thread of the row has read the old LSE
  if (!valid_row) return;
#pragma unroll
  for (int i = 0; i < kDimsPerThread; ++i) {
    const int c = part + kThreadsPerRow * i;
    if (c < d) writer.write(c, o[i] * inv, w_new, w_old);
  }
  if (part == 0) writer.write_lse(merged);
}

template <typename T>
__global__ void finalize_kernel(const AttentionParams p, std::int64_t rows) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= rows * p.head_dim) return;
  const std::int64_t row = idx / p.head_dim;  // bh_q * seq_q + position
  const int c = static_cast<int>(idx % p.head_dim);
  const std::int64_t bh = row / p.seq_q, position = row % p.seq_q;
  const std::int64_t batch = bh / p.heads_q, head = bh % p.heads_q;
  T* out = static_cast<T*>(p.out) + batch * p.out_stride[0] + head * p.out_stride[1] + position * p.out_stride[2];
  out[c] = from_float<T>(p.acc_o[idx]);
  if (c == 0 && p.lse)
    p.lse[batch * p.lse_stride[0] + head * p.lse_stride[1] + position * p.lse_stride[2]] = p.acc_lse[row];
}

template <int kMaxDim, int kThreadsPerRow, int kKeys>
int launch_simple_t(const AttentionParams& params, int num_tiles, int batch_heads_q, cudaStream_t stream) {
  attention_simple_kernel<kMaxDim, kThreadsPerRow, kKeys>
      <<<dim3(num_tiles, batch_heads_q), kTileRows * kThreadsPerRow, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

int launch_simple_dim(const AttentionParams& params, int num_tiles, int batch_heads_q, cudaStream_t stream) {
  const int d = params.head_dim;
  if (d <= 64) return launch_simple_t<64, 2, 32>(params, num_tiles, batch_heads_q, stream);
  if (d <= 128) return launch_simple_t<128, 2, 32>(params, num_tiles, batch_heads_q, stream);
  return launch_simple_t<256, 4, 16>(params, num_tiles, batch_heads_q, stream);
}

}  // namespace

int launch_attention_simple(DType dtype, const AttentionParams& params, int num_tiles, int batch_heads_q,
                            void* stream) {
  AttentionParams p = params;
  p.dtype = static_cast<int>(dtype);
  return launch_simple_dim(p, num_tiles, batch_heads_q, static_cast<cudaStream_t>(stream));
}

int launch_finalize(DType dtype, const AttentionParams& params, int batch, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const std::int64_t rows = static_cast<std::int64_t>(batch) * params.heads_q * params.seq_q;
  const std::int64_t total = rows * params.head_dim;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  switch (dtype) {
    case DType::f32: finalize_kernel<float><<<blocks, threads, 0, s>>>(params, rows); break;
    case DType::bf16: finalize_kernel<__nv_bfloat16><<<blocks, threads, 0, s>>>(params, rows); break;
    case DType::f16: finalize_kernel<__half><<<blocks, threads, 0, s>>>(params, rows); break;
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace hyperattn::cuda

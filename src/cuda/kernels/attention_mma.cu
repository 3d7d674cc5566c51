// src/cuda/kernels/attention_mma.cu: the tensor-core attention kernel (bf16 / f16 inputs, head_dim
// 64 or 128, fp32 accumulation) with mma.sync.m16n8k16 (sm_80 and later).
//
// One thread block of 4 warps per (tile of kTileRows = 64 query rows, batch * head_q); warp w owns
// rows [16w, 16w + 16). Q fragments stay in registers; keys come kKeys = 64 at a time (gathered
// through the sorted order and the samples by tile_key) into shared memory: K row-major
// [keys, head_dim] in the buffer Q was staged in, V transposed [head_dim, keys], both padded by 8
// elements so that the 32-bit fragment loads are free of bank conflicts. S = Q K^T, the online
// softmax in the log2 domain, then P (rounded to the input type, the FlashAttention-2 register
// reuse of the S accumulator as the A operand) times V.
#include <cuda_runtime.h>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.hpp"
#include "cuda/kernels/mma_common.cuh"

namespace hyperattn::cuda {
namespace {

template <typename T, int kDim>
__global__ void __launch_bounds__(128) attention_mma_kernel(const AttentionParams p) {
  constexpr int kKeys = 64;
  constexpr int kStride = kDim + 8;     // elements per row of the Q / K tile
  constexpr int kVtStride = kKeys + 8;  // elements per row of the transposed V tile
  constexpr int kVecs = kDim / 8;       // 16-byte vectors per row
  __shared__ __align__(16) T qk_tile[kTileRows * kStride];  // [rows or keys, head_dim]
  __shared__ __align__(16) T vt_tile[kDim * kVtStride];     // [head_dim, keys]
  __shared__ std::int64_t row_pos[kTileRows];               // [rows] absolute, -1: none
  __shared__ std::int64_t key_pos[kKeys];                   // [keys] absolute, -1: none
  __shared__ float key_bias[kKeys];                         // [keys] log2 domain

  const Tile tile = p.tiles[blockIdx.x];
  const Problem pr = p.problems[tile.problem];
  const HeadIndex h = head_index(p, blockIdx.y);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;

  if (tid < kTileRows) {
    const std::int64_t r = tile.row_begin + tid;
    row_pos[tid] = r < tile.row_end ? row_position(p, pr, h, r) : -1;
  }
  __syncthreads();
  const T* qbase = static_cast<const T*>(p.q) + h.batch * p.q_stride[0] + h.head_q * p.q_stride[1];
  for (int idx = tid; idx < kTileRows * kVecs; idx += 128) {
    const int r = idx / kVecs, vv = idx % kVecs;
    const std::int64_t pos = row_pos[r];
    uint4 val = make_uint4(0, 0, 0, 0);
    if (pos >= 0) val = *reinterpret_cast<const uint4*>(qbase + pos * p.q_stride[2] + vv * 8);
    *reinterpret_cast<uint4*>(&qk_tile[r * kStride + vv * 8]) = val;
  }
  __syncthreads();
  const int r0 = warp * 16 + g;  // this thread's rows r0 and r0 + 8 of the tile
  std::uint32_t qf[kDim / 16][4];
#pragma unroll
  for (int kc = 0; kc < kDim / 16; ++kc) {
    qf[kc][0] = load32(&qk_tile[r0 * kStride + 16 * kc + 2 * t]);
    qf[kc][1] = load32(&qk_tile[(r0 + 8) * kStride + 16 * kc + 2 * t]);
    qf[kc][2] = load32(&qk_tile[r0 * kStride + 16 * kc + 8 + 2 * t]);
    qf[kc][3] = load32(&qk_tile[(r0 + 8) * kStride + 16 * kc + 8 + 2 * t]);
  }
  float o[kDim / 8][4];
#pragma unroll
  for (int dn = 0; dn < kDim / 8; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // this thread's partial sums (reduced over the quad at the end)
  const std::int64_t local_row[2] = {tile.row_begin + r0, tile.row_begin + r0 + 8};
  const bool causal = !pr.lsh && pr.causal_diagonal < kNoMask;

  const std::int64_t key_count = tile_key_count(p, pr, tile);
  const T* kbase = static_cast<const T*>(p.k) + h.batch * p.k_stride[0] + h.head_kv * p.k_stride[1];
  const T* vbase = static_cast<const T*>(p.v) + h.batch * p.v_stride[0] + h.head_kv * p.v_stride[1];
  for (std::int64_t key0 = 0; key0 < key_count; key0 += kKeys) {
    __syncthreads();  // the Q tile / previous K, V tiles are consumed
    if (tid < kKeys) {
      const std::int64_t j = key0 + tid;
      std::int64_t kp = -1;
      float bias = 0.0f;
      if (j < key_count) tile_key(p, pr, tile, h, j, &kp, &bias);
      key_pos[tid] = kp;
      key_bias[tid] = bias;
    }
    __syncthreads();
    // K: consecutive threads read consecutive 16-byte pieces of a row (coalesced, 128-bit stores).
    for (int idx = tid; idx < kKeys * kVecs; idx += 128) {
      const int j = idx / kVecs, vv = idx % kVecs;
      const std::int64_t kp = key_pos[j];
      uint4 kval = make_uint4(0, 0, 0, 0);
      if (kp >= 0) kval = *reinterpret_cast<const uint4*>(kbase + kp * p.k_stride[2] + vv * 8);
      *reinterpret_cast<uint4*>(&qk_tile[j * kStride + vv * 8]) = kval;
    }
    // V, transposed: consecutive threads take consecutive keys, so that the 16-bit stores of a
    // warp fall into one transposed row (no bank conflicts; the other halves of the 32-byte sectors
    // are read by the neighbouring warps through L1).
    for (int idx = tid; idx < kKeys * kVecs; idx += 128) {
      const int j = idx % kKeys, vv = idx / kKeys;
      const std::int64_t kp = key_pos[j];
      uint4 vval = make_uint4(0, 0, 0, 0);
      if (kp >= 0) vval = *reinterpret_cast<const uint4*>(vbase + kp * p.v_stride[2] + vv * 8);
      const T* ve = reinterpret_cast<const T*>(&vval);
#pragma unroll
      for (int e = 0; e < 8; ++e) vt_tile[(vv * 8 + e) * kVtStride + j] = ve[e];
    }
    __syncthreads();

    float s[kKeys / 8][4];  // S for keys 8*nt + 2t + (e & 1), rows r0 (e < 2) and r0 + 8
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int kc = 0; kc < kDim / 16; ++kc) {
        const std::uint32_t b0 = load32(&qk_tile[(8 * nt + g) * kStride + 16 * kc + 2 * t]);
        const std::uint32_t b1 = load32(&qk_tile[(8 * nt + g) * kStride + 16 * kc + 8 + 2 * t]);
        mma_16816<T>(s[nt], qf[kc], b0, b1);
      }
    }
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int jj = 8 * nt + 2 * t + (e & 1);
        const int half = e >> 1;
        bool visible = key_pos[jj] >= 0;
        if (causal) visible = visible && key0 + jj <= local_row[half] + pr.causal_diagonal;
        s[nt][e] = visible ? s[nt][e] * p.scale_log2 + key_bias[jj] : -INFINITY;
        tile_max[half] = fmaxf(tile_max[half], s[nt][e]);
      }
    }
    float use_max[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 1));
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 2));
      const float new_max = fmaxf(row_max[half], tile_max[half]);
      use_max[half] = new_max == -INFINITY ? 0.0f : new_max;  // all masked so far: p = 0, no NaN
      const float correction = exp2f(row_max[half] - use_max[half]);
      row_sum[half] *= correction;
#pragma unroll
      for (int dn = 0; dn < kDim / 8; ++dn) {
        o[dn][2 * half] *= correction;
        o[dn][2 * half + 1] *= correction;
      }
      row_max[half] = new_max;
    }
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - use_max[e >> 1]);
        row_sum[e >> 1] += s[nt][e];
      }
    }
#pragma unroll
    for (int kc = 0; kc < kKeys / 16; ++kc) {
      const std::uint32_t a[4] = {pack2<T>(s[2 * kc][0], s[2 * kc][1]), pack2<T>(s[2 * kc][2], s[2 * kc][3]),
                                  pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                  pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
      for (int dn = 0; dn < kDim / 8; ++dn) {
        const std::uint32_t b0 = load32(&vt_tile[(8 * dn + g) * kVtStride + 16 * kc + 2 * t]);
        const std::uint32_t b1 = load32(&vt_tile[(8 * dn + g) * kVtStride + 16 * kc + 8 + 2 * t]);
        mma_16816<T>(o[dn], a, b0, b1);
      }
    }
  }

  // Epilogue: the quad's partial sums, then each thread writes dims 8 dn + 2t, +1 of its rows.
  float w_new[2] = {1.0f, 1.0f}, w_old[2] = {0.0f, 0.0f}, merged[2], lse[2], inv[2];
  std::int64_t position[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 1);
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 2);
    const float sum = row_sum[half];
    lse[half] = sum > 0.0f ? (row_max[half] + log2f(sum)) * kLn2 : -INFINITY;
    inv[half] = sum > 0.0f ? 1.0f / sum : 0.0f;
    merged[half] = lse[half];
    position[half] = row_pos[r0 + 8 * half];
    if (position[half] >= 0 && !p.direct && p.merge) {
      RowWriter<T>{p, h, position[half], lse[half]}.merge_weights(&w_new[half], &w_old[half], &merged[half]);
    }
  }
  __syncthreads();  // every thread of a row has read its old LSE
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    if (position[half] < 0) continue;
    const RowWriter<T> writer{p, h, position[half], lse[half]};
#pragma unroll
    for (int dn = 0; dn < kDim / 8; ++dn) {
      writer.write(8 * dn + 2 * t, o[dn][2 * half] * inv[half], w_new[half], w_old[half]);
      writer.write(8 * dn + 2 * t + 1, o[dn][2 * half + 1] * inv[half], w_new[half], w_old[half]);
    }
    if (t == 0) writer.write_lse(merged[half]);
  }
}

template <typename T, int kDim>
int launch_mma_t(const AttentionParams& params, int num_tiles, int batch_heads_q, cudaStream_t stream) {
  attention_mma_kernel<T, kDim><<<dim3(num_tiles, batch_heads_q), 128, 0, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_mma_dim(const AttentionParams& params, int num_tiles, int batch_heads_q, cudaStream_t stream) {
  if (params.head_dim == 64) return launch_mma_t<T, 64>(params, num_tiles, batch_heads_q, stream);
  if (params.head_dim == 128) return launch_mma_t<T, 128>(params, num_tiles, batch_heads_q, stream);
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace

bool mma_supported(DType dtype, int head_dim) {
  return (dtype == DType::bf16 || dtype == DType::f16) && (head_dim == 64 || head_dim == 128);
}

int launch_attention_mma(DType dtype, const AttentionParams& params, int num_tiles, int batch_heads_q,
                         void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::bf16) return launch_mma_dim<__nv_bfloat16>(params, num_tiles, batch_heads_q, s);
  if (dtype == DType::f16) return launch_mma_dim<__half>(params, num_tiles, batch_heads_q, s);
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace hyperattn::cuda

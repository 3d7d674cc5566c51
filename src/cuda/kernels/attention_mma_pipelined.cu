// src/cuda/kernels/attention_mma_pipelined.cu: the tensor-core attention kernel with a two-stage
// cp.async pipeline (HYPERATTN_CUDA_KERNEL=mma_pipelined selects it; see docs/cuda.md).
//
// Same tiles, fragments, softmax and epilogue as attention_mma.cu; the differences: K and V are
// copied global -> shared with cp.async (16 bytes per instruction, zero-filled for missing keys)
// into two buffers, so that step i+1 loads while step i computes; V stays row-major and its
// B fragments come from ldmatrix.x4.trans. Shared memory: 4 buffers of [64, head_dim + 8]
// (36 KB at head_dim 64, 68 KB at 128: dynamic, opted in).
#include <cuda_runtime.h>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.hpp"
#include "cuda/kernels/mma_common.cuh"

namespace hyperattn::cuda {
namespace {

constexpr int kPipeKeys = 64;

template <typename T, int kDim>
constexpr int pipelined_smem_bytes() {
  return 4 * kPipeKeys * (kDim + 8) * static_cast<int>(sizeof(T));
}

template <typename T, int kDim>
__global__ void __launch_bounds__(128) attention_mma_pipelined_kernel(const AttentionParams p) {
  constexpr int kKeys = kPipeKeys;
  static_assert(kKeys == kTileRows, "the Q tile is staged in a K buffer");
  constexpr int kStride = kDim + 8;  // elements per row of every buffer
  constexpr int kVecs = kDim / 8;    // 16-byte vectors per row
  constexpr int kBufferElems = kKeys * kStride;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* k_buffers = reinterpret_cast<T*>(smem_raw);  // [2][keys, head_dim]
  T* v_buffers = k_buffers + 2 * kBufferElems;    // [2][keys, head_dim]
  __shared__ std::int64_t row_pos[kTileRows];     // [rows] absolute, -1: none
  __shared__ std::int64_t key_pos[2][kKeys];      // [stage][keys] absolute, -1: none
  __shared__ float key_bias[2][kKeys];            // [stage][keys] log2 domain

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
  {  // Q through K buffer 0, then into registers.
    const T* qbase = static_cast<const T*>(p.q) + h.batch * p.q_stride[0] + h.head_q * p.q_stride[1];
    for (int idx = tid; idx < kTileRows * kVecs; idx += 128) {
      const int r = idx / kVecs, vv = idx % kVecs;
      const std::int64_t pos = row_pos[r];
      uint4 val = make_uint4(0, 0, 0, 0);
      if (pos >= 0) val = *reinterpret_cast<const uint4*>(qbase + pos * p.q_stride[2] + vv * 8);
      *reinterpret_cast<uint4*>(&k_buffers[r * kStride + vv * 8]) = val;
    }
  }
  __syncthreads();
  const int r0 = warp * 16 + g;  // this thread's rows r0 and r0 + 8 of the tile
  std::uint32_t qf[kDim / 16][4];
#pragma unroll
  for (int kc = 0; kc < kDim / 16; ++kc) {
    qf[kc][0] = load32(&k_buffers[r0 * kStride + 16 * kc + 2 * t]);
    qf[kc][1] = load32(&k_buffers[(r0 + 8) * kStride + 16 * kc + 2 * t]);
    qf[kc][2] = load32(&k_buffers[r0 * kStride + 16 * kc + 8 + 2 * t]);
    qf[kc][3] = load32(&k_buffers[(r0 + 8) * kStride + 16 * kc + 8 + 2 * t]);
  }
  __syncthreads();  // K buffer 0 is free for the pipeline

  float o[kDim / 8][4];
#pragma unroll
  for (int dn = 0; dn < kDim / 8; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // this thread's partial sums (reduced over the quad at the end)
  const std::int64_t local_row[2] = {tile.row_begin + r0, tile.row_begin + r0 + 8};
  const bool causal = !pr.lsh && pr.causal_diagonal < kNoMask;

  const std::int64_t key_count = tile_key_count(p, pr, tile);
  const std::int64_t steps = (key_count + kKeys - 1) / kKeys;
  const T* kbase = static_cast<const T*>(p.k) + h.batch * p.k_stride[0] + h.head_kv * p.k_stride[1];
  const T* vbase = static_cast<const T*>(p.v) + h.batch * p.v_stride[0] + h.head_kv * p.v_stride[1];
  auto stage_positions = [&](std::int64_t step) {
    if (tid < kKeys) {
      const std::int64_t j = step * kKeys + tid;
      std::int64_t kp = -1;
      float bias = 0.0f;
      if (j < key_count) tile_key(p, pr, tile, h, j, &kp, &bias);
      key_pos[step & 1][tid] = kp;
      key_bias[step & 1][tid] = bias;
    }
  };
  auto stage_loads = [&](std::int64_t step) {
    const int buf = static_cast<int>(step & 1);
    T* kb = k_buffers + buf * kBufferElems;
    T* vb = v_buffers + buf * kBufferElems;
    for (int idx = tid; idx < kKeys * kVecs; idx += 128) {
      const int j = idx / kVecs, vv = idx % kVecs;
      const std::int64_t kp = key_pos[buf][j];
      const bool ok = kp >= 0;
      const std::int64_t row = ok ? kp : 0;  // a valid address even when zero-filling
      cp_async_16(&kb[j * kStride + vv * 8], kbase + row * p.k_stride[2] + vv * 8, ok);
      cp_async_16(&vb[j * kStride + vv * 8], vbase + row * p.v_stride[2] + vv * 8, ok);
    }
  };
  if (steps > 0) {
    stage_positions(0);
    __syncthreads();
    stage_loads(0);
    cp_async_commit();
  }
  for (std::int64_t step = 0; step < steps; ++step) {
    const int buf = static_cast<int>(step & 1);
    const std::int64_t key0 = step * kKeys;
    if (step + 1 < steps) {  // prefetch the next step into the other buffers
      stage_positions(step + 1);
      __syncthreads();
      stage_loads(step + 1);
      cp_async_commit();
      cp_async_wait<1>();  // this step's copies are done (the next step's may still fly)
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* kb = k_buffers + buf * kBufferElems;
    const T* vb = v_buffers + buf * kBufferElems;

    float s[kKeys / 8][4];  // S for keys 8*nt + 2t + (e & 1), rows r0 (e < 2) and r0 + 8
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int kc = 0; kc < kDim / 16; ++kc) {
        const std::uint32_t b0 = load32(&kb[(8 * nt + g) * kStride + 16 * kc + 2 * t]);
        const std::uint32_t b1 = load32(&kb[(8 * nt + g) * kStride + 16 * kc + 8 + 2 * t]);
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
        bool visible = key_pos[buf][jj] >= 0;
        if (causal) visible = visible && key0 + jj <= local_row[half] + pr.causal_diagonal;
        s[nt][e] = visible ? s[nt][e] * p.scale_log2 + key_bias[buf][jj] : -INFINITY;
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
      for (int dn = 0; dn < kDim / 8; dn += 2) {
        // matrices: keys [16kc, +8) and [16kc+8, +8) of dims 8dn, then the same of dims 8(dn+1)
        std::uint32_t b[4];
        ldmatrix_x4_trans(b, &vb[(16 * kc + (lane & 15)) * kStride + 8 * dn + 8 * (lane >> 4)]);
        mma_16816<T>(o[dn], a, b[0], b[1]);
        mma_16816<T>(o[dn + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // this step's buffers are consumed before the prefetch overwrites them
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
int launch_pipelined_t(const AttentionParams& params, int num_tiles, int batch_heads_q, cudaStream_t stream) {
  constexpr int bytes = pipelined_smem_bytes<T, kDim>();
  const cudaError_t e = cudaFuncSetAttribute(attention_mma_pipelined_kernel<T, kDim>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) return static_cast<int>(e);
  attention_mma_pipelined_kernel<T, kDim><<<dim3(num_tiles, batch_heads_q), 128, bytes, stream>>>(params);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_pipelined_dim(const AttentionParams& params, int num_tiles, int batch_heads_q, cudaStream_t stream) {
  if (params.head_dim == 64) return launch_pipelined_t<T, 64>(params, num_tiles, batch_heads_q, stream);
  if (params.head_dim == 128) return launch_pipelined_t<T, 128>(params, num_tiles, batch_heads_q, stream);
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace

int launch_attention_mma_pipelined(DType dtype, const AttentionParams& params, int num_tiles, int batch_heads_q,
                                   void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::bf16) return launch_pipelined_dim<__nv_bfloat16>(params, num_tiles, batch_heads_q, s);
  if (dtype == DType::f16) return launch_pipelined_dim<__half>(params, num_tiles, batch_heads_q, s);
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace hyperattn::cuda

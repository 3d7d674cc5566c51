// src/cuda/device_types.hpp: the plain structs the host lowering hands to the CUDA kernels.
//
// A launch runs one phase of the plan (core/plan.hpp): a list of problems with disjoint
// query rows, cut into tiles of kTileRows rows. Grid: x = tile, y = batch * heads_q + head_q.
// Plain C++ (no CUDA headers) so that the host lowering and its CPU-side tests share it.
#pragma once

#include <cstdint>

namespace hyperattn::cuda {

inline constexpr int kTileRows = 64;  // query rows per thread block in every attention kernel
inline constexpr std::int64_t kNoMask = INT64_MAX / 4;

// One attention sub-problem of every (batch, query head): query rows [q0, q0 + q_len) against keys
// [k0, k0 + k_len). Exact problems: row q0 + r sees key k0 + c iff c <= r + causal_diagonal.
// Approximated problems (lsh != 0): keys [k0, k0 + sinks) are attended by every query; the rest,
// [k0 + sinks, k0 + k_len), is hashed into blocks of block_size sorted keys, and sorted query block
// beta attends to sorted key block beta plus sample_size sampled keys outside it.
struct Problem {
  std::int64_t q0 = 0, q_len = 0;
  std::int64_t k0 = 0, k_len = 0;
  std::int64_t causal_diagonal = kNoMask;
  std::int64_t sinks = 0;
  std::int64_t q_perm_offset = 0;  // approximated: offset of this problem in each head's q_perm row
  std::int64_t k_perm_offset = 0;  // approximated: offset in each kv head's k_perm row
  std::int64_t num_blocks = 0;     // approximated: ceil((k_len - sinks) / block_size)
  std::uint64_t subproblem = 0;    // random-stream id (rng::subproblem_id)
  std::int32_t lsh = 0;  // (the injected samples, when given, serve the problem with subproblem 0)
};

// kTileRows (or fewer) consecutive query rows of one problem: local rows [row_begin, row_end),
// in sorted order for an approximated problem (all inside sorted query block `block`).
struct Tile {
  std::int32_t problem = 0;
  std::int32_t block = 0;
  std::int64_t row_begin = 0;
  std::int64_t row_end = 0;
};

// Everything one attention launch reads. Strides in elements; tensors are in the
// [batch, heads, seq, head_dim] frame of tensor.hpp.
struct AttentionParams {
  const void* q = nullptr;   // [batch, heads_q, seq_q, head_dim]
  const void* k = nullptr;   // [batch, heads_kv, seq_kv, head_dim]
  const void* v = nullptr;   // [batch, heads_kv, seq_kv, head_dim]
  void* out = nullptr;       // [batch, heads_q, seq_q, head_dim]
  float* lse = nullptr;      // [batch, heads_q, seq_q] or null
  std::int64_t q_stride[3] = {0, 0, 0};  // batch, head, seq
  std::int64_t k_stride[3] = {0, 0, 0};
  std::int64_t v_stride[3] = {0, 0, 0};
  std::int64_t out_stride[3] = {0, 0, 0};
  std::int64_t lse_stride[3] = {0, 0, 0};
  int dtype = 0;  // DType of q, k, v, out (the CUDA-core kernel reads it at run time)
  int heads_q = 0, heads_kv = 0, head_dim = 0;
  std::int64_t seq_q = 0, seq_kv = 0;
  float scale_log2 = 0.0f;  // softmax scale * log2(e): scores are kept in the log2 domain

  const Problem* problems = nullptr;  // [problems of this launch]
  const Tile* tiles = nullptr;        // [gridDim.x]
  const std::int32_t* q_perm = nullptr;  // [batch * heads_q, q_perm_stride] sorted local rows
  const std::int32_t* k_perm = nullptr;  // [batch * heads_kv, k_perm_stride] sorted local keys
  std::int64_t q_perm_stride = 0, k_perm_stride = 0;
  const std::int32_t* injected_samples = nullptr;  // [batch, heads_q, blocks, sample_size] or null
  std::int64_t block_size = 0, sample_size = 0;
  std::uint64_t seed = 0;
  int stratified = 0;  // Sampling::stratified (else uniform)

  // Output: direct != 0 writes out/lse (one-phase plans); otherwise the fp32 accumulator, which a
  // problem with merge != 0 merges into through the log-sum-exp.
  int direct = 1;
  int merge = 0;
  float* acc_o = nullptr;    // [batch * heads_q, seq_q, head_dim]
  float* acc_lse = nullptr;  // [batch * heads_q, seq_q]
};

}  // namespace hyperattn::cuda

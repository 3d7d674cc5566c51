// src/cpu/attention_kernel.hpp: the one dense attention kernel every CPU path calls.
//
// A kernel computes, for `rows` query rows against `keys` key rows,
//   s_ij = scale * <q_i, k_j> + key_bias[j]            (key_bias optional)
//   out_i = sum_j e^{s_ij} v_j / sum_j e^{s_ij},  lse_i = log sum_j e^{s_ij}
// with an online softmax over key tiles (never a rows x keys matrix) and fp32 accumulation.
// Causal mask: key j is visible to row i iff j <= i + causal_diagonal. A row that sees no key
// gets out_i = 0 and lse_i = -inf (the empty-set rule, docs/numerics.md).
//
// Rows and keys may be addressed through index arrays, so the gathers of HyperAttention's sorted
// blocks and the unsort of its output are fused into the kernel: row r of q is
// q + q_index[r] * q_row_stride (or r * q_row_stride without an index), likewise for k, v
// (k_index) and out (out_index; lse is indexed like out).
//
// Kernels never allocate, log or return a Status: the driver validates everything first and
// hands each thread a scratch buffer of scratch_floats(head_dim, head_dim_v) floats.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hyperattn/tensor.hpp"

namespace hyperattn::cpu {

inline constexpr std::int64_t kNoCausalMask = INT64_MAX / 4;

struct DenseAttentionTile {
  DType dtype = DType::f32;          // dtype of q, k, v (f32 or bf16)
  const void* q = nullptr;           // [rows, head_dim]
  std::int64_t q_row_stride = 0;     // elements
  const std::int32_t* q_index = nullptr;  // [rows] or null
  const void* k = nullptr;           // [keys, head_dim]
  std::int64_t k_row_stride = 0;
  const void* v = nullptr;           // [keys, head_dim_v]
  std::int64_t v_row_stride = 0;
  const std::int32_t* k_index = nullptr;  // [keys] or null, applies to k and v
  const float* key_bias = nullptr;   // [keys] additive bias on the scaled score, or null
  std::int64_t rows = 0;
  std::int64_t keys = 0;
  int head_dim = 0;
  int head_dim_v = 0;
  float scale = 1.0f;
  std::int64_t causal_diagonal = kNoCausalMask;
  float* out = nullptr;              // [rows, head_dim_v] fp32
  std::int64_t out_row_stride = 0;
  const std::int32_t* out_index = nullptr;  // [rows] or null, applies to out and lse
  float* lse = nullptr;              // [rows] fp32, or null
  float* scratch = nullptr;          // scratch_floats(head_dim, head_dim_v) floats, 64-byte aligned
};

struct AttentionKernel {
  const char* name;  // e.g. "avx512", "avx2", "scalar"
  void (*dense)(const DenseAttentionTile& tile);
  std::size_t (*scratch_floats)(int head_dim, int head_dim_v);
};

// The kernel chosen once from the CPU's features; HYPERATTN_ISA=scalar|avx2|avx512 forces one
// (an unsupported forced variant falls back to the best supported one, with a warning on stderr).
const AttentionKernel& best_kernel();
// Every variant this CPU can run (for tests and benchmarks).
int supported_kernels(const AttentionKernel** out, int capacity);
// A kernel by name, or nullptr if unknown or unsupported here.
const AttentionKernel* kernel_by_name(const char* name);

}  // namespace hyperattn::cpu

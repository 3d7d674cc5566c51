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
// Merge mode (tile.merge): out and lse already hold a partial result of the same rows over other
// keys, and the kernel merges its own (out_i, lse_i) into it through the log-sum-exp (the causal
// recursion's later phases, specification §3) with merge_row below, instead of overwriting it.
//
// Kernels never allocate, log or return a Status: the driver validates everything first and
// hands each thread a scratch buffer of scratch_floats(head_dim, head_dim_v) floats.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "core/lse_merge.hpp"
#include "core/simd.hpp"
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
  float* lse = nullptr;              // [rows] fp32, or null (required with merge)
  bool merge = false;                // merge into out/lse instead of writing them (see above)
  // Optional per-row windows (HyperAttention's causal local window, docs/accuracy.md): with
  // row_window set, row r has the window [row_window[2r], row_window[2r + 1]) of key positions (a
  // key's position is its row in k: k_index[j], or j without an index), and key j is visible to
  // row r (besides the causal mask) iff
  //   j <  window_from: its position lies outside the row's window,
  //   j >= window_from: its position lies inside it.
  // So a row with an empty window sees exactly keys [0, window_from). A key masked so contributes
  // nothing, as if its bias were -inf.
  const std::int32_t* row_window = nullptr;  // [rows][2] or null
  std::int64_t window_from = 0;
  float* scratch = nullptr;          // scratch_floats(head_dim, head_dim_v) floats, 64-byte aligned
  // Optional hint: the tile this thread runs next. While computing its last key tile, a kernel
  // may prefetch into cache the gathered rows (q_index, k_index, out_index) that tile starts
  // with, so the next call does not begin with a burst of cache misses. Never dereferenced
  // beyond those reads; results do not depend on it.
  const DenseAttentionTile* next = nullptr;
};

// Row r's window mask (row_window set): is key j (at position pos) visible to it?
inline bool window_visible(const DenseAttentionTile& t, std::int64_t r, std::int64_t j, std::int64_t pos) {
  const bool inside = pos >= t.row_window[2 * r] && pos < t.row_window[2 * r + 1];
  return (j < t.window_from) != inside;
}

// Does row r have a non-empty window (so its mask is not just the prefix [0, window_from))?
inline bool has_window(const DenseAttentionTile& t, std::int64_t r) {
  return t.row_window != nullptr && t.row_window[2 * r] < t.row_window[2 * r + 1];
}

// The keys row r may see at most, before the causal mask: window_from for a row without a window.
inline std::int64_t window_key_limit(const DenseAttentionTile& t, std::int64_t r) {
  return t.row_window != nullptr && !has_window(t, r) ? std::min(t.window_from, t.keys) : t.keys;
}

// The online-softmax step of one row (scores in base 2) for a key tile whose visible scores have
// the maximum tile_max (NaN if one is NaN): the new running max, and corr = 2^(m - m_new), the
// factor the row's O and sum are scaled by. NaN is sticky: std::max(NaN, x) keeps a NaN running
// max, and a NaN tile max sets it. corr is exact where it is 0 (the first visible tile, m = -inf)
// or 1 (the max stays) (C Annex F), so only the other cases call exp2. Every SIMD kernel uses it.
struct RunningMax {
  float m;
  float corr;
};
// The running max itself (what the scalar kernel, in base e, takes from this rule).
inline float sticky_max(float m, float tile_max) { return tile_max != tile_max ? tile_max : std::max(m, tile_max); }
inline RunningMax advance_max(float m, float tile_max) {
  const float m_new = sticky_max(m, tile_max);
  const float dm = m - m_new;
  return {m_new, dm == 0.0f ? 1.0f : dm == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp2(dm)};
}

// The end-of-row rule for a row whose running sum l is not positive: NaN or Inf in the inputs
// propagate (O = lse = l); no visible key gives the empty set (O = 0, lse = -inf). For such a row it
// writes o[0, dv) and *lse and returns true; for l > 0 it writes nothing and returns false, and the
// kernel normalises O by 1 / l and takes lse = m + log l in its own arithmetic (base 2 or e).
inline bool degenerate_row_end(float l, float* o, int dv, float* lse) {
  if (l > 0.0f) return false;
  const float value = l != l ? l : 0.0f;  // NaN: propagate; else (l = 0) the empty set
  std::fill(o, o + dv, value);
  *lse = l != l ? l : -std::numeric_limits<float>::infinity();
  return true;
}

// x, rounded to fp32 and hidden from the optimiser, so that a product is never contracted with a
// following addition into an FMA (the kernels' translation units enable FMA).
inline float no_contract(float x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(x));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#else
  volatile float v = x;
  x = v;
#endif
  return x;
}

// The log-sum-exp merge of a partial result (o_new, l_new) into (o_acc, l_acc), by the rule of
// core/lse_merge.hpp (written once for CPU and CUDA), with each product of the row update rounded
// to fp32 on its own (never an FMA), so every kernel variant gives the same bits.
// `combine(o_acc, o_new, w_old, w_new, inv, d)` does the row update (combine_rows_scalar, or a
// kernel's vectorised equivalent).
template <class Combine>
inline void merge_row(float* o_acc, float* l_acc, const float* o_new, float l_new, int d, Combine combine) {
  const core::LseMerge m = core::lse_merge(*l_acc, l_new);
  if (m.kind == core::MergeKind::keep) return;
  if (m.kind == core::MergeKind::replace) {
    std::copy(o_new, o_new + d, o_acc);
    *l_acc = l_new;
    return;
  }
  combine(o_acc, o_new, m.w_old, m.w_new, m.inv, d);
  *l_acc = m.lse;
}

inline void combine_rows_scalar(float* o_acc, const float* o_new, float w_old, float w_new, float inv, int d) {
  for (int c = 0; c < d; ++c) o_acc[c] = (no_contract(w_old * o_acc[c]) + no_contract(w_new * o_new[c])) * inv;
}

// One call of the backward kernel (isa/backward_impl.hpp): the gradient contributions of `rows`
// query rows against `keys` key rows, recomputing P from q, k, the bias and the forward's final LSE:
//   P_ij = e^{scale <q_i, k_j> + bias_j - lse_i} on the visible entries (causal mask and row windows
//   exactly as in DenseAttentionTile), dS_ij = P_ij (<dO_i, v_j> - delta_i),
//   dq_i += scale sum_j dS_ij k_j,  dk_j += scale sum_i dS_ij q_i,  dv_j += sum_i P_ij dO_i.
// Rows are addressed as in the forward (q_index or r); d_out, lse, delta and dq rows are addressed
// like q (so the driver's per-head arrays take the absolute row). dk/dv are [keys] slots in key
// order (not through k_index). Either output may be null (dq, or dk and dv together): it is then
// not computed. A row with lse = +inf contributes nothing (rows that saw no key get +inf).
struct BackwardTile {
  DType dtype = DType::f32;  // of q, k, v
  const void* q = nullptr;
  std::int64_t q_row_stride = 0;
  const std::int32_t* q_index = nullptr;
  const void* k = nullptr;
  std::int64_t k_row_stride = 0;
  const void* v = nullptr;
  std::int64_t v_row_stride = 0;
  const std::int32_t* k_index = nullptr;
  const float* key_bias = nullptr;
  std::int64_t rows = 0;
  std::int64_t keys = 0;
  int head_dim = 0;
  float scale = 1.0f;
  std::int64_t causal_diagonal = kNoCausalMask;
  const std::int32_t* row_window = nullptr;  // [rows][2] or null, as in DenseAttentionTile
  std::int64_t window_from = 0;
  const float* d_out = nullptr;   // fp32 rows [*, head_dim]
  std::int64_t d_out_row_stride = 0;
  const float* lse = nullptr;     // fp32 [*]
  const float* delta = nullptr;   // fp32 [*]: <dO_i, O_i> - dLSE_i
  float* dq = nullptr;            // fp32 rows, accumulated, or null
  std::int64_t dq_row_stride = 0;
  float* dk = nullptr;            // fp32 [keys][dkv_row_stride], accumulated, or null
  float* dv = nullptr;            // likewise (with dk)
  std::int64_t dkv_row_stride = 0;
  float* scratch = nullptr;       // backward_scratch_floats(head_dim) floats, 64-byte aligned
};

struct AttentionKernel {
  const char* name;  // "avx512", "avx512_nobf16", "avx2", "neon", "scalar"
  void (*dense)(const DenseAttentionTile& tile);
  std::size_t (*scratch_floats)(int head_dim, int head_dim_v);
  // Optional: does dense() compute this tile's row windows compactly? If so, each row with a
  // window gets the same bits as a tile of that row alone, without row_window, over keys
  // [0, window_from) (those inside its window with bias -inf) followed by its window's keys among
  // [window_from, keys), in their order (so a block's windowed rows can run with the block instead
  // of one call each, with the results of the latter). Null: never (row windows are still honoured,
  // but a windowed row's arithmetic follows the tile's own key order).
  bool (*compact_windows)(const DenseAttentionTile& tile) = nullptr;
  // The backward kernel (BackwardTile) and its scratch size.
  void (*backward)(const BackwardTile& tile) = nullptr;
  std::size_t (*backward_scratch_floats)(int head_dim) = nullptr;
};

// The kernel chosen once from the CPU's features; HYPERATTN_ISA=scalar|avx2|avx512_nobf16|avx512 forces one
// (an unsupported forced variant falls back to the best supported one, with a warning on stderr).
const AttentionKernel& best_kernel();
// The vector ISA of the SIMD loops outside the kernels (core/simd.hpp: the LSH hashing, the model
// runner's element-wise passes), derived from best_kernel() so that HYPERATTN_ISA steers them too:
// avx512 and avx512_nobf16 -> avx512, avx2 -> avx2, neon and scalar -> baseline.
SimdLevel simd_level();
// The kernel for inputs that hold NaN or Inf: the scalar one, which leaves out of every sum each
// entry a row does not see (past its causal limit, masked by its window, bias -inf; in the
// backward also padded keys and rows with LSE = +inf), so a NaN or Inf reaches only the rows and
// keys that meet it. The SIMD kernels multiply such entries' weight 0 by their tile's values
// (0 * Inf = NaN); the executor runs the tiles of a key-value head on this one when the door's
// scan found a NaN or Inf in its inputs.
// (A key a row sees whose weight underflows to 0 still counts: 0 * Inf = NaN, as the reference's
// tiny weight times Inf is Inf.)
const AttentionKernel& strict_kernel();
// Every variant this CPU can run (for tests and benchmarks).
int supported_kernels(const AttentionKernel** out, int capacity);
// A kernel by name, or nullptr if unknown or unsupported here.
const AttentionKernel* kernel_by_name(const char* name);

}  // namespace hyperattn::cpu

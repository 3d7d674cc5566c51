// src/model/attention_diagnostics.hpp: why HyperAttention is (in)accurate on one attention problem.
//
// Per query head:
//   - the output error of hyper_attention against exact_attention, relative to ||O||_F and ||V||_F;
//   - captured mass: the share of each row's softmax mass that falls in the keys of its own sorted
//     LSH block (the block HyperAttention attends exactly; lsh_blocks());
//   - the paper's fine-grained parameters (HyperAttention, §3 of the paper):
//       alpha = n * max_j || column j of D^-1 A ||^2   (D^-1 A: the row-normalised attention matrix)
//       kappa = max_i / min_i of the row sums of A with the block-diagonal (own LSH block) entries
//               removed; rows whose residual set is empty (or sums to 0) are left out and counted.
// Everything is streamed over tiles of query rows (a [tile, n] score buffer) with column
// accumulators, so no n x n matrix is held.
//
// With causal = true the mask is applied to A (bottom-right aligned, as in the model); the LSH
// blocks are always those of the full non-causal problem, as lsh_blocks() defines them.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "hyperattn/attention.hpp"
#include "hyperattn/config.hpp"
#include "hyperattn/status.hpp"
#include "hyperattn/tensor.hpp"

namespace hyperattn::model {

struct HeadDiagnostics {
  std::int64_t head = 0;
  double error_rel_o = 0;  // ||O~ - O||_F / ||O||_F
  double error_rel_v = 0;  // ||O~ - O||_F / ||V||_F (of this head's key-value head)
  double captured_mean = 0;
  // Quantiles of captured mass over rows: 0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.
  std::array<double, 7> captured_quantiles{};
  double alpha = 0;
  double kappa = 0;  // NaN when no row has residual mass
  std::int64_t kappa_rows_left_out = 0;
  std::vector<float> captured;  // [seq_q] captured mass per row
};

inline constexpr std::array<double, 7> kCapturedQuantileLevels{0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0};

// q [1, heads_q, n_q, d], k, v [1, heads_kv, n_k, d]: fp32 views with unit innermost stride.
// `config` gives HyperAttention's parameters and whether the problem is causal; `threads` >= 1.
// `heads`: the query heads to analyse (empty: all). `on_step`, when set, is called after the exact
// run, after the HyperAttention run and after each analysed head (progress reports).
Status diagnose_attention(const TensorView& q, const TensorView& k, const TensorView& v, const AttentionConfig& config,
                          const std::vector<std::int64_t>& heads, int threads, std::vector<HeadDiagnostics>* out,
                          const std::function<void()>& on_step = {});

// The streaming part alone, for one query head h (tests compare it with a dense computation):
// captured mass per row, alpha, kappa. query_block [n_q] and key_block [n_k] are that head's
// LSH blocks.
struct MassStatistics {
  std::vector<float> captured;  // [n_q]
  double alpha = 0;
  double kappa = 0;
  std::int64_t kappa_rows_left_out = 0;
};
void attention_mass_statistics(const float* q, std::int64_t q_row_stride, const float* k, std::int64_t k_row_stride,
                               std::int64_t n_q, std::int64_t n_k, std::int64_t head_dim, float scale, bool causal,
                               const std::int32_t* query_block, const std::int32_t* key_block, int threads,
                               MassStatistics* out);

}  // namespace hyperattn::model
